//! The request bodies as the OpenAPI document describes them. Handlers never deserialize
//! these: `homepot-core`'s adapters parse the raw bytes, so that every problem is reported at
//! once in the original APIs' shape. These types exist for the document (and the simulator's
//! answer), so their bounds must say what core enforces: the test at the bottom compares them
//! with core's constants.

use std::collections::BTreeMap;

use homepot_core::{AppMetrics, HealthReport, NetworkMetrics, SystemMetrics};
use poem_openapi::Object;
use serde_json::Value;

/// System resource metrics.
#[derive(Debug, Object)]
pub(crate) struct SystemMetricsBody {
    /// CPU usage percentage (0-100).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "100")))]
    cpu_percent: Option<f64>,
    /// Memory usage percentage (0-100).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "100")))]
    memory_percent: Option<f64>,
    /// Used memory in MB (at most `memory_total_mb`).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    memory_used_mb: Option<i64>,
    /// Total memory in MB.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    memory_total_mb: Option<i64>,
    /// Disk usage percentage (0-100).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "100")))]
    disk_percent: Option<f64>,
    /// Used disk in GB (at most `disk_total_gb`).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    disk_used_gb: Option<i64>,
    /// Total disk in GB.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    disk_total_gb: Option<i64>,
    /// Seconds since boot.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    uptime_seconds: Option<i64>,
}

/// Application metrics.
#[derive(Debug, Object)]
pub(crate) struct AppMetricsBody {
    /// Application version.
    #[oai(skip_serializing_if_is_none, validator(max_length = 64))]
    app_version: Option<String>,
    /// Transactions processed.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    transactions_count: Option<i64>,
    /// Errors encountered.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    errors_count: Option<i64>,
    /// Warnings raised.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    warnings_count: Option<i64>,
    /// Average response time in ms.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    avg_response_time_ms: Option<i64>,
}

/// Network metrics.
#[derive(Debug, Object)]
pub(crate) struct NetworkMetricsBody {
    /// Latency in ms.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    latency_ms: Option<i64>,
    /// Bytes received.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    rx_bytes: Option<i64>,
    /// Bytes transmitted.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0")))]
    tx_bytes: Option<i64>,
}

/// A health check as a device submits it. Unknown fields are ignored.
#[derive(Debug, Object)]
pub(crate) struct HealthCheckRequest {
    /// Overall health status of the device.
    is_healthy: bool,
    /// Response time in milliseconds.
    #[oai(validator(minimum(value = "0"), maximum(value = "2147483647")))]
    response_time_ms: i64,
    /// HTTP status code of the device's own check (default 200).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "100"), maximum(value = "599")))]
    status_code: Option<i64>,
    /// Health check endpoint path.
    #[oai(skip_serializing_if_is_none, validator(max_length = 200))]
    endpoint: Option<String>,
    /// Additional device-specific data, stored intact. It may not repeat a metric group's key.
    #[oai(skip_serializing_if_is_none)]
    response_data: Option<BTreeMap<String, Value>>,
    /// Error description if unhealthy.
    #[oai(skip_serializing_if_is_none, validator(max_length = 4096))]
    error_message: Option<String>,
    /// System metrics.
    #[oai(skip_serializing_if_is_none)]
    system: Option<SystemMetricsBody>,
    /// Application metrics.
    #[oai(skip_serializing_if_is_none)]
    app_metrics: Option<AppMetricsBody>,
    /// Network metrics.
    #[oai(skip_serializing_if_is_none)]
    network: Option<NetworkMetricsBody>,
}

