//! Device health checks (device health API): the submitted report, its validation rules and the
//! document that is stored for it.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::device::DeviceId;
use crate::filter::Tracked;
use crate::metric::{FieldValue, MetricType, Point};
use crate::validation::{
    ErrorKind, ErrorSink, FieldError, LocSegment, ValidationErrors, check_float_range, check_int_range, check_len,
};

/// Longest `endpoint` accepted (the column is `VARCHAR(200)`).
pub const MAX_ENDPOINT_LEN: usize = 200;
/// Longest `error_message` accepted.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;
/// Longest `app_metrics.app_version`.
pub const MAX_APP_VERSION_LEN: usize = 64;
/// The range of `status_code`: an HTTP status.
pub const STATUS_CODES: (i64, i64) = (100, 599);
/// The upper bound of every percentage (the lower is 0).
pub const MAX_PERCENT: f64 = 100.0;
/// How far ahead of the server's clock a report's `checked_at` may be: clocks drift.
pub const MAX_CHECKED_AT_AHEAD: TimeDelta = TimeDelta::minutes(5);
/// Deepest nesting accepted inside `response_data`.
pub const MAX_RESPONSE_DATA_DEPTH: usize = 16;
/// The point names a health check's fields are written under (live view, rollups).
pub const POINT_NAMES: [&str; 4] = ["device_health", "device_system", "device_app", "device_network"];
/// Keys of the stored document that hold the metric groups.
pub const GROUP_KEYS: [&str; 3] = ["system", "app_metrics", "network"];

/// System resource metrics of a health report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemMetrics {
    /// CPU usage, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Memory usage, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    /// Used memory in MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used_mb: Option<i64>,
    /// Total memory in MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<i64>,
    /// Disk usage, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<f64>,
    /// Used disk in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_used_gb: Option<i64>,
    /// Total disk in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_total_gb: Option<i64>,
    /// Seconds since boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<i64>,
}

/// Application metrics of a health report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppMetrics {
    /// Application version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Transactions processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions_count: Option<i64>,
    /// Errors encountered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_count: Option<i64>,
    /// Warnings raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings_count: Option<i64>,
    /// Average response time in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_response_time_ms: Option<i64>,
}

/// Network metrics of a health report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkMetrics {
    /// Latency in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Bytes received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<i64>,
    /// Bytes transmitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<i64>,
}

/// A health report as submitted, before validation. Serialises to the original API's request shape.
/// Request bodies go through [`crate::ingest::health_json`], which locates every error; serde
/// reads back what was serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Overall health.
    pub is_healthy: bool,
    /// Health-check response time in ms.
    pub response_time_ms: i64,
    /// HTTP status of the device's own health check (default 200).
    pub status_code: i64,
    /// Health-check endpoint path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Free-form device data.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub response_data: Map<String, Value>,
    /// Error description when unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// System metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemMetrics>,
    /// Application metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_metrics: Option<AppMetrics>,
    /// Network metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMetrics>,
    /// When the device took the sample (an extension of the original API): a report sent
    /// from a backlog lands at its own time. Without it the server's acceptance time applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
}

impl HealthReport {
    /// A minimal report: only the two required fields.
    pub fn minimal(is_healthy: bool, response_time_ms: i64) -> Self {
        Self {
            is_healthy,
            response_time_ms,
            status_code: 200,
            endpoint: None,
            response_data: Map::new(),
            error_message: None,
            system: None,
            app_metrics: None,
            network: None,
            checked_at: None,
        }
    }

