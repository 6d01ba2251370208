//! Metrics ingest in every format the metrics service takes (simple JSON, JSON batch, line
//! protocol, InfluxDB's `/write`, OTLP) and Prometheus remote write, all through one opening
//! and one write, and metric history.

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::ingest::line_protocol::{LineError, Precision, parse_lines};
use homepot_core::ingest::metrics_json::{parse_metric_batch, parse_simple_metric};
use homepot_core::ingest::{otlp, remote_write};
use homepot_core::{ErrorKind, FieldError, FieldValue, LocSegment, Point, ValidationErrors};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use homepot_engine::{IdempotencyKey, PointsWrite, Principal};

use super::documented::{MetricBatchRequest, SimpleMetricRequest};
use super::{ApiTags, AppState, IdempotencyHeader, parse_tags};
use crate::auth::MetricsAuth;
use crate::body::{JsonBody, OtlpKind, RawBody, RemoteWriteKind, TextKind};
use crate::error::ApiError;

/// Metrics ingest and history (metrics service).
#[derive(Debug, Default)]
pub(crate) struct MetricsApi;

/// A line that was not accepted.
#[derive(Debug, Object)]
struct LineErrorBody {
    /// 1-based line number.
    line: usize,
    /// What is wrong.
    message: String,
}

/// The answer to a metrics push: everything counted in `accepted` is durable.
#[derive(Debug, Object)]
struct MetricsAccepted {
    /// Points stored.
    accepted: usize,
    /// `Accepted N metrics`.
    message: String,
    /// Points stored durably, when the SmartDataFilter kept fewer than were accepted (the rest
    /// were nothing new and are only in the live view).
    #[oai(skip_serializing_if_is_none)]
    stored: Option<usize>,
    /// Lines rejected (line protocol only).
    #[oai(skip_serializing_if_is_none)]
    rejected: Option<usize>,
    /// Why (the first 100 rejected lines).
    #[oai(skip_serializing_if_is_none)]
    errors: Option<Vec<LineErrorBody>>,
}

impl MetricsAccepted {
    fn new(accepted: usize, written: PointsWrite) -> Self {
        let plural = if accepted == 1 { "" } else { "s" };
        Self {
            accepted,
            message: format!("Accepted {accepted} metric{plural}"),
            stored: (written.stored < accepted).then_some(written.stored),
            rejected: None,
            errors: None,
        }
    }
}

/// OTLP's partial success, as OTLP/JSON spells it.
#[derive(Debug, Object)]
struct OtlpPartialSuccess {
    /// Data points rejected (an int64, written as a string in OTLP/JSON).
    #[oai(rename = "rejectedDataPoints")]
    rejected_data_points: String,
    /// Why.
    #[oai(rename = "errorMessage")]
    error_message: String,
}

/// The answer to an OTLP/JSON export: the metrics service's counts plus OTLP's partial success.
#[derive(Debug, Object)]
struct OtlpAccepted {
    /// Points stored.
    accepted: usize,
    /// `Accepted N metrics`.
    message: String,
    /// Present when some data points were rejected.
    #[oai(rename = "partialSuccess", skip_serializing_if_is_none)]
    partial_success: Option<OtlpPartialSuccess>,
}

/// The answer to an export, in the request's encoding. Written by hand because one status
/// with two media types is beyond the derive.
#[derive(Debug)]
enum OtlpResponse {
    Json(OtlpAccepted),
    /// An encoded `ExportMetricsServiceResponse`.
    Protobuf(Vec<u8>),
}

impl poem::IntoResponse for OtlpResponse {
    fn into_response(self) -> poem::Response {
        match self {
            OtlpResponse::Json(body) => Json(body).into_response(),
            OtlpResponse::Protobuf(bytes) => poem::Response::builder().content_type(PROTOBUF).body(bytes),
        }
    }
}

impl ApiResponse for OtlpResponse {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Stored; the answer uses the request's encoding.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType { content_type: "application/json", schema: OtlpAccepted::schema_ref() },
                    MetaMediaType {
                        content_type: PROTOBUF,
                        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary"))),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        OtlpAccepted::register(registry);
    }
}

const PROTOBUF: &str = "application/x-protobuf";

/// InfluxDB's error body, for `/write`.
#[derive(Debug, Object)]
struct InfluxError {
    /// What went wrong.
    error: String,
}

