//! Writes one Prometheus remote write request body (snappy-compressed protobuf) for the remote
//! write benchmark: `SERIES` series of a node-exporter-like shape with `SAMPLES` samples each,
//! 15 s apart, the newest at the current time, so a time-series database with a retention
//! window (VictoriaMetrics's is a month) keeps every sample.
//!
//!     cargo run --release -p homepot-examples --example remote_write_body -- FILE [SERIES] [SAMPLES]

use homepot_core::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "remote-write.bin".to_owned());
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let samples: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let label = |name: &str, value: String| Label { name: name.to_owned(), value };
    let timeseries = (0..series)
        .map(|i| TimeSeries {
            labels: vec![
                label("__name__", format!("node_metric_{}", i % 50)),
                label("cpu", format!("{}", i % 4)),
                label("instance", format!("edge-{:04}:9100", i / 50)),
                label("job", "node".to_owned()),
            ],
            samples: (0..samples)
                .map(|s| Sample {
                    value: ((i as i64 * 31 + s * 7) % 1_000) as f64 / 10.0,
                    timestamp: now_ms - (samples - 1 - s) * 15_000,
                })
                .collect(),
        })
        .collect();
    let body = encode(&WriteRequest { timeseries, metadata: vec![] });
    std::fs::write(&path, &body)?;
    println!("{path}: {series} series x {samples} samples = {} samples, {} bytes", series as i64 * samples, body.len());
    Ok(())
}