impl From<&HealthReport> for HealthCheckRequest {
    fn from(r: &HealthReport) -> Self {
        let system = r.system.as_ref().map(|s: &SystemMetrics| SystemMetricsBody {
            cpu_percent: s.cpu_percent,
            memory_percent: s.memory_percent,
            memory_used_mb: s.memory_used_mb,
            memory_total_mb: s.memory_total_mb,
            disk_percent: s.disk_percent,
            disk_used_gb: s.disk_used_gb,
            disk_total_gb: s.disk_total_gb,
            uptime_seconds: s.uptime_seconds,
        });
        let app_metrics = r.app_metrics.as_ref().map(|a: &AppMetrics| AppMetricsBody {
            app_version: a.app_version.clone(),
            transactions_count: a.transactions_count,
            errors_count: a.errors_count,
            warnings_count: a.warnings_count,
            avg_response_time_ms: a.avg_response_time_ms,
        });
        let network = r.network.as_ref().map(|n: &NetworkMetrics| NetworkMetricsBody {
            latency_ms: n.latency_ms,
            rx_bytes: n.rx_bytes,
            tx_bytes: n.tx_bytes,
        });
        Self {
            is_healthy: r.is_healthy,
            response_time_ms: r.response_time_ms,
            status_code: Some(r.status_code),
            endpoint: r.endpoint.clone(),
            response_data: (!r.response_data.is_empty()).then(|| r.response_data.clone().into_iter().collect()),
            error_message: r.error_message.clone(),
            system,
            app_metrics,
            network,
        }
    }
}

/// A device to register.
#[derive(Debug, Object)]
pub(crate) struct RegisterDeviceRequest {
    /// Unique, case-sensitive identifier: 1-128 of `A-Z a-z 0-9 . _ - :`.
    #[oai(validator(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
    device_id: String,
    /// Human-readable name.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 200))]
    name: Option<String>,
    /// Kind of device, e.g. `pos-terminal`.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 64))]
    device_type: Option<String>,
    /// Labels such as `zone` or `env` (at most 64).
    #[oai(skip_serializing_if_is_none)]
    labels: Option<BTreeMap<String, String>>,
}

/// `{"name", "value", "tags"?, "timestamp"?}`.
#[derive(Debug, Object)]
pub(crate) struct SimpleMetricRequest {
    /// Metric name (1-256 characters, no line breaks, not starting with `#`).
    #[oai(validator(min_length = 1, max_length = 256, pattern = r"^[^#\r\n][^\r\n]*$"))]
    name: String,
    /// Numeric value.
    value: f64,
    /// Key-value labels.
    tags: Option<BTreeMap<String, String>>,
    /// Unix time in seconds (< 1e12), milliseconds (< 1e15) or nanoseconds; default now.
    timestamp: Option<f64>,
}

/// One metric of a batch.
#[derive(Debug, Object)]
pub(crate) struct BatchMetric {
    /// Metric name (1-256 characters).
    #[oai(validator(min_length = 1, max_length = 256))]
    name: String,
    /// Field values: numbers, booleans or strings.
    fields: BTreeMap<String, Value>,
    /// Key-value labels.
    tags: Option<BTreeMap<String, String>>,
    /// Unix time in seconds, milliseconds or nanoseconds; default now.
    timestamp: Option<f64>,
    /// `gauge` (default), `counter`, `histogram` or `summary`.
    metric_type: Option<String>,
}

/// `{"metrics": [...]}`.
#[derive(Debug, Object)]
pub(crate) struct MetricBatchRequest {
    /// The metrics.
    metrics: Vec<BatchMetric>,
}

/// A key that belongs to no device.
#[derive(Debug, Object)]
pub(crate) struct FleetKeyRequest {
    /// `read` (reads everything, writes nothing) or `admin`.
    #[oai(validator(pattern = "^(read|admin)$"))]
    role: String,
}

/// A user activity from a frontend. `metadata` may be sent as `extra_data`.
#[derive(Debug, Object)]
pub(crate) struct UserActivityRequest {
    /// `page_view`, `click`, `search`, `interaction`...
    #[oai(validator(min_length = 1, max_length = 50))]
    activity_type: String,
    /// Frontend session.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    session_id: Option<String>,
    /// Page.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 500))]
    page_url: Option<String>,
    /// Element acted on.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    element_id: Option<String>,
    /// Search text.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 65536))]
    search_query: Option<String>,
    /// Time spent, ms.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "2147483647")))]
    duration_ms: Option<i64>,
    /// Free-form details, stored intact (at most 16 levels deep).
    #[oai(skip_serializing_if_is_none)]
    metadata: Option<BTreeMap<String, Value>>,
}