    /// Records every rule this report breaks, with locations relative to the report.
    pub(crate) fn check(&self, sink: &mut ErrorSink) {
        let root: &[LocSegment] = &[];
        check_int_range(sink, root, "response_time_ms", self.response_time_ms, 0, i64::from(i32::MAX));
        check_int_range(sink, root, "status_code", self.status_code, STATUS_CODES.0, STATUS_CODES.1);
        if let Some(endpoint) = &self.endpoint {
            check_len(sink, root, "endpoint", endpoint, 0, MAX_ENDPOINT_LEN);
        }
        if let Some(message) = &self.error_message {
            check_len(sink, root, "error_message", message, 0, MAX_ERROR_MESSAGE_LEN);
        }
        let data_loc = [LocSegment::from("response_data")];
        for key in GROUP_KEYS {
            let group_present = match key {
                "system" => self.system.is_some(),
                "app_metrics" => self.app_metrics.is_some(),
                _ => self.network.is_some(),
            };
            if group_present && self.response_data.contains_key(key) {
                sink.at(&data_loc, key, ErrorKind::Inconsistent, format!("conflicts with the top-level '{key}' group"));
            }
        }
        if self.response_data.values().any(|v| depth(v) >= MAX_RESPONSE_DATA_DEPTH) {
            sink.at(
                root,
                "response_data",
                ErrorKind::TooLong,
                format!("nesting deeper than {MAX_RESPONSE_DATA_DEPTH} levels"),
            );
        }
        if let Some(system) = &self.system {
            let loc = [LocSegment::from("system")];
            for (name, value) in [
                ("cpu_percent", system.cpu_percent),
                ("memory_percent", system.memory_percent),
                ("disk_percent", system.disk_percent),
            ] {
                if let Some(value) = value {
                    check_float_range(sink, &loc, name, value, 0.0, MAX_PERCENT);
                }
            }
            non_negative(
                sink,
                &loc,
                &[
                    ("memory_used_mb", system.memory_used_mb),
                    ("memory_total_mb", system.memory_total_mb),
                    ("disk_used_gb", system.disk_used_gb),
                    ("disk_total_gb", system.disk_total_gb),
                    ("uptime_seconds", system.uptime_seconds),
                ],
            );
            used_within_total(
                sink,
                &loc,
                "memory_used_mb",
                system.memory_used_mb,
                "memory_total_mb",
                system.memory_total_mb,
            );
            used_within_total(sink, &loc, "disk_used_gb", system.disk_used_gb, "disk_total_gb", system.disk_total_gb);
        }
        if let Some(app) = &self.app_metrics {
            let loc = [LocSegment::from("app_metrics")];
            if let Some(version) = &app.app_version {
                check_len(sink, &loc, "app_version", version, 0, MAX_APP_VERSION_LEN);
            }
            non_negative(
                sink,
                &loc,
                &[
                    ("transactions_count", app.transactions_count),
                    ("errors_count", app.errors_count),
                    ("warnings_count", app.warnings_count),
                    ("avg_response_time_ms", app.avg_response_time_ms),
                ],
            );
        }
        if let Some(network) = &self.network {
            let loc = [LocSegment::from("network")];
            non_negative(
                sink,
                &loc,
                &[("latency_ms", network.latency_ms), ("rx_bytes", network.rx_bytes), ("tx_bytes", network.tx_bytes)],
            );
        }
    }
}

fn non_negative(sink: &mut ErrorSink, loc: &[LocSegment], fields: &[(&str, Option<i64>)]) {
    for (name, value) in fields {
        if let Some(value) = value {
            check_int_range(sink, loc, name, *value, 0, i64::MAX);
        }
    }
}

fn used_within_total(
    sink: &mut ErrorSink,
    loc: &[LocSegment],
    used_name: &str,
    used: Option<i64>,
    total_name: &str,
    total: Option<i64>,
) {
    if let (Some(used), Some(total)) = (used, total)
        && used > total
        && total >= 0
    {
        sink.at(
            loc,
            used_name,
            ErrorKind::Inconsistent,
            format!("{used_name} ({used}) exceeds {total_name} ({total})"),
        );
    }
}

/// Nesting depth of a JSON value (a scalar is 0). Iterative, so hostile input cannot
/// overflow the stack.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// A validated health report.
///
/// **Invariant:** every rule of [`HealthReport::check`] holds: percentages in 0–100, counters
/// and sizes non-negative, used ≤ total, bounded strings, no group duplicated in `response_data`.
///
/// Serde reads it back as a report and validates it again, so a stored check cannot bypass
/// the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HealthReport", into = "HealthReport")]
pub struct HealthCheck(HealthReport);

impl TryFrom<HealthReport> for HealthCheck {
    type Error = ValidationErrors;

    fn try_from(report: HealthReport) -> Result<Self, Self::Error> {
        Self::validate(report)
    }
}

impl From<HealthCheck> for HealthReport {
    fn from(check: HealthCheck) -> Self {
        check.0
    }
}

impl HealthCheck {
    /// Validates a report.
    ///
    /// # Errors
    /// Every rule the report breaks, located from the report's root.
    pub fn validate(report: HealthReport) -> Result<Self, ValidationErrors> {
        let mut sink = ErrorSink::default();
        report.check(&mut sink);
        sink.finish().map(|()| Self(report))
    }

    /// Wraps a report already checked by an adapter that ran [`HealthReport::check`].
    pub(crate) fn checked(report: HealthReport) -> Self {
        Self(report)
    }

    /// The validated report.
    pub fn report(&self) -> &HealthReport {
        &self.0
    }