#[derive(Debug, ApiResponse)]
enum WriteResponse {
    /// Every line was stored.
    #[oai(status = 204)]
    NoContent,
    /// Some lines were rejected; the valid ones were stored (InfluxDB's partial write).
    #[oai(status = 400)]
    PartialWrite(Json<InfluxError>),
}

/// The answer to a remote write request, as the remote write specification has it.
#[derive(Debug, ApiResponse)]
enum RemoteWriteResponse {
    /// Every sample was stored (stale markers, NaN values, are skipped).
    #[oai(status = 204)]
    Stored,
    /// The body is not a remote write request, or some series could not be stored (the
    /// others were): the reason, as text. The sender must not retry it.
    #[oai(status = 400)]
    Refused(PlainText<String>),
}

/// One stored point.
#[derive(Debug, Object)]
struct PointView {
    /// Metric name.
    name: String,
    /// Labels.
    tags: BTreeMap<String, String>,
    /// Field values.
    fields: BTreeMap<String, Value>,
    /// Nanoseconds since the Unix epoch.
    timestamp_ns: i64,
    /// `gauge`, `counter`, `histogram` or `summary`.
    metric_type: String,
}

pub(super) fn field_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::Float(v) => Value::from(*v),
        FieldValue::Integer(v) => Value::from(*v),
        FieldValue::UInteger(v) => Value::from(*v),
        FieldValue::Boolean(v) => Value::from(*v),
        FieldValue::String(v) => Value::from(v.as_str()),
    }
}

impl From<Point> for PointView {
    fn from(p: Point) -> Self {
        Self {
            name: p.name().to_owned(),
            tags: p.tags().iter().cloned().collect(),
            fields: p.fields().iter().map(|(k, v)| (k.clone(), field_json(v))).collect(),
            timestamp_ns: p.timestamp_ns(),
            metric_type: p.metric_type().as_str().to_owned(),
        }
    }
}

/// A metric's stored history.
#[derive(Debug, Object)]
struct MetricHistory {
    /// Metric name.
    name: String,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// How many points follow.
    count: usize,
    /// Newest first.
    points: Vec<PointView>,
}

/// A metrics push from an authenticated sender, the same for every ingest format.
struct Push<'a> {
    state: &'a AppState,
    principal: Principal,
    /// Whom the live store counts the series against.
    owner: String,
    /// When it arrived: the time of points that carry none.
    now_ns: i64,
    /// The request's `Idempotency-Key`, scoped to its sender.
    key: Option<IdempotencyKey>,
}

impl<'a> Push<'a> {
    /// Opens a push: read keys are refused before the body is even parsed.
    async fn open(state: &'a AppState, auth: &MetricsAuth, key: IdempotencyHeader) -> Result<Self, ApiError> {
        let principal = state.authenticate_metrics(auth).await?;
        principal.require_some_writer()?;
        let now_ns = state.homepot.now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let owner = auth.owner();
        let scope = match &principal {
            Principal::Device(device) => super::device_scope(device.as_str()),
            _ => format!("key:{owner}"),
        };
        let key = super::scoped_key(key, scope)?;
        Ok(Push { state, principal, owner, now_ns, key })
    }

    /// Writes `points`, durable when this returns: how many were sent, and what was stored.
    /// A device key's points always carry its own `device_id`, so a device cannot write in
    /// another's name.
    async fn write(&self, points: Vec<Point>) -> Result<(usize, PointsWrite), ApiError> {
        let points: Vec<Point> = match &self.principal {
            Principal::Device(device) => points.into_iter().map(|p| p.with_tag("device_id", device.as_str())).collect(),
            _ => points,
        };
        let sent = points.len();
        Ok((sent, self.state.homepot.write_points(&self.owner, points, self.key.as_ref()).await?))
    }
}

fn parse_precision(raw: Option<&str>) -> Result<Precision, ApiError> {
    match raw {
        None | Some("") => Ok(Precision::Nanoseconds),
        Some(raw) => Precision::parse(raw).ok_or_else(|| {
            ApiError::invalid_field(
                "query",
                "precision",
                ErrorKind::BadFormat,
                "precision must be ns, us, ms, s, m or h",
            )
        }),
    }
}

fn line_errors(errors: &[LineError]) -> Vec<LineErrorBody> {
    errors.iter().map(|e| LineErrorBody { line: e.line, message: e.error.to_string() }).collect()
}

