//! One alert evaluation cycle at fleet scale, as the server runs it on its default SQLite
//! store: 20 rules (threshold with and without hysteresis and `for`, absent, unhealthy, rate
//! of change, service) over 10,000 registered devices that have each reported a health check.
//! The first cycle opens the alerts; the steady-state cycles after it change nothing, which is
//! what nearly every cycle of a running server does.
//!
//! `cargo bench -p homepot-storage-sea --bench alert_cycle` (`HOMEPOT_BENCH_URL` for another
//! database; it must be empty or hold this benchmark's devices).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use homepot_core::{DeviceId, HealthCheck, HealthReport, NewDevice, SystemMetrics};
use homepot_engine::{AlertSettings, Homepot, Settings, SystemClock};
use homepot_storage::{DeviceStore, Store};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use serde_json::json;

const DEVICES: usize = 10_000;
const CYCLES: usize = 50;

fn rules() -> Vec<serde_json::Value> {
    let cpu = json!({"name": "device_system", "field": "cpu_percent"});
    let mut rules = Vec::new();
    for (i, value) in [50, 60, 70, 80, 90, 95].into_iter().enumerate() {
        let mut rule =
            json!({"id": format!("cpu-{value}"), "kind": "threshold", "series": cpu, "op": ">", "value": value});
        if i % 2 == 0 {
            rule["clear"] = json!(value - 10);
            rule["for"] = json!("5m");
        }
        if i % 3 == 0 {
            rule["scope"] = json!({"labels": {"site": format!("site-{i}")}});
        }
        rules.push(rule);
    }
    for value in [100, 500] {
        rules.push(json!({"id": format!("slow-{value}"), "kind": "threshold",
            "series": {"name": "device_health", "field": "response_time_ms"}, "op": ">=", "value": value}));
    }
    for heartbeats in [3, 4, 5, 6] {
        rules.push(json!({"id": format!("silent-{heartbeats}"), "kind": "absent", "heartbeats": heartbeats}));
    }
    for count in [1, 2, 3, 4] {
        rules.push(json!({"id": format!("sick-{count}"), "kind": "unhealthy", "count": count}));
    }
    for per_hour in [5, 20] {
        rules.push(json!({"id": format!("rising-{per_hour}"), "kind": "rate", "series": cpu, "op": ">",
            "per_hour": per_hour, "window": "1h"}));
    }
    for (measure, value) in [("server_error_percent", 5), ("p95_ms", 250)] {
        rules.push(json!({"id": format!("api-{measure}"), "kind": "service", "measure": measure, "op": ">",
            "value": value, "window": "15m"}));
    }
    assert_eq!(rules.len(), 20);
    rules
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    common::percentile(sorted, p)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = std::env::var("HOMEPOT_BENCH_URL").unwrap_or_else(|_| {
        let url = common::database(&format!("alert-cycle-{}", std::process::id()));
        let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
        url
    });
    let store = Arc::new(SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open"));
    let settings = Settings {
        alerting: AlertSettings { evaluation_interval: Duration::from_secs(86_400), ..AlertSettings::default() },
        ..Settings::default()
    };
    let (homepot, engine) =
        Homepot::start(Arc::clone(&store) as Arc<dyn Store>, settings, Arc::new(SystemClock)).await.expect("start");
    let started = Instant::now();
    let existing = store.devices().await.expect("devices").len();
    for n in existing..DEVICES {
        let labels = [("site".to_owned(), format!("site-{}", n % 10))].into();
        let device = NewDevice::parse(&format!("bench-{n:05}"), None, None, labels).expect("valid");
        homepot.register_device(&device).await.expect("register");
    }
    let mut writes = Vec::new();
    for n in 0..DEVICES {
        let homepot = homepot.clone();
        writes.push(tokio::spawn(async move {
            let mut report = HealthReport::minimal(n % 20 != 0, (n % 700) as i64);
            report.system =
                Some(SystemMetrics { cpu_percent: Some((n * 37 % 100) as f64), ..SystemMetrics::default() });
            let device = DeviceId::parse(&format!("bench-{n:05}")).unwrap();
            homepot.record_health(device, HealthCheck::validate(report).unwrap(), None).await.expect("health");
        }));
    }
    for write in writes {
        write.await.expect("joined");
    }
    let only = std::env::var("BENCH_ONLY_KIND").ok();
    for rule in rules() {
        if only.as_deref().is_none_or(|k| rule["kind"] == k) {
            homepot.put_alert_rule(&rule, None).await.expect("rule");
        }
    }
    eprintln!("{DEVICES} devices with a check each, 20 rules, in {:.1} s", started.elapsed().as_secs_f64());

    let first = Instant::now();
    let report = homepot.evaluate_alerts().await.expect("cycle");
    eprintln!(
        "first cycle: {:.1} ms, {} readings, {} transitions (alerts opened and stored)",
        first.elapsed().as_secs_f64() * 1_000.0,
        report.readings,
        report.transitions
    );
    let mut times = Vec::with_capacity(CYCLES);
    let mut readings = 0;
    for _ in 0..CYCLES {
        let start = Instant::now();
        let report = homepot.evaluate_alerts().await.expect("cycle");
        times.push(start.elapsed());
        readings = report.readings;
    }
    times.sort();
    println!(
        "steady cycle of 20 rules over {DEVICES} devices ({readings} readings), {CYCLES} cycles: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times.last().unwrap().as_secs_f64() * 1_000.0
    );
    engine.shutdown().await;
}
