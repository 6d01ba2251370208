//! The JSON adapters for container metrics messages (Ditto JSON, as edge devices carry them
//! over Hono/MQTT): data messages, metrics requests and their responses, and the request an
//! operator sends over HTTP. Serializers stay with the types in [`crate::container`].

use serde_json::{Map, Value};

use crate::container::{
    DATA_PATH, MetricsData, MetricsFilter, MetricsRequest, MetricsResponse, OriginatorSnapshot, RequestCommand,
    thing_from_topic,
};
use crate::device::DeviceId;
use crate::ingest::json_reader::{ObjectReader, parse_object};
use crate::validation::{ErrorKind, ErrorSink, FieldError, LocSegment, ValidationErrors};

/// A reporting interval: a number of seconds or a duration string (`2s`, `500ms`, `1m`).
/// Zero stops reporting.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_frequency(value: &Value) -> Result<u64, String> {
    let bad = || format!("frequency must be seconds or a duration such as 2s, 500ms or 1m, got {value}");
    match value {
        Value::Number(n) => {
            n.as_f64().filter(|s| *s >= 0.0 && s.is_finite()).map(|s| (s * 1000.0).round() as u64).ok_or_else(bad)
        }
        Value::String(s) => {
            let s = s.trim();
            let (number, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1_000.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60_000.0)
            } else if let Some(n) = s.strip_suffix('h') {
                (n, 3_600_000.0)
            } else {
                (s, 1_000.0)
            };
            number
                .parse::<f64>()
                .ok()
                .filter(|n| *n >= 0.0 && n.is_finite())
                .map(|n| (n * unit_ms).round() as u64)
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// Parses a data message. `thing_id` overrides the topic's (an MQTT bridge knows it from
/// the MQTT topic). A missing timestamp is `now_ms`.
///
/// # Errors
/// Every missing or invalid field, e.g. `["value", "snapshot", 1, "measurements", 0, "value"]`.
pub fn parse_data_message(bytes: &[u8], thing_id: Option<&str>, now_ms: i64) -> Result<MetricsData, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let topic_thing = root.optional_str(&mut sink, "topic").and_then(thing_from_topic);
    let thing_id = thing_id.map(str::to_owned).or(topic_thing);
    // Only data messages carry measurements; a request or response here is a mistake.
    if let Some(path) = root.optional_str(&mut sink, "path")
        && path != DATA_PATH
    {
        sink.at(&[], "path", ErrorKind::BadFormat, format!("a data message's path is {DATA_PATH}, got {path}"));
    }
    if thing_id.is_none() {
        sink.at(&[], "topic", ErrorKind::Missing, "a topic naming the thing is required");
    }
    let value_loc = [LocSegment::from("value")];
    let mut timestamp_ms = now_ms;
    let mut snapshot = Vec::new();
    match root.optional_object(&mut sink, "value") {
        None => sink.at(&[], "value", ErrorKind::Missing, "field required"),
        Some(value) => {
            let reader = ObjectReader::new(value, &value_loc);
            if let Some(ts) = reader.optional_int(&mut sink, "timestamp") {
                timestamp_ms = ts;
            }
            snapshot = parse_snapshot(value, &mut sink);
        }
    }
    sink.finish()?;
    Ok(MetricsData { thing_id: thing_id.unwrap_or_default(), timestamp_ms, snapshot })
}