#[OpenApi]
impl MetricsApi {
    /// Push one metric: `{"name": "fps", "value": 29.97, "tags": {...}, "timestamp": ...}`.
    /// Needs an admin or device key; a device's points are tagged with its `device_id`.
    #[oai(path = "/api/v1/metrics/simple", method = "post", tag = "ApiTags::Metrics")]
    async fn push_simple(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        body: JsonBody<SimpleMetricRequest>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<Json<MetricsAccepted>, ApiError> {
        let push = Push::open(&state, &auth, idempotency_key).await?;
        let point = parse_simple_metric(&body.bytes, push.now_ns).map_err(|e| ApiError::invalid("body", e))?;
        let (accepted, written) = push.write(vec![point]).await?;
        Ok(Json(MetricsAccepted::new(accepted, written)))
    }

    /// Push a batch: `{"metrics": [{"name", "fields", "tags", "timestamp", "metric_type"}]}`.
    /// Validated whole: one invalid metric rejects the request with every problem listed.
    #[oai(path = "/api/v1/metrics", method = "post", tag = "ApiTags::Metrics")]
    async fn push_batch(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        body: JsonBody<MetricBatchRequest>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<Json<MetricsAccepted>, ApiError> {
        let push = Push::open(&state, &auth, idempotency_key).await?;
        let points = parse_metric_batch(&body.bytes, push.now_ns).map_err(|e| ApiError::invalid("body", e))?;
        let (accepted, written) = push.write(points).await?;
        Ok(Json(MetricsAccepted::new(accepted, written)))
    }

    /// Push InfluxDB line protocol. Valid lines are stored even when others are not (as
    /// InfluxDB does); the answer lists the rejected lines. All lines invalid: 422.
    #[oai(path = "/api/v1/metrics/influx", method = "post", tag = "ApiTags::Metrics")]
    async fn push_influx(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Timestamp unit: `ns` (default), `us`, `ms`, `s`, `m` or `h`.
        #[oai(validator(pattern = r"^(ns|n|us|u|µ|ms|s|m|h)?$"))]
        precision: Query<Option<String>>,
        body: RawBody<TextKind>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<Json<MetricsAccepted>, ApiError> {
        let push = Push::open(&state, &auth, idempotency_key).await?;
        let precision = parse_precision(precision.0.as_deref())?;
        let outcome = parse_lines(body.text()?, precision, push.now_ns);
        if outcome.points.is_empty() && outcome.error_count > 0 {
            let errors = outcome
                .errors
                .iter()
                .map(|e| FieldError::new(vec![LocSegment::Index(e.line)], ErrorKind::BadFormat, e.error.to_string()))
                .collect();
            if let Err(errors) = ValidationErrors::check(errors) {
                return Err(ApiError::invalid("body", errors));
            }
        }
        let (accepted, written) = push.write(outcome.points).await?;
        let mut answer = MetricsAccepted::new(accepted, written);
        if outcome.error_count > 0 {
            answer.rejected = Some(outcome.error_count);
            answer.errors = Some(line_errors(&outcome.errors));
        }
        Ok(Json(answer))
    }

    /// InfluxDB-compatible write: 204 when every line is stored; 400 with InfluxDB's
    /// `partial write` error when some are not (the valid ones are stored). `db` and `rp`
    /// are accepted and ignored.
    #[oai(path = "/write", method = "post", tag = "ApiTags::Metrics")]
    async fn influx_write(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Timestamp unit: `ns` (default), `us`, `ms`, `s`, `m` or `h`.
        #[oai(validator(pattern = r"^(ns|n|us|u|µ|ms|s|m|h)?$"))]
        precision: Query<Option<String>>,
        /// Database name (ignored).
        db: Query<Option<String>>,
        body: RawBody<TextKind>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<WriteResponse, ApiError> {
        let _ = db;
        let push = Push::open(&state, &auth, idempotency_key).await?;
        let precision = parse_precision(precision.0.as_deref())?;
        let outcome = parse_lines(body.text()?, precision, push.now_ns);
        push.write(outcome.points).await?;
        if outcome.error_count == 0 {
            return Ok(WriteResponse::NoContent);
        }
        let first = outcome.errors.first().map(|e| format!("line {}: {}", e.line, e.error)).unwrap_or_default();
        Ok(WriteResponse::PartialWrite(Json(InfluxError {
            error: format!("partial write: {first} dropped={}", outcome.error_count),
        })))
    }

    /// Push OpenTelemetry metrics (OTLP/HTTP, protobuf or JSON). Gauges and sums become a
    /// `value` field, histograms `count`/`sum`/`min`/`max`, summaries also `quantile_<q>`;
    /// resource and data point attributes become tags. The answer uses the request's encoding.
    #[oai(path = "/api/v1/metrics/otlp", method = "post", tag = "ApiTags::Metrics")]
    async fn push_otlp(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        body: RawBody<OtlpKind>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<OtlpResponse, ApiError> {
        let push = Push::open(&state, &auth, idempotency_key).await?;
        let protobuf = body.media == 0;
        let decoded = if protobuf { otlp::decode_protobuf(&body.bytes) } else { otlp::decode_json(&body.bytes) };
        let outcome = otlp::to_points(&decoded.map_err(|e| ApiError::invalid("body", e))?, push.now_ns);
        let (accepted, written) = push.write(outcome.points).await?;
        let error_message = outcome.errors.join("; ");
        if protobuf {
            return Ok(OtlpResponse::Protobuf(otlp::encode_response(outcome.rejected, &error_message)));
        }
        let counts = MetricsAccepted::new(accepted, written);
        Ok(OtlpResponse::Json(OtlpAccepted {
            accepted,
            message: counts.message,
            partial_success: (outcome.rejected > 0)
                .then(|| OtlpPartialSuccess { rejected_data_points: outcome.rejected.to_string(), error_message }),
        }))
    }

    /// Prometheus remote write 1.0 (Prometheus, vmagent, Grafana Alloy, Telegraf, the
    /// OpenTelemetry collector): a snappy block-compressed protobuf `WriteRequest` with
    /// `Content-Encoding: snappy`. Each sample becomes a point named after its `__name__`,
    /// tagged with its other labels, with the field `value`. 204 when stored; 400 with the
    /// reason for a body that is not such a request or series that cannot be stored (the
    /// others are stored), which a sender does not retry; 429 and 5xx are retried. Needs an
    /// admin or device key (`Authorization: Bearer KEY` or basic auth).
    #[oai(path = "/api/v1/write", method = "post", tag = "ApiTags::Metrics")]
    async fn remote_write(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// `snappy`, the only encoding the protocol uses.
        #[oai(name = "Content-Encoding")]
        content_encoding: poem_openapi::param::Header<Option<String>>,
        body: RawBody<RemoteWriteKind>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
    ) -> Result<RemoteWriteResponse, ApiError> {
        let push = Push::open(&state, &auth, idempotency_key).await?;
        if let Some(encoding) = content_encoding.0.filter(|e| !e.trim().eq_ignore_ascii_case("snappy")) {
            return Ok(RemoteWriteResponse::Refused(PlainText(format!(
                "Content-Encoding must be snappy, got {encoding}"
            ))));
        }
        let request = match remote_write::decode(&body.bytes) {
            Ok(request) => request,
            Err(error) => return Ok(RemoteWriteResponse::Refused(PlainText(error.to_string()))),
        };
        let outcome = remote_write::to_points(&request);
        push.write(outcome.points).await?;
        if outcome.rejected == 0 {
            return Ok(RemoteWriteResponse::Stored);
        }
        Ok(RemoteWriteResponse::Refused(PlainText(format!(
            "{} samples rejected: {}",
            outcome.rejected,
            outcome.errors.join("; ")
        ))))
    }

    /// A metric's stored points of the last `hours`, newest first, optionally only those
    /// carrying every `tag=key:value` given. Needs an admin or read key.
    #[oai(path = "/api/v1/metrics/history", method = "get", tag = "ApiTags::Metrics")]
    async fn history(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Metric name.
        #[oai(validator(min_length = 1, max_length = 256))]
        name: Query<String>,
        /// Window in hours before now (1-720, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "720")))]
        hours: Query<Option<u32>>,
        /// A required tag as `key:value`; repeat for more.
        tag: Query<Vec<String>>,
        /// Most points returned (1-10000, default 1000).
        #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<Option<u32>>,
    ) -> Result<Json<MetricHistory>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let name = name.0;
        let tags = parse_tags(&tag.0)?;
        let hours = hours.0.unwrap_or(24);
        let points = state.homepot.metric_history(&name, hours, &tags, limit.0.unwrap_or(1000) as usize).await?;
        Ok(Json(MetricHistory {
            name,
            time_range_hours: hours,
            count: points.len(),
            points: points.into_iter().map(PointView::from).collect(),
        }))
    }
}
