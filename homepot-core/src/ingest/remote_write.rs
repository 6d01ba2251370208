//! Prometheus remote write 1.0 (`POST /api/v1/write`): a snappy block-compressed protobuf
//! `WriteRequest`, from Prometheus, vmagent, Grafana Alloy, Telegraf or the OpenTelemetry
//! collector. Each sample becomes a [`Point`] named after the series' `__name__`, tagged with
//! its other labels, with one field `value`; the type comes from the request's metadata when
//! it names the series' family (a counter's `_total`, a histogram's `_bucket`, `_sum` and
//! `_count`), else gauge.
//!
//! The messages are the `prometheus` package's (`remote.proto`, `types.proto`), written here
//! with prost's derive; fields a 1.0 receiver does not use (exemplars, native histograms) are
//! left to prost's unknown-field skipping.
//!
//! Samples whose value is not finite are skipped and counted: Prometheus marks a series gone
//! stale with a NaN, and homepot keeps no staleness. A series that cannot become a valid point
//! (no `__name__`, a label homepot cannot store) has all its samples rejected and counted.

use std::collections::HashMap;

use prost::Message;

use crate::metric::{FieldValue, MetricType, Point};

/// Largest decompressed request accepted: a sender batches far less (Prometheus sends at most
/// 2,000 samples a request by default), and a small body claiming more is a decompression bomb.
pub const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;
/// Most rejection reasons described in one outcome.
pub const MAX_REMOTE_WRITE_ERRORS: usize = 20;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric family metadata, when the sender sends it.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, `__name__` among them, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct MetricMetadata {
    /// `MetricMetadata.MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge
    /// histogram, 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family's name (`http_requests_total`, `rpc_duration_seconds`).
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a body is not a remote write request. The sender must not retry it (answer 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteWriteError {
    /// Not snappy block format.
    #[error("body is not snappy block-compressed: {0}")]
    Snappy(String),
    /// Decompresses to more than [`MAX_DECODED_BYTES`].
    #[error("body decompresses to {0} bytes, more than the {MAX_DECODED_BYTES} accepted")]
    TooLarge(usize),
    /// Not a `WriteRequest`.
    #[error("body is not a remote write WriteRequest: {0}")]
    Protobuf(String),
}

/// What a request yielded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RemoteWriteOutcome {
    /// Valid points, one per sample.
    pub points: Vec<Point>,
    /// Samples with a NaN or infinite value (staleness markers among them), skipped.
    pub skipped: usize,
    /// Samples of series that cannot be stored.
    pub rejected: usize,
    /// Why (the first [`MAX_REMOTE_WRITE_ERRORS`]).
    pub errors: Vec<String>,
}

/// Decompresses and decodes a request body.
///
/// # Errors
/// When the body is not snappy block format, decompresses to more than
/// [`MAX_DECODED_BYTES`], or is not a `WriteRequest`.
pub fn decode(body: &[u8]) -> Result<WriteRequest, RemoteWriteError> {
    let length = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if length > MAX_DECODED_BYTES {
        return Err(RemoteWriteError::TooLarge(length));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| RemoteWriteError::Protobuf(e.to_string()))
}

/// Encodes a request as a sender does: protobuf, then snappy block format.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    // Compressing a Vec into a Vec cannot fail: snap errs only on oversized input (> 2^32 - 1),
    // which a WriteRequest in memory cannot reach before allocation fails.
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap_or_default()
}

/// The metric type of each family the metadata names.
fn family_types(metadata: &[MetricMetadata]) -> HashMap<&str, MetricType> {
    metadata
        .iter()
        .filter_map(|m| {
            let kind = match m.r#type {
                1 => MetricType::Counter,
                2 => MetricType::Gauge,
                3 | 4 => MetricType::Histogram,
                5 => MetricType::Summary,
                _ => return None,
            };
            Some((m.metric_family_name.as_str(), kind))
        })
        .collect()
}

/// The type of the series `name` from its family's metadata, gauge when none names it.
fn series_type(types: &HashMap<&str, MetricType>, name: &str) -> MetricType {
    if let Some(kind) = types.get(name) {
        return *kind;
    }
    for suffix in ["_bucket", "_sum", "_count", "_total"] {
        if let Some(kind) = name.strip_suffix(suffix).and_then(|family| types.get(family)) {
            return *kind;
        }
    }
    MetricType::Gauge
}

