//! JSON adapters for the metrics service: the simple format (`POST /api/v1/metrics/simple`) and the batch
//! format (`POST /api/v1/metrics`). A JSON body is validated whole: one bad metric makes the
//! request a 422 that lists every problem (with the metric's index), and nothing is kept.

use serde_json::{Map, Number, Value};

use crate::ingest::json_reader::{ObjectReader, parse_object};
use crate::metric::{FieldValue, MetricType, Point, PointError, auto_timestamp_ns, auto_timestamp_ns_int};
use crate::validation::{ErrorKind, ErrorSink, LocSegment, ValidationErrors};

/// Parses `{"name", "value", "tags"?, "timestamp"?}` into one point with a `value` field.
/// Points without a timestamp get `now_ns`.
///
/// # Errors
/// Every missing, mistyped or invalid field.
pub fn parse_simple_metric(bytes: &[u8], now_ns: i64) -> Result<Point, ValidationErrors> {
    let map = parse_object(bytes)?;
    let mut sink = ErrorSink::default();
    let point = read_metric(&map, &[], &mut sink, now_ns, Shape::Simple);
    sink.finish()?;
    point.ok_or_else(unreachable_without_errors)
}

/// Parses `{"metrics": [{"name", "fields", "tags"?, "timestamp"?, "metric_type"?}, ...]}`.
///
/// # Errors
/// Every problem in every metric, located as `["metrics", index, field]`.
pub fn parse_metric_batch(bytes: &[u8], now_ns: i64) -> Result<Vec<Point>, ValidationErrors> {
    let map = parse_object(bytes)?;
    let mut sink = ErrorSink::default();
    let metrics_loc = [LocSegment::from("metrics")];
    let mut points = Vec::new();
    match map.get("metrics") {
        None | Some(Value::Null) => sink.at(&[], "metrics", ErrorKind::Missing, "field required"),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let loc = [metrics_loc[0].clone(), LocSegment::Index(i)];
                match item {
                    Value::Object(metric) => {
                        if let Some(point) = read_metric(metric, &loc, &mut sink, now_ns, Shape::Batch) {
                            points.push(point);
                        }
                    }
                    _ => sink.push(crate::FieldError::new(
                        loc.to_vec(),
                        ErrorKind::NotObject,
                        "value is not a valid dict",
                    )),
                }
            }
        }
        Some(_) => sink.at(&[], "metrics", ErrorKind::NotObject, "value is not a valid list"),
    }
    sink.finish()?;
    Ok(points)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Simple,
    Batch,
}

/// Only reached if an adapter forgot to record why it produced no point.
fn unreachable_without_errors() -> ValidationErrors {
    ValidationErrors::single(crate::FieldError::new(Vec::new(), ErrorKind::Inconsistent, "invalid metric"))
}

