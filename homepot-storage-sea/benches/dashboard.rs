//! What the dashboard asks of the engine, at fleet scale (no HTTP, no browser):
//! - the fleet page's sparklines: 24 hours of CPU, memory and disk at 1-hour steps for a page
//!   of 100 devices, out of 10,000 devices that each have those series;
//! - a device page over 30 days: four fields, each as avg, min and max (twelve range
//!   queries), for a device with a month of 1-minute buckets, read at `max_points=300`
//!   (a 2 h 24 min step, answered from minute buckets) and at the dashboard's `step=7200`
//!   (answered from hour buckets).
//!
//! Prints latency percentiles. `cargo bench -p homepot-storage-sea --bench dashboard`
//! (`HOMEPOT_BENCH_URL` for another database). The SQLite file is built once a day under
//! `target/bench-data/` and reused; `bench/dashboard_timing.py` times the same file in
//! Chromium.

mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use homepot_core::DeviceId;
use homepot_core::rollup::Agg;
use homepot_engine::{Homepot, RangeQuery, SeriesSelector, Settings, SystemClock};
use homepot_storage::RollupStore;
use homepot_storage::retention::RetentionPolicy;
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database};

const DEVICES: i64 = 10_000;
/// Devices with a month of minute buckets: `fleet-0042`, `fleet-0043`, `fleet-0044`.
const DETAILED: [i64; 3] = [42, 43, 44];
const MINUTES: i64 = 30 * 1_440;
const FIELDS: [(&str, &str); 4] = [
    ("device_system", "cpu_percent"),
    ("device_system", "memory_percent"),
    ("device_system", "disk_percent"),
    ("device_health", "response_time_ms"),
];
const RUNS: usize = 50;

