//! The analytics queries over a SQLite file holding 1,000,000 request logs (spread over 7
//! days, 40 route templates, realistic latencies and error rates), 100,000 job outcomes,
//! 100,000 error logs and 100,000 device state changes. Each benchmark is what one query
//! endpoint does below HTTP: the store's grouped query plus the core summary.
//!
//! `cargo bench -p homepot-storage --bench analytics`
//!
//! The database is built once a day under `target/bench-data/` and reused by later runs.

use std::hint::black_box;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use homepot_core::analytics::{
    ErrorLog, JobOutcome, JobStatus, RequestLog, Severity, StateChange, summarize_jobs, summarize_performance,
};
use homepot_storage::AnalyticsStore;
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Map;
use tokio::runtime::Runtime;

const REQUEST_LOGS: usize = 1_000_000;
const OTHER_RECORDS: usize = 100_000;
const DEVICES: usize = 1_000;
const WEEK_SECONDS: i64 = 7 * 24 * 3600;

fn database() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data directory");
    // Windows are relative to when the data was written: one file per day keeps them honest.
    dir.join(format!("analytics-{REQUEST_LOGS}-{}.db", Utc::now().format("%Y%m%d")))
}

/// A time in the last week, recent times denser, as traffic grows.
fn recent(rng: &mut SmallRng, now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::seconds(rng.random_range(0..WEEK_SECONDS)) - TimeDelta::seconds(60)
}

async fn populate(store: &SeaOrmStore, now: DateTime<Utc>) {
    let mut rng = SmallRng::seed_from_u64(7);
    let methods = ["GET", "GET", "GET", "POST", "DELETE"];
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..REQUEST_LOGS {
        let route = i % 40;
        // Log-normal-ish: mostly a few ms, a tail to seconds.
        let ms = (rng.random::<f64>().powi(4) * 2_000.0) + rng.random_range(0.2..5.0);
        let status = match rng.random_range(0..100) {
            0 => 500,
            1..=4 => 404,
            5 => 422,
            _ => 200,
        };
        batch.push(RequestLog {
            timestamp: recent(&mut rng, now),
            endpoint: format!("/api/v1/resource{route}/{{id}}"),
            method: methods[i % methods.len()].to_owned(),
            status_code: status,
            response_time_ms: ms,
            user_id: Some(format!("key:{:016x}", i % 50)),
            ip_address: Some(format!("10.0.{}.{}", i % 256, i % 200)),
            user_agent: Some("homepot-bench/1".to_owned()),
            error_message: (status >= 400).then(|| "Not Found".to_owned()),
            request_size_bytes: Some(120),
            response_size_bytes: Some(640),
        });
        if batch.len() == batch.capacity() {
            store.insert_request_logs(&batch).await.expect("insert logs");
            batch.clear();
        }
    }
    store.insert_request_logs(&batch).await.expect("insert logs");
    for i in 0..OTHER_RECORDS {
        let at = recent(&mut rng, now);
        let device_id = format!("device-{:04}", i % DEVICES);
        let status = JobStatus::ALL[usize::from(rng.random_range(0..10u8) >= 8) * rng.random_range(1..4)];
        store
            .insert_job_outcome(&JobOutcome {
                timestamp: at,
                job_id: format!("job-{i}"),
                job_type: ["device_restart", "config_update", "firmware_update", "health_check"][i % 4].to_owned(),
                device_id: Some(device_id.clone()),
                status,
                duration_ms: Some(rng.random_range(100..60_000)),
                error_code: None,
                error_message: None,
                retry_count: 0,
                initiated_by: Some("ops@example.com".to_owned()),
                metadata: Map::new(),
            })
            .await
            .expect("insert job");
        store
            .insert_error_log(&ErrorLog {
                timestamp: at,
                category: ["api", "database", "external_service", "validation", "frontend"][i % 5].to_owned(),
                severity: Severity::ALL[i % 4],
                error_code: Some(format!("E{}", i % 20)),
                error_message: "something failed".to_owned(),
                stack_trace: None,
                endpoint: None,
                user_id: None,
                device_id: Some(device_id.clone()),
                context: Map::new(),
                resolved: false,
            })
            .await
            .expect("insert error");
        store
            .insert_state_change(&StateChange {
                timestamp: at,
                device_id,
                previous_state: Some("online".to_owned()),
                new_state: ["online", "unhealthy", "offline"][i % 3].to_owned(),
                changed_by: "system".to_owned(),
                recorded_by: Some("system".to_owned()),
                reason: Some("bench".to_owned()),
                metadata: Map::new(),
            })
            .await
            .expect("insert state");
    }
}

fn queries(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let path = database();
    let fresh = !path.exists();
    let url = format!("sqlite://{}", path.display());
    let store = runtime
        .block_on(SeaOrmStore::connect(
            &url,
            &StoreOptions { sqlite_sync: homepot_storage_sea::SqliteSync::Normal, ..Default::default() },
        ))
        .expect("open");
    let now = Utc::now();
    if fresh {
        eprintln!("building {} (once)...", path.display());
        runtime.block_on(populate(&store, now));
    }
    let hours_ago = |h: i64| now - TimeDelta::hours(h);

    let mut group = c.benchmark_group("analytics_1m_request_logs");
    group.sample_size(20);
    for hours in [24, 168] {
        group.bench_function(format!("api_performance_{hours}h"), |b| {
            b.iter(|| {
                let groups = runtime.block_on(store.request_latencies(hours_ago(hours), None)).expect("query");
                black_box(summarize_performance(&groups))
            });
        });
    }
    group.bench_function("api_performance_168h_one_endpoint", |b| {
        b.iter(|| {
            let groups = runtime
                .block_on(store.request_latencies(hours_ago(168), Some("/api/v1/resource7/{id}")))
                .expect("query");
            black_box(summarize_performance(&groups))
        });
    });
    group.bench_function("job_outcomes_168h", |b| {
        b.iter(|| {
            let counts = runtime.block_on(store.job_status_counts(hours_ago(168), None)).expect("query");
            black_box(summarize_jobs(&counts))
        });
    });
    group.bench_function("error_trends_168h", |b| {
        b.iter(|| black_box(runtime.block_on(store.error_trends(hours_ago(168), None, None)).expect("query")));
    });
    group.bench_function("device_state_history_720h", |b| {
        b.iter(|| {
            black_box(runtime.block_on(store.state_history("device-0042", hours_ago(720), 1_000)).expect("query"))
        });
    });
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