/// The request's samples as points.
pub fn to_points(request: &WriteRequest) -> RemoteWriteOutcome {
    let types = family_types(&request.metadata);
    let mut outcome = RemoteWriteOutcome {
        points: Vec::with_capacity(request.timeseries.iter().map(|s| s.samples.len()).sum()),
        ..RemoteWriteOutcome::default()
    };
    let reject = |outcome: &mut RemoteWriteOutcome, samples: usize, why: String| {
        outcome.rejected += samples;
        if outcome.errors.len() < MAX_REMOTE_WRITE_ERRORS {
            outcome.errors.push(why);
        }
    };
    for series in &request.timeseries {
        let Some(name) = series.labels.iter().find(|l| l.name == "__name__").map(|l| l.value.as_str()) else {
            reject(&mut outcome, series.samples.len(), "a series has no __name__ label".to_owned());
            continue;
        };
        let tags: Vec<(String, String)> = series
            .labels
            .iter()
            .filter(|l| l.name != "__name__" && !l.value.is_empty())
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let kind = series_type(&types, name);
        let finite = series.samples.iter().filter(|s| s.value.is_finite()).count();
        outcome.skipped += series.samples.len() - finite;
        let mut taken = 0;
        for sample in series.samples.iter().filter(|s| s.value.is_finite()) {
            taken += 1;
            let Some(time_ns) = sample.timestamp.checked_mul(1_000_000) else {
                reject(&mut outcome, 1, format!("{name}: timestamp {} ms is out of range", sample.timestamp));
                continue;
            };
            let fields = vec![("value".to_owned(), FieldValue::Float(sample.value))];
            match Point::new(name.to_owned(), tags.clone(), fields, time_ns, kind) {
                Ok(point) => outcome.points.push(point),
                Err(error) => {
                    // A point fails on its name or labels, which every sample of the series shares.
                    reject(&mut outcome, finite - taken + 1, format!("{name}: {error}"));
                    break;
                }
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
            samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        }
    }

    #[test]
    fn samples_become_points_with_their_labels_and_types() {
        let request = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "http_requests_total"), ("code", "200"), ("job", "api")],
                    &[(3.0, 1_000), (5.0, 2_000)],
                ),
                series(&[("__name__", "temperature"), ("room", "")], &[(21.5, 1_500)]),
                series(&[("__name__", "rpc_seconds_bucket"), ("le", "+Inf")], &[(7.0, 1_000)]),
            ],
            metadata: vec![
                MetricMetadata { r#type: 1, metric_family_name: "http_requests_total".into(), ..Default::default() },
                MetricMetadata { r#type: 3, metric_family_name: "rpc_seconds".into(), ..Default::default() },
            ],
        };
        let outcome = to_points(&decode(&encode(&request)).expect("decodes"));
        assert_eq!((outcome.skipped, outcome.rejected), (0, 0));
        type Summary<'a> = (&'a str, Vec<(String, String)>, i64, MetricType);
        let summary: Vec<Summary<'_>> =
            outcome.points.iter().map(|p| (p.name(), p.tags().to_vec(), p.timestamp_ns(), p.metric_type())).collect();
        let tags = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<Vec<_>>();
        assert_eq!(
            summary,
            [
                ("http_requests_total", tags(&[("code", "200"), ("job", "api")]), 1_000_000_000, MetricType::Counter),
                ("http_requests_total", tags(&[("code", "200"), ("job", "api")]), 2_000_000_000, MetricType::Counter),
                // An empty label value means the label is absent, as in Prometheus.
                ("temperature", vec![], 1_500_000_000, MetricType::Gauge),
                ("rpc_seconds_bucket", tags(&[("le", "+Inf")]), 1_000_000_000, MetricType::Histogram),
            ]
        );
        assert_eq!(outcome.points[1].fields(), [("value".to_owned(), FieldValue::Float(5.0))]);
    }

    #[test]
    fn stale_markers_are_skipped_and_bad_series_rejected() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let request = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "up")], &[(1.0, 1_000), (stale, 2_000)]),
                series(&[("job", "nameless")], &[(1.0, 1_000), (2.0, 2_000)]),
                series(&[("__name__", "bad\nname")], &[(1.0, 1_000), (f64::NAN, 2_000), (3.0, 3_000)]),
            ],
            metadata: vec![],
        };
        let outcome = to_points(&request);
        assert_eq!(outcome.points.len(), 1);
        assert_eq!((outcome.skipped, outcome.rejected), (2, 4), "{:?}", outcome.errors);
        assert_eq!(outcome.errors.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(matches!(decode(b"not snappy at all"), Err(RemoteWriteError::Snappy(_))));
        let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap();
        assert!(matches!(decode(&not_protobuf), Err(RemoteWriteError::Protobuf(_))));
        // A header claiming a gigabyte: refused before anything is allocated for it.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x04];
        assert!(matches!(decode(&bomb), Err(RemoteWriteError::TooLarge(_))));
        assert_eq!(to_points(&decode(&encode(&WriteRequest::default())).unwrap()), RemoteWriteOutcome::default());
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = decode(&body) {
                let _ = to_points(&request);
            }
        }

        #[test]
        fn requests_round_trip(
            values in proptest::collection::vec((-1e12f64..1e12, 0i64..4_000_000_000_000), 1..40),
            job in "[a-z]{1,8}",
        ) {
            let request = WriteRequest {
                timeseries: vec![series(&[("__name__", "load"), ("job", &job)], &values)],
                metadata: vec![],
            };
            let outcome = to_points(&decode(&encode(&request)).expect("round trip"));
            prop_assert_eq!(outcome.points.len(), values.len());
            for (point, (value, ms)) in outcome.points.iter().zip(&values) {
                prop_assert_eq!(&point.fields()[0].1, &FieldValue::Float(*value));
                prop_assert_eq!(point.timestamp_ns(), ms * 1_000_000);
            }
        }
    }
}
