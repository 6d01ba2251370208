//! OTLP/HTTP metrics (`POST /api/v1/metrics/otlp`), protobuf or JSON, decoded with the
//! OpenTelemetry protos and prost. Each data point becomes a [`Point`] named after its metric,
//! tagged with the resource's and the data point's attributes (the data point's win):
//!
//! - gauge: field `value`, type gauge; sum: field `value`, type counter when monotonic;
//! - histogram and exponential histogram: fields `count`, `sum`, `min`, `max` (as reported),
//!   type histogram (bucket counts are not kept);
//! - summary: fields `count`, `sum` and `quantile_<q>` for each quantile, type summary.
//!
//! A data point that cannot become a valid point is rejected and counted; the others are kept,
//! as OTLP's partial success allows.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;

use crate::metric::{FieldValue, MetricType, Point};
use crate::validation::{ErrorKind, FieldError, ValidationErrors};

/// Most rejection reasons described in one outcome.
pub const MAX_OTLP_ERRORS: usize = 20;

/// What a request yielded.
#[derive(Debug, Default)]
pub struct OtlpOutcome {
    /// Valid points.
    pub points: Vec<Point>,
    /// Data points rejected.
    pub rejected: usize,
    /// Why (the first [`MAX_OTLP_ERRORS`]).
    pub errors: Vec<String>,
}

fn undecodable(format: &str, error: impl std::fmt::Display) -> ValidationErrors {
    ValidationErrors::single(FieldError::new(
        Vec::new(),
        ErrorKind::Undecodable,
        format!("invalid OTLP {format}: {error}"),
    ))
}

/// Decodes an `ExportMetricsServiceRequest` in protobuf.
///
/// # Errors
/// When the bytes are not such a message.
pub fn decode_protobuf(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, ValidationErrors> {
    ExportMetricsServiceRequest::decode(bytes).map_err(|e| undecodable("protobuf", e))
}

/// Decodes an `ExportMetricsServiceRequest` in OTLP/JSON.
///
/// # Errors
/// When the bytes are not such a document.
pub fn decode_json(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, ValidationErrors> {
    serde_json::from_slice(bytes).map_err(|e| undecodable("JSON", e))
}

/// The protobuf answer to an export: empty on full success, a partial success otherwise.
pub fn encode_response(rejected: usize, error_message: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: error_message.to_owned(),
    });
    ExportMetricsServiceResponse { partial_success }.encode_to_vec()
}

/// An attribute's value as tag text; `None` for an empty value.
fn attribute_text(attribute: &KeyValue) -> Option<String> {
    let value = attribute.value.as_ref()?.value.as_ref()?;
    let text = match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        // Arrays and maps keep their OTLP/JSON text.
        other => {
            serde_json::to_string(&opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(other.clone()) })
                .unwrap_or_default()
        }
    };
    (!text.is_empty()).then_some(text)
}

fn merge_tags(base: &[(String, String)], attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut tags = base.to_vec();
    for attribute in attributes {
        let Some(text) = attribute_text(attribute) else { continue };
        match tags.iter_mut().find(|(k, _)| *k == attribute.key) {
            Some(slot) => slot.1 = text,
            None => tags.push((attribute.key.clone(), text)),
        }
    }
    tags
}

/// Converts a decoded request to points. Data points without a time get `now_ns`.
pub fn to_points(request: &ExportMetricsServiceRequest, now_ns: i64) -> OtlpOutcome {
    let mut outcome = OtlpOutcome::default();
    let reject = |outcome: &mut OtlpOutcome, message: String| {
        outcome.rejected += 1;
        if outcome.errors.len() < MAX_OTLP_ERRORS {
            outcome.errors.push(message);
        }
    };
    for resource_metrics in &request.resource_metrics {
        let resource_tags =
            merge_tags(&[], resource_metrics.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice()));
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                let mut emit = |attributes: &[KeyValue],
                                time: u64,
                                fields: Vec<(String, FieldValue)>,
                                kind: MetricType| {
                    let time_ns = match time {
                        0 => Ok(now_ns),
                        t => i64::try_from(t).map_err(|_| "time out of range".to_owned()),
                    };
                    let result = time_ns.and_then(|time_ns| {
                        Point::new(metric.name.clone(), merge_tags(&resource_tags, attributes), fields, time_ns, kind)
                            .map_err(|e| e.to_string())
                    });
                    match result {
                        Ok(point) => outcome.points.push(point),
                        Err(error) => reject(&mut outcome, format!("metric '{}': {error}", metric.name)),
                    }
                };
                match &metric.data {
                    Some(metric::Data::Gauge(gauge)) => {
                        for dp in &gauge.data_points {
                            emit(&dp.attributes, dp.time_unix_nano, number_fields(dp.value), MetricType::Gauge);
                        }
                    }
                    Some(metric::Data::Sum(sum)) => {
                        let kind = if sum.is_monotonic { MetricType::Counter } else { MetricType::Gauge };
                        for dp in &sum.data_points {
                            emit(&dp.attributes, dp.time_unix_nano, number_fields(dp.value), kind);
                        }
                    }
                    Some(metric::Data::Histogram(histogram)) => {
                        for dp in &histogram.data_points {
                            let fields = distribution_fields(dp.count, dp.sum, dp.min, dp.max);
                            emit(&dp.attributes, dp.time_unix_nano, fields, MetricType::Histogram);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(histogram)) => {
                        for dp in &histogram.data_points {
                            let fields = distribution_fields(dp.count, dp.sum, dp.min, dp.max);
                            emit(&dp.attributes, dp.time_unix_nano, fields, MetricType::Histogram);
                        }
                    }
                    Some(metric::Data::Summary(summary)) => {
                        for dp in &summary.data_points {
                            let mut fields = distribution_fields(dp.count, Some(dp.sum), None, None);
                            for q in &dp.quantile_values {
                                fields.push((format!("quantile_{}", q.quantile), FieldValue::Float(q.value)));
                            }
                            emit(&dp.attributes, dp.time_unix_nano, fields, MetricType::Summary);
                        }
                    }
                    None => reject(&mut outcome, format!("metric '{}' has no data", metric.name)),
                }
            }
        }
    }
    outcome
}