/// An error to log. `context` is stored intact.
#[derive(Debug, Object)]
pub(crate) struct ErrorLogRequest {
    /// `api`, `database`, `external_service`, `validation`, `frontend`...
    #[oai(validator(min_length = 1, max_length = 50))]
    category: String,
    /// `critical`, `error`, `warning` or `info`.
    #[oai(validator(pattern = "^(critical|error|warning|info)$"))]
    severity: String,
    /// What happened.
    #[oai(validator(min_length = 1, max_length = 65536))]
    error_message: String,
    /// Machine-readable code, e.g. `AUTH_001`.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 50))]
    error_code: Option<String>,
    /// Stack trace.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 65536))]
    stack_trace: Option<String>,
    /// Endpoint involved.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    endpoint: Option<String>,
    /// User involved.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    user_id: Option<String>,
    /// Device involved (a device key may name only itself; it is the default).
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    device_id: Option<String>,
    /// Free-form context, stored intact.
    #[oai(skip_serializing_if_is_none)]
    context: Option<BTreeMap<String, Value>>,
    /// Already dealt with (default false).
    #[oai(skip_serializing_if_is_none)]
    resolved: Option<bool>,
}

/// A device state change. `metadata` may be sent as `extra_data`.
#[derive(Debug, Object)]
pub(crate) struct StateChangeRequest {
    /// A registered device.
    #[oai(validator(min_length = 1, max_length = 255))]
    device_id: String,
    /// State before.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 50))]
    previous_state: Option<String>,
    /// State after.
    #[oai(validator(min_length = 1, max_length = 50))]
    new_state: String,
    /// Who or what changed it (a user, `system`); kept as posted. Without it, the change is
    /// attributed to the posting key's fingerprint.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    changed_by: Option<String>,
    /// Why.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 500))]
    reason: Option<String>,
    /// Free-form details, stored intact.
    #[oai(skip_serializing_if_is_none)]
    metadata: Option<BTreeMap<String, Value>>,
}

/// A job's outcome. `metadata` may be sent as `extra_data`.
#[derive(Debug, Object)]
pub(crate) struct JobOutcomeRequest {
    /// Job identifier.
    #[oai(validator(min_length = 1, max_length = 255))]
    job_id: String,
    /// Kind of job, e.g. `device_restart`.
    #[oai(validator(min_length = 1, max_length = 100))]
    job_type: String,
    /// `success`, `failed`, `timeout` or `cancelled`.
    #[oai(validator(pattern = "^(success|failed|timeout|cancelled)$"))]
    status: String,
    /// Device it ran on (a device key may name only itself; it is the default).
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    device_id: Option<String>,
    /// Run time, ms.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "2147483647")))]
    duration_ms: Option<i64>,
    /// Machine-readable error.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 50))]
    error_code: Option<String>,
    /// Human-readable error.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 65536))]
    error_message: Option<String>,
    /// Retries before this outcome (default 0).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "0"), maximum(value = "2147483647")))]
    retry_count: Option<i64>,
    /// Who started it.
    #[oai(skip_serializing_if_is_none, validator(min_length = 1, max_length = 255))]
    initiated_by: Option<String>,
    /// Free-form details, stored intact.
    #[oai(skip_serializing_if_is_none)]
    metadata: Option<BTreeMap<String, Value>>,
}

/// Which measurements to report, as the request message's `filter` entries.
#[derive(Debug, Object)]
pub(crate) struct RequestFilter {
    /// Measurement ids or `prefix*` patterns; null or absent: all.
    #[oai(skip_serializing_if_is_none)]
    id: Option<Vec<String>>,
    /// Only this originator (`SYSTEM`, `Container:<name>`); empty or absent: all.
    #[oai(skip_serializing_if_is_none)]
    originator: Option<String>,
}

/// A metrics request for one device.
#[derive(Debug, Object)]
pub(crate) struct ContainerRequestBody {
    /// A registered device; its thing is `<device_id>:edge:containers`.
    device_id: String,
    /// Reporting interval: seconds, or a duration such as `2s`, `500ms`, `1m`; `0s` stops.
    frequency: String,
    /// What to report; absent: everything.
    #[oai(skip_serializing_if_is_none)]
    filter: Option<Vec<RequestFilter>>,
}

