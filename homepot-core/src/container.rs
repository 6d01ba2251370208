//! Container metrics messages: the request that asks an edge device to report, the
//! response with its status, and the data messages with per-originator snapshots, written in
//! their Ditto JSON form; the MQTT topics they travel on. The parsers are in
//! [`crate::ingest::container_json`].

use serde_json::{Value, json};

use crate::device::DeviceId;
use crate::metric::{FieldValue, MetricType, Point};

/// The suffix that makes a device id a container-metrics thing id.
pub const THING_SUFFIX: &str = ":edge:containers";
/// The `path` of a data message.
pub const DATA_PATH: &str = "/features/Metrics/outbox/messages/data";
/// The `path` of a request message.
pub const REQUEST_PATH: &str = "/features/Metrics/inbox/messages/request";
/// The measurement ids an edge device documents; others are kept as custom metrics.
pub const KNOWN_IDS: [&str; 9] = [
    "cpu.utilization",
    "memory.utilization",
    "memory.total",
    "memory.used",
    "io.readBytes",
    "io.writeBytes",
    "net.readBytes",
    "net.writeBytes",
    "pids",
];

/// Writes a frequency the way the container metrics messages do (`2s`, `500ms`).
pub fn format_frequency(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// Which measurements to report: ids matched exactly or by prefix with a trailing `*`
/// (`cpu.*`), an originator matched exactly; empty ids or an empty originator match all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsFilter {
    /// Measurement ids or `prefix*` patterns.
    pub ids: Vec<String>,
    /// The originator, e.g. `SYSTEM` or `Container:test`.
    pub originator: String,
}

impl MetricsFilter {
    /// Whether a measurement of `originator` with `id` passes.
    pub fn matches(&self, originator: &str, id: &str) -> bool {
        let originator_ok = self.originator.is_empty() || self.originator == originator;
        let id_ok = self.ids.is_empty()
            || self.ids.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => p == id,
            });
        originator_ok && id_ok
    }
}

/// A request asking a device to report container metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRequest {
    /// The thing, `<deviceId>:edge:containers`.
    pub thing_id: String,
    /// Ties the response to this request.
    pub correlation_id: String,
    /// How often to report, in ms; 0 stops.
    pub frequency_ms: u64,
    /// What to report (none: everything).
    pub filters: Vec<MetricsFilter>,
}

/// The Ditto topic of a thing's message: `edge:device:edge:containers` becomes
/// `edge/device:edge:containers/things/live/messages/<kind>`.
pub fn ditto_topic(thing_id: &str, kind: &str) -> String {
    let (namespace, name) = thing_id.split_once(':').unwrap_or(("", thing_id));
    format!("{namespace}/{name}/things/live/messages/{kind}")
}

/// The thing id a Ditto topic names (`edge/device:edge:containers/things/...` gives
/// `edge:device:edge:containers`).
pub fn thing_from_topic(topic: &str) -> Option<String> {
    let mut parts = topic.splitn(3, '/');
    let (namespace, name) = (parts.next()?, parts.next()?);
    (!namespace.is_empty() && !name.is_empty()).then(|| format!("{namespace}:{name}"))
}

/// The device a thing id belongs to (`edge:device:edge:containers` gives `edge:device`).
pub fn device_of_thing(thing_id: &str) -> Option<DeviceId> {
    DeviceId::parse(thing_id.strip_suffix(THING_SUFFIX).unwrap_or(thing_id)).ok()
}

impl MetricsRequest {
    /// The Ditto message, as the container metrics documentation shows it.
    pub fn to_message(&self) -> Value {
        let filter: Vec<Value> = self
            .filters
            .iter()
            .map(|f| {
                json!({
                    "id": if f.ids.is_empty() { Value::Null } else { json!(f.ids) },
                    "originator": f.originator,
                })
            })
            .collect();
        json!({
            "topic": ditto_topic(&self.thing_id, "request"),
            "headers": {"response-required": true, "content-type": "application/json", "correlation-id": self.correlation_id},
            "path": REQUEST_PATH,
            "value": {"filter": filter, "frequency": format_frequency(self.frequency_ms)},
        })
    }
}

/// The status a device answers a request with (204 on success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsResponse {
    /// The request's correlation id.
    pub correlation_id: String,
    /// HTTP-style status.
    pub status: u16,
}