fn parse_snapshot(value: &Map<String, Value>, sink: &mut ErrorSink) -> Vec<OriginatorSnapshot> {
    let loc = [LocSegment::from("value"), LocSegment::from("snapshot")];
    let items = match value.get("snapshot") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            sink.at(&loc[..1], "snapshot", ErrorKind::Missing, "field required");
            return Vec::new();
        }
        Some(_) => {
            sink.at(&loc[..1], "snapshot", ErrorKind::NotObject, "value is not a valid list");
            return Vec::new();
        }
    };
    let mut snapshot = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_loc: Vec<LocSegment> = loc.iter().cloned().chain([LocSegment::Index(i)]).collect();
        let Value::Object(map) = item else {
            sink.push(FieldError::new(item_loc, ErrorKind::NotObject, "value is not a valid dict"));
            continue;
        };
        let originator =
            ObjectReader::new(map, &item_loc).required_str(sink, "originator").unwrap_or_default().to_owned();
        let mut measurements = Vec::new();
        match map.get("measurements") {
            Some(Value::Array(list)) => {
                for (j, m) in list.iter().enumerate() {
                    let m_loc: Vec<LocSegment> = item_loc
                        .iter()
                        .cloned()
                        .chain([LocSegment::from("measurements"), LocSegment::Index(j)])
                        .collect();
                    let id = m.get("id").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 256);
                    let value = m.get("value").and_then(Value::as_f64).filter(|v| v.is_finite());
                    match (id, value) {
                        (Some(id), Some(value)) => measurements.push((id.to_owned(), value)),
                        (None, _) => sink.at(
                            &m_loc,
                            "id",
                            ErrorKind::Missing,
                            "a measurement needs an id of 1 to 256 characters",
                        ),
                        (_, None) => {
                            sink.at(&m_loc, "value", ErrorKind::NotFloat, "a measurement needs a finite numeric value")
                        }
                    }
                }
            }
            _ => sink.at(&item_loc, "measurements", ErrorKind::Missing, "a list of measurements is required"),
        }
        snapshot.push(OriginatorSnapshot { originator, measurements });
    }
    snapshot
}

/// Parses a metrics request message.
///
/// # Errors
/// Every missing or invalid field.
pub fn parse_request_message(bytes: &[u8]) -> Result<MetricsRequest, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let topic = root.required_str(&mut sink, "topic").unwrap_or_default();
    let thing_id = thing_from_topic(topic);
    if thing_id.is_none() && !topic.is_empty() {
        sink.at(&[], "topic", ErrorKind::BadFormat, "topic must be <namespace>/<name>/things/live/messages/request");
    }
    let headers_loc = [LocSegment::from("headers")];
    let correlation_id = root
        .optional_object(&mut sink, "headers")
        .and_then(|h| ObjectReader::new(h, &headers_loc).optional_str(&mut sink, "correlation-id"))
        .unwrap_or_default()
        .to_owned();
    let value_loc = [LocSegment::from("value")];
    let mut frequency_ms = 0;
    let mut filters = Vec::new();
    match root.optional_object(&mut sink, "value") {
        None => sink.at(&[], "value", ErrorKind::Missing, "field required"),
        Some(value) => {
            match value.get("frequency") {
                None | Some(Value::Null) => sink.at(&value_loc, "frequency", ErrorKind::Missing, "field required"),
                Some(raw) => match parse_frequency(raw) {
                    Ok(ms) => frequency_ms = ms,
                    Err(msg) => sink.at(&value_loc, "frequency", ErrorKind::BadFormat, msg),
                },
            }
            if let Some(raw) = value.get("filter").filter(|v| !v.is_null()) {
                filters = parse_filters(raw, &[LocSegment::from("value"), LocSegment::from("filter")], &mut sink);
            }
        }
    }
    sink.finish()?;
    Ok(MetricsRequest { thing_id: thing_id.unwrap_or_default(), correlation_id, frequency_ms, filters })
}

fn parse_filters(raw: &Value, loc: &[LocSegment], sink: &mut ErrorSink) -> Vec<MetricsFilter> {
    let Value::Array(items) = raw else {
        sink.push(FieldError::new(loc.to_vec(), ErrorKind::NotObject, "value is not a valid list"));
        return Vec::new();
    };
    let mut filters = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_loc: Vec<LocSegment> = loc.iter().cloned().chain([LocSegment::Index(i)]).collect();
        let Value::Object(map) = item else {
            sink.push(FieldError::new(item_loc, ErrorKind::NotObject, "value is not a valid dict"));
            continue;
        };
        let reader = ObjectReader::new(map, &item_loc);
        let originator = reader.optional_str(sink, "originator").unwrap_or_default().to_owned();
        let ids = match map.get("id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(Value::String(id)) => vec![id.clone()],
            Some(_) => {
                sink.at(&item_loc, "id", ErrorKind::NotString, "id is a list of measurement ids");
                Vec::new()
            }
        };
        filters.push(MetricsFilter { ids, originator });
    }
    filters
}

