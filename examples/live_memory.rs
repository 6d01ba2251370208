//! Memory of the live metrics store per series: fills a `LiveStore` with N series (100,000 by
//! default) shaped like a Telegraf `cpu` measurement (2 tags, 3 float fields) and prints the
//! growth of the process's resident set per series. RSS, not a count of requested bytes, so
//! the allocator's overhead is included: it is what an operator pays.
//!
//! `cargo run --release -p homepot-examples --example live_memory -- 100000`

use homepot_core::live::{LiveLimits, LiveStore};
use homepot_core::metric::{FieldValue, MetricType, Point};

/// The process's resident set in kB (Linux).
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn point(i: usize) -> Point {
    let tags = vec![("host".to_owned(), format!("server-{i:06}")), ("region".to_owned(), format!("region-{}", i % 8))];
    let fields = vec![
        ("usage_user".to_owned(), FieldValue::Float(12.5)),
        ("usage_system".to_owned(), FieldValue::Float(3.25)),
        ("usage_idle".to_owned(), FieldValue::Float(84.25)),
    ];
    Point::new("cpu".to_owned(), tags, fields, 1_700_000_000_000_000_000, MetricType::Gauge).expect("a valid point")
}

fn main() {
    let series: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let limits = LiveLimits { max_series: series, max_series_per_owner: series, ..LiveLimits::default() };
    let mut live = LiveStore::new(limits);
    // Warm the allocator with one chunk's worth of points, so the baseline includes the
    // reusable memory every chunk below takes and frees.
    drop((0..5_000).map(point).collect::<Vec<_>>());
    let before = rss_kb();
    for start in (0..series).step_by(5_000) {
        let chunk: Vec<Point> = (start..(start + 5_000).min(series)).map(point).collect();
        let update = live.insert(Some("bench"), &chunk, 0);
        assert_eq!(update.refused, 0);
    }
    let after = rss_kb();
    let bytes = (after.saturating_sub(before)) * 1024;
    println!(
        "{} series: RSS {before} kB -> {after} kB, {:.0} bytes per series",
        live.len(),
        bytes as f64 / live.len().max(1) as f64
    );
}