fn number_value(n: &Number) -> FieldValue {
    if let Some(i) = n.as_i64() {
        FieldValue::Integer(i)
    } else if let Some(u) = n.as_u64() {
        FieldValue::UInteger(u)
    } else {
        FieldValue::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn read_metric(
    map: &Map<String, Value>,
    loc: &[LocSegment],
    sink: &mut ErrorSink,
    now_ns: i64,
    shape: Shape,
) -> Option<Point> {
    let reader = ObjectReader::new(map, loc);
    let errors_before = sink.len();
    let name = reader.required_str(sink, "name");
    let mut fields = Vec::new();
    match shape {
        Shape::Simple => match map.get("value") {
            None | Some(Value::Null) => sink.at(loc, "value", ErrorKind::Missing, "field required"),
            Some(Value::Number(n)) => fields.push(("value".to_owned(), number_value(n))),
            Some(_) => sink.at(loc, "value", ErrorKind::NotFloat, "value is not a valid number"),
        },
        Shape::Batch => match map.get("fields") {
            None | Some(Value::Null) => sink.at(loc, "fields", ErrorKind::Missing, "field required"),
            Some(Value::Object(raw)) => {
                let fields_loc: Vec<LocSegment> = loc.iter().cloned().chain([LocSegment::from("fields")]).collect();
                for (key, value) in raw {
                    let value = match value {
                        Value::Number(n) => number_value(n),
                        Value::Bool(b) => FieldValue::Boolean(*b),
                        Value::String(s) => FieldValue::String(s.clone()),
                        _ => {
                            sink.at(
                                &fields_loc,
                                key,
                                ErrorKind::NotFloat,
                                "field values are numbers, booleans or strings",
                            );
                            continue;
                        }
                    };
                    fields.push((key.clone(), value));
                }
            }
            Some(_) => sink.at(loc, "fields", ErrorKind::NotObject, "value is not a valid dict"),
        },
    }
    let mut tags = Vec::new();
    if let Some(raw) = reader.optional_object(sink, "tags") {
        let tags_loc: Vec<LocSegment> = loc.iter().cloned().chain([LocSegment::from("tags")]).collect();
        for (key, value) in raw {
            match value {
                Value::String(s) => tags.push((key.clone(), s.clone())),
                // Numbers and booleans are common as label values; keep their text.
                Value::Number(n) => tags.push((key.clone(), n.to_string())),
                Value::Bool(b) => tags.push((key.clone(), b.to_string())),
                _ => sink.at(&tags_loc, key, ErrorKind::NotString, "str type expected"),
            }
        }
    }
    let timestamp = match map.get("timestamp") {
        None | Some(Value::Null) => Some(now_ns),
        Some(Value::Number(n)) => {
            let ns = n.as_i64().map_or_else(|| n.as_f64().and_then(auto_timestamp_ns), auto_timestamp_ns_int);
            if ns.is_none() {
                sink.at(loc, "timestamp", ErrorKind::TooLarge, "timestamp out of range");
            }
            ns
        }
        Some(_) => {
            sink.at(loc, "timestamp", ErrorKind::NotFloat, "value is not a valid number");
            None
        }
    };
    let metric_type = match reader.optional_str(sink, "metric_type") {
        None => MetricType::Gauge,
        Some(raw) => MetricType::parse(raw).unwrap_or_else(|| {
            sink.at(
                loc,
                "metric_type",
                ErrorKind::BadFormat,
                "metric_type must be gauge, counter, histogram or summary",
            );
            MetricType::Gauge
        }),
    };
    if sink.len() > errors_before {
        return None;
    }
    match Point::new(name?.to_owned(), tags, fields, timestamp?, metric_type) {
        Ok(point) => Some(point),
        Err(error) => {
            let field = match &error {
                PointError::BadName => "name",
                PointError::BadKey(_) | PointError::DuplicateKey(_) if shape == Shape::Simple => "tags",
                _ if shape == Shape::Simple => "value",
                _ => "fields",
            };
            sink.at(loc, field, ErrorKind::Inconsistent, error.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn locs(err: &ValidationErrors) -> Vec<String> {
        err.errors().iter().map(|e| e.loc.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")).collect()
    }

    #[test]
    fn simple_metrics_from_the_documentation() {
        let p = parse_simple_metric(br#"{"name": "my_metric", "value": 42.5}"#, 9).unwrap();
        assert_eq!((p.name(), p.timestamp_ns()), ("my_metric", 9));
        assert_eq!(p.fields()[0], ("value".into(), FieldValue::Float(42.5)));
        let p = parse_simple_metric(
            br#"{"name": "fps", "value": 29.97, "tags": {"source": "camera1", "pipeline": "detection"}}"#,
            0,
        )
        .unwrap();
        assert_eq!(p.tags(), [("pipeline".into(), "detection".into()), ("source".into(), "camera1".into())]);
        let p = parse_simple_metric(br#"{"name": "fps", "value": 29.97, "timestamp": 1776947971}"#, 0).unwrap();
        assert_eq!(p.timestamp_ns(), 1_776_947_971_000_000_000);
        let err = parse_simple_metric(br#"{"value": "x", "timestamp": "soon"}"#, 0).unwrap_err();
        assert_eq!(locs(&err), ["name", "value", "timestamp"]);
        let err = parse_simple_metric(br#"{"name": "", "value": 1}"#, 0).unwrap_err();
        assert_eq!(locs(&err), ["name"]);
    }

    #[test]
    fn batches_from_the_documentation() {
        let body = json!({"metrics": [
            {"name": "cpu", "fields": {"usage_user": 45.2, "usage_system": 12.1}, "tags": {"host": "server1"},
             "timestamp": 1_704_067_200_000_000_000_i64},
            {"name": "inference", "fields": {"latency_ms": 23.5, "throughput": 42}, "tags": {"model": "yolov8"}, "metric_type": "gauge"}
        ]});
        let points = parse_metric_batch(body.to_string().as_bytes(), 5).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].timestamp_ns(), 1_704_067_200_000_000_000);
        assert_eq!(points[1].fields()[1], ("throughput".into(), FieldValue::Integer(42)));
        assert_eq!(points[1].timestamp_ns(), 5);

        let bad = json!({"metrics": [{"name": "ok", "fields": {"v": 1}}, {"fields": {}, "metric_type": "meter"}, 3]});
        let err = parse_metric_batch(bad.to_string().as_bytes(), 0).unwrap_err();
        assert_eq!(locs(&err), ["metrics.1.name", "metrics.1.metric_type", "metrics.2"]);
        assert_eq!(locs(&parse_metric_batch(b"{}", 0).unwrap_err()), ["metrics"]);
        let empty_fields = json!({"metrics": [{"name": "x", "fields": {}}]});
        assert_eq!(
            locs(&parse_metric_batch(empty_fields.to_string().as_bytes(), 0).unwrap_err()),
            ["metrics.0.fields"]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_simple_metric(&bytes, 0);
            let _ = parse_metric_batch(&bytes, 0);
        }
    }
}