/// Parses a response message (`status` at the top level, as the container metrics documentation shows, or inside a
/// `value` with `error` and `message` for failures).
///
/// # Errors
/// When no status can be found.
pub fn parse_response_message(bytes: &[u8]) -> Result<MetricsResponse, ValidationErrors> {
    let map = parse_object(bytes)?;
    let status = map
        .get("status")
        .or_else(|| map.get("value").and_then(|v| v.get("status")))
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok());
    let correlation_id =
        map.get("headers").and_then(|h| h.get("correlation-id")).and_then(Value::as_str).unwrap_or_default().to_owned();
    match status {
        Some(status) => Ok(MetricsResponse { correlation_id, status }),
        None => Err(ValidationErrors::single(FieldError::new(
            vec![LocSegment::from("status")],
            ErrorKind::Missing,
            "field required",
        ))),
    }
}

/// The answer a response message carries: the payload's `status` and `correlation-id`
/// first (as the documentation shows them, on `command//<thing>/res//request`), else what
/// the topic says (`command//<thing>/res/<requestId>/<status>`). `None` when neither
/// gives a status.
pub fn response_from_message(payload: &[u8], topic_request_id: &str, topic_status: &str) -> Option<MetricsResponse> {
    let parsed = parse_response_message(payload).ok();
    let status = parsed.as_ref().map(|r| r.status).or_else(|| topic_status.parse().ok())?;
    let correlation_id =
        parsed.map(|r| r.correlation_id).filter(|id| !id.is_empty()).unwrap_or_else(|| topic_request_id.to_owned());
    Some(MetricsResponse { correlation_id, status })
}

