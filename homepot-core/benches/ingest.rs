//! Parser throughput on fixed inputs. Line protocol is measured against the
//! `influxdb-line-protocol` crate (InfluxDB IOx's parser) on the same bytes in the same run.
//!
//! `cargo bench -p homepot-core --bench ingest`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use homepot_core::ingest::health_json::parse_health_check;
use homepot_core::ingest::line_protocol::{Precision, parse_lines};
use homepot_core::ingest::otlp;

/// 5,000 lines of 5 fields, tags from a fleet of 100 hosts, with timestamps: the shape of a
/// Telegraf or device gateway batch. Deterministic, so runs compare.
fn line_protocol_batch() -> String {
    let mut batch = String::new();
    for i in 0..5_000u64 {
        let host = i % 100;
        batch.push_str(&format!(
            "cpu,host=edge-{host:03},region=eu-west,cpu=cpu{} usage_user={}.{},usage_system={}.5,usage_idle={}.25,\
             context_switches={}i,online=true {}\n",
            i % 4,
            (i * 7) % 100,
            i % 10,
            (i * 3) % 50,
            (i * 11) % 100,
            i * 13,
            1_704_067_200_000_000_000u64 + i * 1_000_000_000
        ));
    }
    batch
}

fn health_document() -> &'static str {
    r#"{"is_healthy": true, "response_time_ms": 150, "status_code": 200, "endpoint": "/health",
        "response_data": {"status": "healthy", "version": "1.2.3"}, "error_message": null,
        "system": {"cpu_percent": 65.5, "memory_percent": 80.0, "memory_used_mb": 1024, "memory_total_mb": 2048,
                   "disk_percent": 60.0, "disk_used_gb": 120, "disk_total_gb": 200, "uptime_seconds": 86400},
        "app_metrics": {"app_version": "1.2.3", "transactions_count": 150, "errors_count": 2, "warnings_count": 5,
                        "avg_response_time_ms": 350},
        "network": {"latency_ms": 45, "rx_bytes": 1024000, "tx_bytes": 512000}}"#
}

/// An OTLP export of 1,000 gauge data points with two attributes each, protobuf-encoded.
fn otlp_export() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use prost::Message;
    let attr = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }),
        ..Default::default()
    };
    let points = (0..1_000u64)
        .map(|i| NumberDataPoint {
            attributes: vec![attr("host", format!("edge-{:03}", i % 100)), attr("cpu", format!("cpu{}", i % 4))],
            time_unix_nano: 1_704_067_200_000_000_000 + i,
            value: Some(number_data_point::Value::AsDouble(i as f64 * 0.5)),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "cpu_usage".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points: points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

fn line_protocol(c: &mut Criterion) {
    let batch = line_protocol_batch();
    let mut group = c.benchmark_group("line_protocol_5000_lines");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("homepot", |b| {
        b.iter(|| {
            let outcome = parse_lines(black_box(&batch), Precision::Nanoseconds, 0);
            assert_eq!(outcome.points.len(), 5_000);
            outcome
        })
    });
    group.bench_function("influxdb_line_protocol_crate", |b| {
        b.iter(|| {
            let lines: Vec<_> =
                influxdb_line_protocol::parse_lines(black_box(&batch)).collect::<Result<_, _>>().unwrap();
            assert_eq!(lines.len(), 5_000);
            lines
        })
    });
    group.finish();
}

fn health_json(c: &mut Criterion) {
    let doc = health_document();
    let mut group = c.benchmark_group("health_json");
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.bench_function("parse_health_check", |b| b.iter(|| parse_health_check(black_box(doc.as_bytes())).unwrap()));
    group.finish();
}

fn otlp_protobuf(c: &mut Criterion) {
    let bytes = otlp_export();
    let mut group = c.benchmark_group("otlp_protobuf_1000_points");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode_and_map", |b| {
        b.iter(|| {
            let request = otlp::decode_protobuf(black_box(&bytes)).unwrap();
            otlp::to_points(&request, 0)
        })
    });
    group.finish();
}

criterion_group!(benches, line_protocol, health_json, otlp_protobuf);
criterion_main!(benches);