/// A number data point's value; an empty one yields no field, which [`Point::new`] rejects.
fn number_fields(value: Option<number_data_point::Value>) -> Vec<(String, FieldValue)> {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => vec![("value".to_owned(), FieldValue::Float(v))],
        Some(number_data_point::Value::AsInt(v)) => vec![("value".to_owned(), FieldValue::Integer(v))],
        None => Vec::new(),
    }
}

fn distribution_fields(count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) -> Vec<(String, FieldValue)> {
    let mut fields = vec![("count".to_owned(), FieldValue::UInteger(count))];
    for (name, value) in [("sum", sum), ("min", min), ("max", max)] {
        if let Some(v) = value {
            fields.push((name.to_owned(), FieldValue::Float(v)));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    const DOCUMENTED_JSON: &str = r#"{
        "resourceMetrics": [{
          "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my-service"}}]},
          "scopeMetrics": [{"metrics": [{"name": "custom_metric", "gauge": {"dataPoints": [{
              "asDouble": 42.5, "attributes": [{"key": "host", "value": {"stringValue": "server1"}}]}]}}]}]
        }]
    }"#;

    fn attr(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn documented_json_example() {
        let outcome = to_points(&decode_json(DOCUMENTED_JSON.as_bytes()).unwrap(), 99);
        assert_eq!(outcome.rejected, 0);
        let p = &outcome.points[0];
        assert_eq!((p.name(), p.timestamp_ns()), ("custom_metric", 99));
        assert_eq!(p.tags(), [("host".into(), "server1".into()), ("service.name".into(), "my-service".into())]);
        assert_eq!(p.fields(), [("value".into(), FieldValue::Float(42.5))]);
    }

    #[test]
    fn protobuf_gauges_sums_and_histograms() {
        let number = |value, time| NumberDataPoint {
            attributes: vec![attr("cpu", "0")],
            time_unix_nano: time,
            value: Some(value),
            ..Default::default()
        };
        let metric = |name: &str, data| Metric { name: name.into(), data: Some(data), ..Default::default() };
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", "svc"), attr("cpu", "all")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(
                            "temp",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![number(number_data_point::Value::AsDouble(21.5), 5)],
                            }),
                        ),
                        metric(
                            "requests",
                            metric::Data::Sum(Sum {
                                data_points: vec![number(number_data_point::Value::AsInt(7), 6)],
                                is_monotonic: true,
                                ..Default::default()
                            }),
                        ),
                        metric(
                            "latency",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    count: 3,
                                    sum: Some(1.5),
                                    time_unix_nano: 7,
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }),
                        ),
                        metric("empty", metric::Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] })),
                        Metric { name: "nodata".into(), ..Default::default() },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let outcome = to_points(&decode_protobuf(&request.encode_to_vec()).unwrap(), 0);
        let p = &outcome.points;
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0].tags(),
            [("cpu".into(), "0".into()), ("service.name".into(), "svc".into())],
            "data point attributes win"
        );
        assert_eq!((p[1].metric_type(), p[1].fields()[0].1.clone()), (MetricType::Counter, FieldValue::Integer(7)));
        assert_eq!(p[2].fields(), [("count".into(), FieldValue::UInteger(3)), ("sum".into(), FieldValue::Float(1.5))]);
        assert_eq!(p[2].timestamp_ns(), 7);
        assert_eq!(outcome.rejected, 2, "{:?}", outcome.errors);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = decode_protobuf(&bytes) {
                let _ = to_points(&request, 0);
            }
            if let Ok(request) = decode_json(&bytes) {
                let _ = to_points(&request, 0);
            }
        }
    }
}