/// Fills the store with SQL, in minutes rather than the hours ingest would take.
async fn populate(url: &str, store: &SeaOrmStore, now_s: i64) {
    let marker = [("device_id".to_owned(), "fleet-0042".to_owned())];
    if !store.find_series(&["device_system"], "cpu_percent", &marker, 1).await.expect("read").is_empty() {
        return;
    }
    eprintln!("building {DEVICES} devices with their health series in {url} (once)");
    let db = Database::connect(url).await.expect("connect");
    let postgres = url.starts_with("postgres");
    let numbers = |from, to| common::numbers(postgres, from, to);
    let pad = |expr: &str| common::pad(postgres, expr);
    let run = |sql: String| {
        let db = &db;
        async move { db.execute_unprepared(&sql).await.expect("populate") }
    };
    let started = Instant::now();
    let now =
        if postgres { "now()".to_owned() } else { "strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 'now')".to_owned() };
    run(format!(
        "INSERT INTO devices (device_id, name, labels, created_at) SELECT 'fleet-' || {}, 'Till ' || n.i, '{{}}', {now} \
         FROM ({}) AS n",
        pad("n.i"),
        numbers(0, DEVICES - 1)
    ))
    .await;
    let truth = if postgres { "true" } else { "1" };
    run(format!(
        "INSERT INTO device_latest (device_id, checked_at, is_healthy, response_time_ms, cpu_percent, memory_percent, \
         disk_percent, state, state_since) SELECT id, {now}, {truth}, 100, (id * 7919) % 10000 / 100.0, 40.0, 50.0, \
         'online', {now} FROM devices WHERE device_id LIKE 'fleet-%'"
    ))
    .await;
    for (name, field) in FIELDS {
        run(format!(
            "INSERT INTO rollup_series (key_hash, name, field, tags) SELECT 'dash-{field}-' || {p}, '{name}', \
             '{field}', '{{\"device_id\":\"fleet-' || {p} || '\"}}' FROM ({}) AS n",
            numbers(0, DEVICES - 1),
            p = pad("n.i"),
        ))
        .await;
    }
    // Bucket values are whole numbers, so the exact sums are count × value.
    let insert = |width: i64, count: i64, start: String, value: String, from: String, filter: &str| {
        format!(
            "INSERT INTO rollup_buckets (series_id, tier, bucket_start, sample_count, value_sum, value_min, value_max, \
             value_last, last_ns) SELECT r.id, {width}, {start}, {count}, CAST({count} * ({value}) AS TEXT), \
             ({value}) - 5, ({value}) + 5, ({value}), ({start}) * 1000000000 \
             FROM rollup_series r CROSS JOIN ({from}) AS n WHERE r.key_hash LIKE 'dash-%' {filter}"
        )
    };
    let detailed: Vec<String> = DETAILED.iter().map(|d| format!("'{{\"device_id\":\"fleet-{d:04}\"}}'")).collect();
    let detailed = format!("AND r.tags IN ({})", detailed.join(", "));
    let hour = now_s / 3_600;
    // Every series: the last 24 hours, for the sparklines.
    run(insert(
        3_600,
        60,
        format!("({hour} - 23 + n.i) * 3600"),
        "(r.id * 7 + n.i * 3) % 90 + 5".into(),
        numbers(0, 23),
        "",
    ))
    .await;
    eprintln!("  24 hourly buckets of {} series: {:.0} s", DEVICES * 4, started.elapsed().as_secs_f64());
    // The detailed devices: the rest of the month in hours, every minute, every day.
    run(insert(
        3_600,
        60,
        format!("({hour} - 24 - n.i) * 3600"),
        "(r.id + n.i) % 90 + 5".into(),
        numbers(0, 30 * 24 - 25),
        &detailed,
    ))
    .await;
    let minute = now_s / 60;
    run(insert(
        60,
        1,
        format!("({minute} - n.i) * 60"),
        "(r.id + n.i) % 90 + 5".into(),
        numbers(0, MINUTES - 1),
        &detailed,
    ))
    .await;
    let day = now_s / 86_400;
    run(insert(86_400, 1_440, format!("({day} - n.i) * 86400"), "50".into(), numbers(0, 29), &detailed)).await;
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let url = common::database("dashboard");
        let store = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open the store");
        let now = Utc::now();
        populate(&url, &store, now.timestamp()).await;
        // Retention off: the benchmark's data is 30 days old at its oldest.
        let settings = Settings { retention: RetentionPolicy::KEEP_ALL, ..Settings::default() };
        let (homepot, engine) =
            Homepot::start(Arc::new(store.clone()), settings, Arc::new(SystemClock)).await.expect("engine");
        let query = |selector, days: i64, step_s, max_points, agg| RangeQuery {
            selector,
            from: now - TimeDelta::days(days),
            to: now,
            step_s,
            max_points,
            agg,
        };

        let mut rng = SmallRng::seed_from_u64(7);
        let mut times = Vec::with_capacity(RUNS);
        let mut series = 0;
        for _ in 0..RUNS {
            let first = rng.random_range(0..DEVICES - 100);
            let devices: Vec<DeviceId> =
                (first..first + 100).map(|d| DeviceId::parse(&format!("fleet-{d:04}")).expect("id")).collect();
            let started = Instant::now();
            for (_, field) in &FIELDS[..3] {
                let selector = SeriesSelector::Devices { devices: devices.clone(), field: (*field).to_owned() };
                let answer =
                    homepot.query_range(&query(selector, 1, Some(3_600), None, Agg::Avg)).await.expect("range");
                series += answer.series.len();
            }
            times.push(started.elapsed());
        }
        common::report(
            &format!("fleet sparklines, 3 queries of 100 devices × 24 h ({} series a page)", series / RUNS),
            times,
            "runs",
        );

        for (label, step_s, max_points) in
            [("max_points=300 (1m tier)", None, Some(300)), ("step=7200 (1h tier)", Some(7_200), None)]
        {
            let mut times = Vec::with_capacity(RUNS);
            let mut points = 0;
            for run in 0..RUNS {
                let device = DeviceId::parse(&format!("fleet-{:04}", DETAILED[run % 3])).expect("id");
                let started = Instant::now();
                for (_, field) in FIELDS {
                    for agg in [Agg::Avg, Agg::Min, Agg::Max] {
                        let selector =
                            SeriesSelector::Devices { devices: vec![device.clone()], field: field.to_owned() };
                        let answer =
                            homepot.query_range(&query(selector, 30, step_s, max_points, agg)).await.expect("range");
                        points += answer.series[0].points.len();
                    }
                }
                times.push(started.elapsed());
            }
            common::report(
                &format!("device page, 30 days, 12 queries at {label} ({} points a chart)", points / RUNS / 12),
                times,
                "runs",
            );
        }
        engine.shutdown().await;
    });
}
