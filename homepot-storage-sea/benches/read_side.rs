//! The read side at scale, as the engine answers it (no HTTP):
//! - a range query: 30 days of one series at 1-hour steps, from a store holding 10,000,000
//!   raw samples (231 series reporting every minute for 30 days) and their rollups (10M
//!   1-minute buckets, with their hour and day buckets);
//! - the fleet: 10,000 devices sorted by CPU, the first page and a page deep into the order.
//!
//! Prints latency percentiles over random series and pages. `cargo bench -p
//! homepot-storage-sea --bench read_side` (`HOMEPOT_BENCH_URL` for another database). The
//! SQLite file is built once a day under `target/bench-data/` and reused.

mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use homepot_core::rollup::Agg;
use homepot_engine::{Homepot, RangeQuery, SeriesSelector, Settings, SystemClock};
use homepot_storage::fleet::{FleetQuery, FleetSortKey};
use homepot_storage::retention::RetentionPolicy;
use homepot_storage::{DeviceStore, RollupStore};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database};

const SERIES: i64 = 231;
const MINUTES: i64 = 30 * 1_440;
const DEVICES: i64 = 10_000;
const QUERIES: usize = 1_000;

/// Fills the store with SQL, in minutes rather than the hours ingest would take.
async fn populate(url: &str, store: &SeaOrmStore, end_minute: i64) {
    if store.find_series(&["bench_cpu"], "value", &[], 1).await.expect("read").len() == 1 {
        return;
    }
    eprintln!("building rollups of {} samples and {DEVICES} devices in {url} (once)", SERIES * MINUTES);
    let db = Database::connect(url).await.expect("connect");
    let postgres = url.starts_with("postgres");
    let numbers = |from, to| common::numbers(postgres, from, to);
    let pad = |expr: &str| common::pad(postgres, expr);
    let started = Instant::now();
    db.execute_unprepared(&format!(
        "INSERT INTO rollup_series (key_hash, name, field, tags) SELECT 'bench-' || {h}, 'bench_cpu', 'value', \
         '{{\"host\":\"h' || {h} || '\"}}' FROM ({}) AS s",
        numbers(0, SERIES - 1),
        h = pad("s.i")
    ))
    .await
    .expect("series");
    let first_minute = end_minute - MINUTES;
    // The raw samples, in time order as ingest would write them: series s at minute m holds
    // (s + m) % 100.
    let json = |expr: &str| if postgres { format!("CAST({expr} AS jsonb)") } else { expr.to_owned() };
    for chunk in (0..SERIES * MINUTES).step_by(1_000_000) {
        let end = (chunk + 1_000_000).min(SERIES * MINUTES) - 1;
        let sql = format!(
            "INSERT INTO metric_points (name, tags, fields, metric_type, time_ns) \
             SELECT 'bench_cpu', {}, {}, 'gauge', ({first_minute} + n.i / {SERIES}) * 60000000000 + n.i % {SERIES} \
             FROM ({}) AS n",
            json(&format!("'{{\"host\":\"h' || {} || '\"}}'", pad(&format!("n.i % {SERIES}")))),
            json(&format!("'[[\"value\",{{\"f\":' || ((n.i % {SERIES} + n.i / {SERIES}) % 100) || '}}]]'")),
            numbers(chunk, end),
        );
        db.execute_unprepared(&sql).await.expect("raw points");
        eprintln!("  raw points: {} rows, {:.0} s", end + 1, started.elapsed().as_secs_f64());
    }
    // Sample of series s at minute m: (s + m) % 100, one per minute bucket.
    for (width, rows) in [(60_i64, MINUTES), (3_600, MINUTES / 60), (86_400, MINUTES / 1_440)] {
        let per_bucket = width / 60;
        for chunk in (0..SERIES * rows).step_by(1_000_000) {
            let end = (chunk + 1_000_000).min(SERIES * rows) - 1;
            let sql = format!(
                "INSERT INTO rollup_buckets (series_id, tier, bucket_start, sample_count, value_sum, value_min, \
                 value_max, value_last, last_ns) \
                 SELECT r.id, {width}, ({first_minute} + (n.i / {SERIES}) * {per_bucket}) * 60, {per_bucket}, \
                 CAST({per_bucket} * 50 AS TEXT), 0.0, 99.0, 42.0, ({first_minute} + (n.i / {SERIES}) * {per_bucket}) * 60000000000 \
                 FROM ({}) AS n JOIN rollup_series r ON r.key_hash = 'bench-' || {}",
                numbers(chunk, end),
                pad(&format!("n.i % {SERIES}"))
            );
            db.execute_unprepared(&sql).await.expect("buckets");
            eprintln!("  tier {width} s: {} rows, {:.0} s", end + 1, started.elapsed().as_secs_f64());
        }
    }
    let now = if postgres { "now()" } else { "strftime('%Y-%m-%dT%H:%M:%S.000000+00:00', 'now')" };
    db.execute_unprepared(&format!(
        "INSERT INTO devices (device_id, name, labels, created_at) SELECT 'fleet-' || {}, 'Till ' || n.i, '{{}}', {now} \
         FROM ({}) AS n",
        pad("n.i"),
        numbers(0, DEVICES - 1)
    ))
    .await
    .expect("devices");
    let truth = if postgres { "true" } else { "1" };
    db.execute_unprepared(&format!(
        "INSERT INTO device_latest (device_id, checked_at, is_healthy, response_time_ms, cpu_percent, memory_percent, \
         disk_percent, state, state_since) SELECT id, {now}, {truth}, 100, (id * 7919) % 10000 / 100.0, 40.0, 50.0, \
         'online', {now} FROM devices WHERE device_id LIKE 'fleet-%'"
    ))
    .await
    .expect("latest");
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let url = common::database("read-side");
        let store = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open the store");
        let now = Utc::now();
        populate(&url, &store, now.timestamp() / 60 * 60 / 60).await;
        // Retention off: the benchmark's data is 30 days old at its oldest.
        let settings = Settings { retention: RetentionPolicy::KEEP_ALL, ..Settings::default() };
        let (homepot, engine) =
            Homepot::start(Arc::new(store.clone()), settings, Arc::new(SystemClock)).await.expect("engine");
        let mut rng = SmallRng::seed_from_u64(7);

        let mut times = Vec::with_capacity(QUERIES);
        let mut points = 0;
        for _ in 0..QUERIES {
            let host = format!("h{:04}", rng.random_range(0..SERIES));
            let query = RangeQuery {
                selector: SeriesSelector::Metric {
                    name: "bench_cpu".to_owned(),
                    field: "value".to_owned(),
                    tags: vec![("host".to_owned(), host)],
                },
                from: now - TimeDelta::days(30),
                to: now,
                step_s: Some(3_600),
                max_points: None,
                agg: Agg::Avg,
            };
            let started = Instant::now();
            let answer = homepot.query_range(&query).await.expect("range");
            times.push(started.elapsed());
            points += answer.series[0].points.len();
        }
        common::report(&format!("30 days at 1 h steps ({} points a series)", points / QUERIES), times, "queries");

        let page = |after| FleetQuery {
            text: None,
            sort: FleetSortKey::CpuPercent,
            descending: true,
            limit: 100,
            after,
            ..FleetQuery::default()
        };
        let mut first = Vec::with_capacity(QUERIES / 5);
        let mut deep = Vec::with_capacity(QUERIES / 5);
        // A cursor half-way through the order.
        let mut cursor = None;
        for _ in 0..(DEVICES / 200) {
            cursor = store.fleet(&page(cursor)).await.expect("page").next;
        }
        for _ in 0..QUERIES / 5 {
            let started = Instant::now();
            let answer = store.fleet(&page(None)).await.expect("first page");
            first.push(started.elapsed());
            assert_eq!(answer.devices.len(), 100);
            let started = Instant::now();
            let answer = store.fleet(&page(cursor.clone())).await.expect("later page");
            deep.push(started.elapsed());
            assert_eq!(answer.devices.len(), 100);
        }
        common::report(&format!("fleet of {DEVICES}+ devices by -cpu_percent, first page of 100"), first, "queries");
        common::report("the same, page 51 (by cursor)", deep, "queries");
        engine.shutdown().await;
    });
}