/// What a message on a container-metrics MQTT topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerTopic<'a> {
    /// A data message from `thing`: `e/<tenant>/<thing>`, or `command//<thing>/res/[<id>]/data`
    /// as the documentation shows.
    Data {
        /// The reporting thing.
        thing: &'a str,
    },
    /// A device's answer to a request: `command//<thing>/res/<requestId>/<status>`, or
    /// `command//<thing>/res//request` with the status in the payload.
    Response {
        /// The answering thing.
        thing: &'a str,
        /// The topic's request id (empty in the documented form).
        request_id: &'a str,
        /// The topic's last segment: a status, or `request`.
        last: &'a str,
    },
    /// Anything else (requests homepot itself sent, unrelated topics).
    Other,
}

/// Classifies an MQTT topic of the container metrics messages.
pub fn classify_topic(topic: &str) -> ContainerTopic<'_> {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["e", _tenant, thing] if !thing.is_empty() => ContainerTopic::Data { thing },
        ["command", "", thing, "res", _, "data"] if !thing.is_empty() => ContainerTopic::Data { thing },
        ["command", "", thing, "res", request_id, last] if !thing.is_empty() => {
            ContainerTopic::Response { thing, request_id, last }
        }
        _ => ContainerTopic::Other,
    }
}

/// A metrics request as an operator asks for it over HTTP: the device, the frequency and
/// the filter (`{"device_id": "edge:device", "frequency": "2s", "filter": [{"id": null,
/// "originator": "SYSTEM"}]}`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestCommand {
    /// The device to ask; its thing is `<device_id>:edge:containers`.
    pub device_id: DeviceId,
    /// How often to report, in ms; 0 stops.
    pub frequency_ms: u64,
    /// What to report (none: everything).
    pub filters: Vec<MetricsFilter>,
}

impl RequestCommand {
    /// The thing id of the device.
    pub fn thing_id(&self) -> String {
        format!("{}{THING_SUFFIX}", self.device_id)
    }
}

/// One originator's measurements in a data message.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginatorSnapshot {
    /// `SYSTEM` or `Container:<name>`.
    pub originator: String,
    /// `(id, value)` pairs, e.g. `("cpu.utilization", 8.75)`.
    pub measurements: Vec<(String, f64)>,
}

/// A data message: measurements per originator at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsData {
    /// The reporting thing (from the topic).
    pub thing_id: String,
    /// When the device published it, Unix ms.
    pub timestamp_ms: i64,
    /// The snapshots.
    pub snapshot: Vec<OriginatorSnapshot>,
}

impl MetricsData {
    /// The Ditto message, as the container metrics documentation shows it.
    pub fn to_message(&self) -> Value {
        let snapshot: Vec<Value> = self
            .snapshot
            .iter()
            .map(|s| {
                let measurements: Vec<Value> =
                    s.measurements.iter().map(|(id, v)| json!({"id": id, "value": v})).collect();
                json!({"originator": s.originator, "measurements": measurements})
            })
            .collect();
        json!({
            "topic": ditto_topic(&self.thing_id, "data"),
            "headers": {"content-type": "application/json"},
            "path": DATA_PATH,
            "value": {"snapshot": snapshot, "timestamp": self.timestamp_ms},
        })
    }

    /// One `container` point per originator, fields named by measurement id, tagged with the
    /// `originator` and the `device_id` the thing belongs to. Unknown ids are kept.
    pub fn points(&self) -> Vec<Point> {
        let device = device_of_thing(&self.thing_id);
        let time_ns = self.timestamp_ms.saturating_mul(1_000_000);
        self.snapshot
            .iter()
            .filter(|s| !s.measurements.is_empty())
            .filter_map(|s| {
                let mut tags = vec![("originator".to_owned(), s.originator.clone())];
                if let Some(device) = &device {
                    tags.push(("device_id".to_owned(), device.to_string()));
                }
                let mut fields: Vec<(String, FieldValue)> = Vec::new();
                for (id, value) in &s.measurements {
                    // A repeated id keeps its last value, as a device's latest word.
                    fields.retain(|(k, _)| k != id);
                    fields.push((id.clone(), FieldValue::Float(*value)));
                }
                Point::new("container".to_owned(), tags, fields, time_ns, MetricType::Gauge).ok()
            })
            .collect()
    }
}