/// Parses `{device_id, frequency, filter}`.
///
/// # Errors
/// Every missing or invalid field.
pub fn parse_request_command(bytes: &[u8]) -> Result<RequestCommand, ValidationErrors> {
    let map = parse_object(bytes)?;
    let root = ObjectReader::new(&map, &[]);
    let mut sink = ErrorSink::default();
    let device_id = root.required_str(&mut sink, "device_id").and_then(|raw| match DeviceId::parse(raw) {
        Ok(id) => Some(id),
        Err(errors) => {
            for e in errors.errors() {
                sink.at(&[], "device_id", e.kind, e.msg.clone());
            }
            None
        }
    });
    let frequency_ms = match map.get("frequency") {
        None | Some(Value::Null) => {
            sink.at(&[], "frequency", ErrorKind::Missing, "field required");
            0
        }
        Some(raw) => parse_frequency(raw).unwrap_or_else(|msg| {
            sink.at(&[], "frequency", ErrorKind::BadFormat, msg);
            0
        }),
    };
    // The filter sits at the top level here, not inside a Ditto `value`.
    let filters = match map.get("filter").filter(|v| !v.is_null()) {
        Some(raw) => parse_filters(raw, &[LocSegment::from("filter")], &mut sink),
        None => Vec::new(),
    };
    sink.finish()?;
    match device_id {
        Some(device_id) => Ok(RequestCommand { device_id, frequency_ms, filters }),
        None => Err(ValidationErrors::single(FieldError::new(
            vec![LocSegment::from("device_id")],
            ErrorKind::Missing,
            "field required",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::*;
    use crate::metric::FieldValue;
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) const DOCUMENTED_DATA: &str = r#"{
        "topic":"edge/device:edge:containers/things/live/messages/data",
        "headers":{"content-type":"application/json"},
        "path":"/features/Metrics/outbox/messages/data",
        "value":{"snapshot":[
            {"originator":"Container:test","measurements":[{"id":"memory.total","value":10371616768},{"id":"memory.used","value":1396736},
             {"id":"memory.utilization","value":0.01346690714903206},{"id":"net.readBytes","value":180},{"id":"net.writeBytes","value":0},{"id":"pids","value":6}]},
            {"originator":"Container:test2","measurements":[{"id":"cpu.utilization","value":8.751566666666667},{"id":"memory.total","value":10371616768},
             {"id":"io.writeBytes","value":4096},{"id":"pids","value":14}]}
        ],"timestamp":1234567890}
    }"#;

    #[test]
    fn documented_data_message_becomes_points() {
        let data = parse_data_message(DOCUMENTED_DATA.as_bytes(), None, 0).unwrap();
        assert_eq!(data.thing_id, "edge:device:edge:containers");
        assert_eq!(data.snapshot.len(), 2);
        let points = data.points();
        assert_eq!(
            points[1].tags(),
            [("device_id".into(), "edge:device".into()), ("originator".into(), "Container:test2".into())]
        );
        assert_eq!(points[1].fields()[0], ("cpu.utilization".into(), FieldValue::Float(8.751566666666667)));
        assert_eq!(points[0].timestamp_ns(), 1_234_567_890_000_000);
        let back = parse_data_message(data.to_message().to_string().as_bytes(), None, 0).unwrap();
        assert_eq!(back, data, "serializer and parser agree");
    }

    #[test]
    fn documented_request_round_trips() {
        let raw = r#"{"topic":"edge/device:edge:containers/things/live/messages/request",
            "headers":{"response-required":true,"content-type":"application/json","correlation-id":"abc"},
            "path":"/features/Metrics/inbox/messages/request","value":{"filter":[{"id":null,"originator":"SYSTEM"}],"frequency":"2s"}}"#;
        let request = parse_request_message(raw.as_bytes()).unwrap();
        assert_eq!(request.thing_id, "edge:device:edge:containers");
        assert_eq!((request.frequency_ms, request.correlation_id.as_str()), (2_000, "abc"));
        assert_eq!(request.filters, [MetricsFilter { ids: vec![], originator: "SYSTEM".into() }]);
        assert_eq!(parse_request_message(request.to_message().to_string().as_bytes()).unwrap(), request);
        let response = parse_response_message(br#"{"headers":{"correlation-id":"abc"},"status":204}"#).unwrap();
        assert_eq!(response, MetricsResponse { correlation_id: "abc".into(), status: 204 });
    }

    #[test]
    fn frequencies_and_filters() {
        for (raw, ms) in
            [(json!("2s"), 2_000), (json!("500ms"), 500), (json!("1m"), 60_000), (json!(3), 3_000), (json!("0s"), 0)]
        {
            assert_eq!(parse_frequency(&raw), Ok(ms), "{raw}");
        }
        assert!(parse_frequency(&json!("soon")).is_err());
        assert!(parse_frequency(&json!(-1)).is_err());
        let cpu = MetricsFilter { ids: vec!["cpu.*".into(), "pids".into()], originator: String::new() };
        assert!(cpu.matches("Container:a", "cpu.utilization") && cpu.matches("SYSTEM", "pids"));
        assert!(!cpu.matches("SYSTEM", "memory.used"));
        assert!(MetricsFilter::default().matches("x", "anything"));
        assert!(!MetricsFilter { ids: vec![], originator: "SYSTEM".into() }.matches("Container:a", "pids"));
    }

    #[test]
    fn malformed_data_is_located() {
        let bad = br#"{"topic":"edge/device:edge:containers/things/live/messages/data","value":{"snapshot":[{"originator":"a","measurements":[{"id":"x","value":"high"}]},{"measurements":[]}]}}"#;
        let err = parse_data_message(bad, None, 0).unwrap_err();
        let locs: Vec<String> =
            err.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect();
        assert_eq!(locs, ["value.snapshot.0.measurements.0.value", "value.snapshot.1.originator"]);
    }

    #[test]
    fn only_data_messages_are_data() {
        let mut request: Value = serde_json::from_str(DOCUMENTED_DATA).unwrap();
        request["path"] = json!(REQUEST_PATH);
        let err = parse_data_message(request.to_string().as_bytes(), None, 0).unwrap_err();
        assert_eq!(err.errors()[0].loc, [LocSegment::from("path")]);
        let mut pathless: Value = serde_json::from_str(DOCUMENTED_DATA).unwrap();
        pathless.as_object_mut().unwrap().remove("path");
        assert!(parse_data_message(pathless.to_string().as_bytes(), None, 0).is_ok(), "the topic says it is data");
    }

    #[test]
    fn topics_are_told_apart() {
        use ContainerTopic::{Data, Other, Response};
        for (topic, expected) in [
            ("e/tenant/edge:device:edge:containers", Data { thing: "edge:device:edge:containers" }),
            ("command//edge:device:edge:containers/res//data", Data { thing: "edge:device:edge:containers" }),
            ("command//t/res/abc/data", Data { thing: "t" }),
            ("command//t/res/abc/204", Response { thing: "t", request_id: "abc", last: "204" }),
            ("command//t/res//request", Response { thing: "t", request_id: "", last: "request" }),
            ("command//t/req/abc/request", Other),
            ("e/tenant", Other),
            ("command///res//data", Other),
        ] {
            assert_eq!(classify_topic(topic), expected, "{topic}");
        }
    }

    #[test]
    fn responses_read_the_payload_first() {
        let documented = br#"{"topic":"edge/device:edge:containers/things/live/messages/request",
            "headers":{"content-type":"application/json","correlation-id":"abc"},
            "path":"/features/Metrics/outbox/messages/request","status":204}"#;
        for (payload, request_id, last, expected) in [
            (&documented[..], "", "request", Some(("abc", 204))),
            (&documented[..], "xyz", "500", Some(("abc", 204))),
            (&b"{}"[..], "xyz", "204", Some(("xyz", 204))),
            (&br#"{"value":{"status":400,"error":"bad filter"}}"#[..], "xyz", "request", Some(("xyz", 400))),
            (&b"not json"[..], "xyz", "404", Some(("xyz", 404))),
            (&b"{}"[..], "", "request", None),
        ] {
            let got = response_from_message(payload, request_id, last);
            assert_eq!(
                got.map(|r| (r.correlation_id, r.status)),
                expected.map(|(id, status)| (id.to_owned(), status)),
                "{request_id} {last}"
            );
        }
    }

    #[test]
    fn request_commands() {
        let command = parse_request_command(
            br#"{"device_id":"edge:device","frequency":"2s","filter":[{"id":["cpu.*"],"originator":"SYSTEM"}]}"#,
        )
        .unwrap();
        assert_eq!((command.thing_id().as_str(), command.frequency_ms), ("edge:device:edge:containers", 2_000));
        assert_eq!(command.filters, [MetricsFilter { ids: vec!["cpu.*".into()], originator: "SYSTEM".into() }]);
        let err = parse_request_command(br#"{"device_id":"not valid","frequency":"soon","filter":[1]}"#).unwrap_err();
        let locs: Vec<String> =
            err.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect();
        assert_eq!(locs, ["device_id", "frequency", "filter.0"]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_data_message(&bytes, None, 0);
            let _ = parse_request_message(&bytes);
            let _ = parse_response_message(&bytes);
            let _ = response_from_message(&bytes, "id", "request");
            let _ = parse_request_command(&bytes);
        }

        #[test]
        fn arbitrary_topics_never_panic(topic in "[a-z/:]{0,40}") {
            let _ = classify_topic(&topic);
        }

        #[test]
        fn frequencies_round_trip(ms in 0u64..10_000_000) {
            prop_assert_eq!(parse_frequency(&Value::String(format_frequency(ms))), Ok(ms));
        }
    }
}