#[cfg(test)]
mod tests {
    use homepot_core::ingest::analytics_json::{MAX_IDENTIFIER, MAX_JOB_TYPE, MAX_LABEL, MAX_SENTENCE, MAX_TEXT};
    use homepot_core::{device, health, metric};
    use serde_json::Value;

    /// What the served document says of one property.
    fn bound(document: &Value, schema: &str, property: &str, keyword: &str) -> Value {
        let found = &document["components"]["schemas"][schema]["properties"][property][keyword];
        assert!(!found.is_null(), "{schema}.{property} documents no {keyword}");
        found.clone()
    }

    #[test]
    fn documented_bounds_are_the_ones_core_enforces() {
        let document: Value = serde_json::from_str(&crate::openapi_json()).unwrap();
        let percent = health::MAX_PERCENT;
        let checks: Vec<(&str, &str, &str, Value)> = vec![
            ("HealthCheckRequest", "endpoint", "maxLength", health::MAX_ENDPOINT_LEN.into()),
            ("HealthCheckRequest", "error_message", "maxLength", health::MAX_ERROR_MESSAGE_LEN.into()),
            ("HealthCheckRequest", "status_code", "minimum", health::STATUS_CODES.0.into()),
            ("HealthCheckRequest", "status_code", "maximum", health::STATUS_CODES.1.into()),
            ("HealthCheckRequest", "response_time_ms", "maximum", i64::from(i32::MAX).into()),
            ("SystemMetricsBody", "cpu_percent", "maximum", percent.into()),
            ("SystemMetricsBody", "memory_percent", "maximum", percent.into()),
            ("SystemMetricsBody", "disk_percent", "maximum", percent.into()),
            ("AppMetricsBody", "app_version", "maxLength", health::MAX_APP_VERSION_LEN.into()),
            ("RegisterDeviceRequest", "name", "maxLength", device::MAX_DEVICE_NAME_LEN.into()),
            ("RegisterDeviceRequest", "device_type", "maxLength", device::MAX_DEVICE_TYPE_LEN.into()),
            ("SimpleMetricRequest", "name", "maxLength", metric::MAX_NAME_LEN.into()),
            ("BatchMetric", "name", "maxLength", metric::MAX_NAME_LEN.into()),
            ("UserActivityRequest", "activity_type", "maxLength", MAX_LABEL.into()),
            ("UserActivityRequest", "session_id", "maxLength", MAX_IDENTIFIER.into()),
            ("UserActivityRequest", "page_url", "maxLength", MAX_SENTENCE.into()),
            ("UserActivityRequest", "search_query", "maxLength", MAX_TEXT.into()),
            ("ErrorLogRequest", "category", "maxLength", MAX_LABEL.into()),
            ("ErrorLogRequest", "error_message", "maxLength", MAX_TEXT.into()),
            ("ErrorLogRequest", "device_id", "maxLength", MAX_IDENTIFIER.into()),
            ("StateChangeRequest", "device_id", "maxLength", MAX_IDENTIFIER.into()),
            ("StateChangeRequest", "new_state", "maxLength", MAX_LABEL.into()),
            ("StateChangeRequest", "changed_by", "maxLength", MAX_IDENTIFIER.into()),
            ("StateChangeRequest", "reason", "maxLength", MAX_SENTENCE.into()),
            ("JobOutcomeRequest", "job_id", "maxLength", MAX_IDENTIFIER.into()),
            ("JobOutcomeRequest", "job_type", "maxLength", MAX_JOB_TYPE.into()),
        ];
        for (schema, property, keyword, expected) in checks {
            let documented = bound(&document, schema, property, keyword);
            assert_eq!(
                documented.as_f64(),
                expected.as_f64(),
                "{schema}.{property} {keyword}: documented {documented}, core enforces {expected}"
            );
        }
        let device_id = bound(&document, "RegisterDeviceRequest", "device_id", "pattern");
        assert!(device_id.as_str().unwrap().ends_with(&format!("{{1,{}}}$", device::MAX_DEVICE_ID_LEN)), "{device_id}");
    }
}
