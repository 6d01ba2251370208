//! What the latency benchmarks share: where their data lives, and percentiles.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

/// `HOMEPOT_BENCH_URL`, or a SQLite file `target/bench-data/{stem}-YYYYMMDD.db`: one per day,
/// since the data is written relative to the day it was built.
pub(crate) fn database(stem: &str) -> String {
    if let Ok(url) = std::env::var("HOMEPOT_BENCH_URL") {
        return url;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data directory");
    format!("sqlite://{}", dir.join(format!("{stem}-{}.db", Utc::now().format("%Y%m%d"))).display())
}

/// The `p` percentile of sorted latencies, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1_000.0
}

/// Prints the p50, p99 and largest of `times`, counted in `unit`.
#[allow(dead_code)] // Not every benchmark prints latencies this way.
pub(crate) fn report(what: &str, mut times: Vec<Duration>, unit: &str) {
    times.sort_unstable();
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} {unit})",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
        times.len()
    );
}

/// SQL for the integers `from..=to` as a one-column table `i`.
#[allow(dead_code)] // Not every benchmark builds its data in SQL.
pub(crate) fn numbers(postgres: bool, from: i64, to: i64) -> String {
    if postgres {
        format!("SELECT i FROM generate_series({from}, {to}) AS i")
    } else {
        format!("WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) SELECT i FROM n")
    }
}

/// SQL for `expr` as text zero-padded to four digits.
#[allow(dead_code)]
pub(crate) fn pad(postgres: bool, expr: &str) -> String {
    if postgres { format!("lpad(({expr})::text, 4, '0')") } else { format!("printf('%04d', {expr})") }
}
