//! One device's last 24 hours out of 10,000,000 stored health checks: 1,000 devices that each
//! report every 60 s for about 7 days, every row carrying a full health document. Prints the
//! latency percentiles of 2,000 queries over random devices, as the history endpoint makes
//! them (newest first, its default limit of 100, and the whole day of 1,440 checks).
//!
//! `cargo bench -p homepot-storage --bench health_history` (`HOMEPOT_BENCH_URL` to use another
//! database, e.g. PostgreSQL; it is filled the first time).
//!
//! The SQLite file is built once a day under `target/bench-data/` (about 6 GB, a few minutes)
//! and reused by later runs. A percentile, not a mean, so no criterion here.

mod common;

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::{DeviceId, KeyHash, NewDevice};
use homepot_storage::{DeviceStore, HealthStore};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database};

const DEVICES: i64 = 1_000;
const CHECKS: i64 = 10_000_000;
const QUERIES: usize = 2_000;

/// The document `bench/health.lua` sends, as the store keeps it.
const DOCUMENT: &str = r#"{"system":{"cpu_percent":41.5,"memory_percent":62.1,"memory_used_mb":1270,"memory_total_mb":2048,"disk_percent":58.2,"disk_used_gb":116,"disk_total_gb":200,"uptime_seconds":90210},"app_metrics":{"app_version":"1.2.3","transactions_count":212,"errors_count":1,"warnings_count":3,"avg_response_time_ms":325.0},"network":{"latency_ms":38.0,"rx_bytes":985600,"tx_bytes":456700}}"#;

fn device(i: i64) -> DeviceId {
    DeviceId::parse(&format!("history-{i:04}")).expect("a valid id")
}

/// Fills the store in time order (as a fleet would), one SQL statement per 100,000 rows so
/// that building the data takes minutes, not the hours the HTTP path would.
async fn populate(url: &str, store: &SeaOrmStore, now: DateTime<Utc>) {
    if store.device(&device(DEVICES - 1)).await.expect("read").is_some() {
        return;
    }
    eprintln!("building {CHECKS} health checks in {url} (once)");
    for i in 0..DEVICES {
        let key = KeyHash::of(&format!("history-key-{i}"));
        store.register_device(&NewDevice::with_id(device(i)), &key, now).await.expect("register");
    }
    let db = Database::connect(url).await.expect("connect");
    let postgres = url.starts_with("postgres");
    let first_minute = now.timestamp() / 60 - CHECKS / DEVICES;
    let started = Instant::now();
    for chunk in (0..CHECKS).step_by(100_000) {
        let end = (chunk + 100_000).min(CHECKS);
        // Row i: device i % DEVICES, at minute first_minute + i / DEVICES.
        let (series, time, json, device_id) = if postgres {
            (
                format!("SELECT i FROM generate_series({chunk}, {}) AS i", end - 1),
                format!("to_timestamp((({first_minute} + i / {DEVICES}) * 60 + i % 60)::double precision)"),
                format!("'{DOCUMENT}'::jsonb"),
                format!("'history-' || lpad((i % {DEVICES})::text, 4, '0')"),
            )
        } else {
            (
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT {chunk} UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n",
                    end - 1
                ),
                format!(
                    "strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', ({first_minute} + i / {DEVICES}) * 60 + i % 60, 'unixepoch')"
                ),
                format!("'{DOCUMENT}'"),
                format!("printf('history-%04d', i % {DEVICES})"),
            )
        };
        let sql = format!(
            "INSERT INTO health_checks (device_id, is_healthy, response_time_ms, status_code, endpoint, response_data, \
             cpu_percent, memory_percent, disk_percent, checked_at) \
             SELECT d.id, true, 100 + s.i % 200, 200, '/health', {json}, 41.5, 62.1, 58.2, {time} \
             FROM ({series}) AS s JOIN devices d ON d.device_id = {device_id}"
        );
        db.execute_unprepared(&sql).await.expect("insert checks");
        if chunk % 1_000_000 == 0 {
            eprintln!("  {chunk} rows, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let url = common::database(&format!("health-{CHECKS}"));
        let store = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open the store");
        let now = Utc::now();
        populate(&url, &store, now).await;
        let mut rng = SmallRng::seed_from_u64(11);
        for limit in [100, 1_440] {
            let mut times = Vec::with_capacity(QUERIES);
            let mut rows = 0;
            for _ in 0..QUERIES {
                let device = device(rng.random_range(0..DEVICES));
                let started = Instant::now();
                let found = store.health_since(&device, now - TimeDelta::hours(24), limit).await.expect("query");
                times.push(started.elapsed());
                rows += found.len();
            }
            times.sort_unstable();
            println!(
                "last 24 h, limit {limit}: {} rows a query; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                rows / QUERIES,
                common::percentile(&times, 0.50),
                common::percentile(&times, 0.99),
                common::percentile(&times, 1.0),
            );
        }
    });
}