    /// The time the check is stored at: its own `checked_at`, or `now` (the acceptance time)
    /// without one.
    ///
    /// # Errors
    /// A `checked_at` more than [`MAX_CHECKED_AT_AHEAD`] after `now`, or more than `max_age`
    /// before it (the raw retention: older data would be purged at once).
    pub fn sample_time(
        &self,
        now: DateTime<Utc>,
        max_age: Option<TimeDelta>,
    ) -> Result<DateTime<Utc>, ValidationErrors> {
        let Some(at) = self.0.checked_at else { return Ok(now) };
        let loc = || vec![LocSegment::from("checked_at")];
        if at > now + MAX_CHECKED_AT_AHEAD {
            let message =
                format!("more than {} minutes ahead of the server's clock", MAX_CHECKED_AT_AHEAD.num_minutes());
            return Err(ValidationErrors::single(FieldError::new(loc(), ErrorKind::TooLarge, message)));
        }
        if let Some(max_age) = max_age
            && at < now - max_age
        {
            let message = format!("older than the raw retention ({} hours)", max_age.num_hours());
            return Err(ValidationErrors::single(FieldError::new(loc(), ErrorKind::TooSmall, message)));
        }
        Ok(at)
    }

    /// CPU usage, if reported (a hot, indexed column).
    pub fn cpu_percent(&self) -> Option<f64> {
        self.0.system.as_ref().and_then(|s| s.cpu_percent)
    }
    /// Memory usage, if reported.
    pub fn memory_percent(&self) -> Option<f64> {
        self.0.system.as_ref().and_then(|s| s.memory_percent)
    }
    /// Disk usage, if reported.
    pub fn disk_percent(&self) -> Option<f64> {
        self.0.system.as_ref().and_then(|s| s.disk_percent)
    }

    /// The stored `response_data` document: the submitted `response_data` with the `system`,
    /// `app_metrics` and `network` groups added under their own keys, as in the device health API, so
    /// `response_data->'system'->>'cpu_percent'` works in SQL.
    pub fn document(&self) -> Map<String, Value> {
        let report = &self.0;
        let mut doc = report.response_data.clone();
        let groups = [
            ("system", report.system.as_ref().map(serde_json::to_value)),
            ("app_metrics", report.app_metrics.as_ref().map(serde_json::to_value)),
            ("network", report.network.as_ref().map(serde_json::to_value)),
        ];
        for (key, value) in groups {
            // Serialising plain structs of numbers and strings cannot fail.
            if let Some(Ok(value)) = value {
                doc.insert(key.to_owned(), value);
            }
        }
        doc
    }
}

impl HealthCheck {
    /// The values the SmartDataFilter compares: health flag, status code and error text are
    /// discrete (any change matters); response time and every reported metric are numbers.
    pub fn tracked(&self) -> Vec<(String, Tracked)> {
        let r = &self.0;
        let mut tracked = vec![
            ("is_healthy".to_owned(), Tracked::Discrete(r.is_healthy.to_string())),
            ("status_code".to_owned(), Tracked::Discrete(r.status_code.to_string())),
            ("response_time_ms".to_owned(), Tracked::Number(r.response_time_ms as f64)),
        ];
        if let Some(message) = &r.error_message {
            tracked.push(("error_message".to_owned(), Tracked::Discrete(message.clone())));
        }
        // device_health's fields are tracked above; the groups' metrics follow.
        for (group, fields) in self.metric_groups().into_iter().skip(1) {
            for (field, value) in fields {
                let value = match value {
                    FieldValue::String(s) => Tracked::Discrete(s),
                    FieldValue::Boolean(b) => Tracked::Discrete(b.to_string()),
                    other => Tracked::Number(other.as_f64().unwrap_or_default()),
                };
                tracked.push((format!("{group}.{field}"), value));
            }
        }
        tracked
    }

    /// The check as metric points tagged with `device_id`, so health reports show up in the
    /// live metrics, `/metrics` and the stream: `device_health` (is_healthy, response_time_ms,
    /// status_code), and `device_system`, `device_app`, `device_network` with the reported
    /// fields of each group.
    pub fn points(&self, device_id: &DeviceId, time_ns: i64) -> Vec<Point> {
        let tags = vec![("device_id".to_owned(), device_id.as_str().to_owned())];
        self.metric_groups()
            .into_iter()
            // A validated check always makes valid points; a group that somehow does not is skipped.
            .filter_map(|(name, fields)| {
                Point::new(name.to_owned(), tags.clone(), fields, time_ns, MetricType::Gauge).ok()
            })
            .collect()
    }

