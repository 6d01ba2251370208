//! Writes Prometheus remote write request bodies (snappy-compressed protobuf) for the remote
//! write and query benchmarks: `SERIES` series of a node-exporter-like shape with `SAMPLES`
//! samples each, `STEP` seconds apart (default 15), the newest at the current time, so a
//! time-series database with a retention window (VictoriaMetrics's is a month) keeps every
//! sample. With `CHUNKS` above 1 the samples are split by time into `FILE.0`, `FILE.1`...,
//! oldest first, each a request of its own.
//!
//!     cargo run --release -p homepot-examples --example remote_write_body -- FILE [SERIES] [SAMPLES] [STEP] [CHUNKS]

use homepot_core::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "remote-write.bin".to_owned());
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let samples: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let step_ms: i64 = args.next().and_then(|a| a.parse::<i64>().ok()).unwrap_or(15) * 1_000;
    let chunks: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let label = |name: &str, value: String| Label { name: name.to_owned(), value };
    let per_chunk = (samples + chunks - 1) / chunks;
    for chunk in 0..chunks {
        let range = (chunk * per_chunk)..((chunk + 1) * per_chunk).min(samples);
        let timeseries = (0..series)
            .map(|i| TimeSeries {
                labels: vec![
                    label("__name__", format!("node_metric_{}", i % 50)),
                    label("cpu", format!("{}", i % 4)),
                    label("instance", format!("edge-{:04}:9100", i / 50)),
                    label("job", "node".to_owned()),
                ],
                samples: range
                    .clone()
                    .map(|s| Sample {
                        value: ((i as i64 * 31 + s * 7) % 1_000) as f64 / 10.0,
                        timestamp: now_ms - (samples - 1 - s) * step_ms,
                    })
                    .collect(),
            })
            .collect();
        let body = encode(&WriteRequest { timeseries, metadata: vec![] });
        let file = if chunks == 1 { path.clone() } else { format!("{path}.{chunk}") };
        std::fs::write(&file, &body)?;
        println!("{file}: {series} series x {} samples, {} bytes", range.end - range.start, body.len());
    }
    Ok(())
}