    /// `device_health` first, then each reported group with its reported fields.
    fn metric_groups(&self) -> Vec<(&'static str, Vec<(String, FieldValue)>)> {
        let r = &self.0;
        let int = |name: &str, v: Option<i64>| v.map(|v| (name.to_owned(), FieldValue::Integer(v)));
        let float = |name: &str, v: Option<f64>| v.map(|v| (name.to_owned(), FieldValue::Float(v)));
        let mut groups: Vec<(&'static str, Vec<(String, FieldValue)>)> = vec![(
            "device_health",
            vec![
                ("is_healthy".to_owned(), FieldValue::Boolean(r.is_healthy)),
                ("response_time_ms".to_owned(), FieldValue::Integer(r.response_time_ms)),
                ("status_code".to_owned(), FieldValue::Integer(r.status_code)),
            ],
        )];
        if let Some(s) = &r.system {
            let fields = [
                float("cpu_percent", s.cpu_percent),
                float("memory_percent", s.memory_percent),
                int("memory_used_mb", s.memory_used_mb),
                int("memory_total_mb", s.memory_total_mb),
                float("disk_percent", s.disk_percent),
                int("disk_used_gb", s.disk_used_gb),
                int("disk_total_gb", s.disk_total_gb),
                int("uptime_seconds", s.uptime_seconds),
            ];
            groups.push(("device_system", fields.into_iter().flatten().collect()));
        }
        if let Some(a) = &r.app_metrics {
            let fields = [
                a.app_version.as_ref().map(|v| ("app_version".to_owned(), FieldValue::String(v.clone()))),
                int("transactions_count", a.transactions_count),
                int("errors_count", a.errors_count),
                int("warnings_count", a.warnings_count),
                int("avg_response_time_ms", a.avg_response_time_ms),
            ];
            groups.push(("device_app", fields.into_iter().flatten().collect()));
        }
        if let Some(n) = &r.network {
            let fields = [int("latency_ms", n.latency_ms), int("rx_bytes", n.rx_bytes), int("tx_bytes", n.tx_bytes)];
            groups.push(("device_network", fields.into_iter().flatten().collect()));
        }
        groups.retain(|(_, fields)| !fields.is_empty());
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_validates_a_check_again() {
        let mut report = HealthReport::minimal(false, 150);
        report.system = Some(SystemMetrics { cpu_percent: Some(65.5), ..Default::default() });
        report.response_data.insert("queue".into(), Value::from(3));
        let check = HealthCheck::validate(report.clone()).expect("valid");
        let json = serde_json::to_string(&check).expect("serialises");
        assert_eq!(serde_json::from_str::<HealthCheck>(&json).expect("reads back"), check);
        report.system = Some(SystemMetrics { cpu_percent: Some(165.5), ..Default::default() });
        let invalid = serde_json::to_string(&report).expect("serialises");
        assert!(serde_json::from_str::<HealthCheck>(&invalid).is_err(), "cpu over 100 %");
    }

    #[test]
    fn every_reported_metric_is_tracked() {
        let mut report = HealthReport::minimal(true, 150);
        report.system = Some(SystemMetrics { cpu_percent: Some(65.5), ..Default::default() });
        let tracked = HealthCheck::validate(report).unwrap().tracked();
        let names: Vec<&str> = tracked.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["is_healthy", "status_code", "response_time_ms", "device_system.cpu_percent"]);
    }

    #[test]
    fn checks_become_points_per_group() {
        let mut report = HealthReport::minimal(true, 150);
        report.system = Some(SystemMetrics { cpu_percent: Some(65.5), ..Default::default() });
        report.network = Some(NetworkMetrics::default());
        let device = DeviceId::parse("pos-1").unwrap();
        let points = HealthCheck::validate(report).unwrap().points(&device, 7);
        let names: Vec<&str> = points.iter().map(Point::name).collect();
        assert_eq!(names, ["device_health", "device_system"], "empty groups make no point");
        assert_eq!(points[1].fields(), [("cpu_percent".to_owned(), FieldValue::Float(65.5))]);
        assert_eq!(points[1].tags(), [("device_id".to_owned(), "pos-1".to_owned())]);
        assert_eq!(points[0].timestamp_ns(), 7);
    }

    #[test]
    fn document_carries_groups_under_their_keys() {
        let mut report = HealthReport::minimal(true, 10);
        report.response_data.insert("status".into(), Value::from("healthy"));
        report.system = Some(SystemMetrics { cpu_percent: Some(65.5), ..Default::default() });
        let check = HealthCheck::validate(report).unwrap();
        let doc = check.document();
        assert_eq!(doc["status"], "healthy");
        assert_eq!(doc["system"]["cpu_percent"], 65.5);
        assert!(!doc.contains_key("network"));
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = Value::from(1);
        for _ in 0..20 {
            deep = Value::Array(vec![deep]);
        }
        let mut report = HealthReport::minimal(true, 1);
        report.response_data.insert("deep".into(), deep);
        assert!(HealthCheck::validate(report).is_err());
    }
}
