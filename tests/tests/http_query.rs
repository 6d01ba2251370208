//! `GET /api/v1/query/range` over the rollups, and retention of raw rows and rollup tiers, on
//! every backend, through the real server.

use std::time::Duration;

use homepot_core::filter::FilterConfig;
use homepot_core::{FieldValue, MetricType, Point};
use homepot_http::ServerConfig;
use homepot_storage::retention::RetentionPolicy;
use std::sync::Arc;

use homepot_tests::{Backend, TestServer, on_every_backend, open_isolated_store, unique};
use reqwest::Method;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn range(s: &TestServer, query: &str) -> (u16, Value) {
    s.call(Method::GET, &format!("/api/v1/query/range?{query}"), Some(&s.admin_key), None).await
}

async fn write_lines(s: &TestServer, lines: &[String]) {
    let (status, body) = s.post_text("/write", &s.admin_key, &lines.join("\n")).await;
    assert_eq!(status, 204, "{body}");
}

/// `[t, v]` pairs of the only series.
fn points(answer: &Value) -> Vec<(i64, f64)> {
    let series = answer["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{answer}");
    series[0]["points"].as_array().unwrap().iter().map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap())).collect()
}

mod ranges {
    use super::*;
    on_every_backend!(metric_ranges_follow_step_agg_and_tier, health_fields_by_device, refused_queries);
}

async fn metric_ranges_follow_step_agg_and_tier(s: &TestServer) {
    let name = unique("load");
    // An hour-aligned origin two days back; samples in three minutes of its first hour and one
    // sample the next day, on two hosts.
    let origin = (now_s() - 2 * DAY) / 3_600 * 3_600;
    let line = |host: &str, value: f64, at: i64| format!("{name},host={host} value={value} {}", at * 1_000_000_000);
    write_lines(
        s,
        &[
            line("a", 1.0, origin + 5),
            line("a", 3.0, origin + 50),
            line("a", 8.0, origin + 130),
            line("a", -2.0, origin + 3_000),
            line("a", 10.0, origin + DAY + 10),
            line("b", 100.0, origin + 5),
        ],
    )
    .await;
    let window = format!("name={name}&tag=host:a&from={origin}&to={}", origin + 2 * DAY);

    let (status, minutes) = range(s, &format!("{window}&step=60")).await;
    assert_eq!(status, 200, "{minutes}");
    assert_eq!((minutes["tier"].clone(), minutes["step"].clone()), (json!("1m"), json!(60)));
    assert_eq!(minutes["series"][0]["labels"], json!({"__name__": name, "__field__": "value", "host": "a"}));
    assert_eq!(
        points(&minutes),
        [(origin, 2.0), (origin + 120, 8.0), (origin + 3_000, -2.0), (origin + DAY, 10.0)],
        "averages per minute, empty minutes left out"
    );

    let (_, hours) = range(s, &format!("{window}&step=3600&agg=max")).await;
    assert_eq!(hours["tier"], "1h", "the coarsest tier that divides the step");
    assert_eq!(points(&hours), [(origin, 8.0), (origin + DAY, 10.0)]);
    for (agg, expected) in [("min", -2.0), ("sum", 10.0), ("count", 4.0), ("last", -2.0), ("avg", 2.5)] {
        let (_, answer) = range(s, &format!("{window}&step=3600&agg={agg}")).await;
        assert_eq!(points(&answer)[0], (origin, expected), "{agg}: {answer}");
    }
    let (_, days) = range(s, &format!("{window}&step=86400&agg=count")).await;
    assert_eq!(days["tier"], "1d");
    assert_eq!(
        days["series"][0]["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>(),
        5.0
    );

    // Without a step, the span over max_points, rounded up to whole minutes.
    let (_, auto) = range(s, &format!("{window}&max_points=48")).await;
    assert_eq!((auto["step"].clone(), auto["tier"].clone()), (json!(3_600), json!("1h")));

    // Both hosts when no tag narrows the metric, each with its labels.
    let (_, both) = range(s, &format!("name={name}&from={origin}&to={}&step=86400", origin + DAY)).await;
    let hosts: Vec<&str> =
        both["series"].as_array().unwrap().iter().map(|s| s["labels"]["host"].as_str().unwrap()).collect();
    assert_eq!(hosts.len(), 2, "{both}");
    assert!(hosts.contains(&"a") && hosts.contains(&"b"));
}

async fn health_fields_by_device(s: &TestServer) {
    let device = unique("till-");
    let key = s.register(&device).await;
    for cpu in [10.0, 20.0, 30.0] {
        let check = json!({"is_healthy": cpu < 25.0, "response_time_ms": 100, "system": {"cpu_percent": cpu}});
        let (status, body) =
            s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(&check)).await;
        assert_eq!(status, 200, "{body}");
    }
    let from = now_s() - 3 * DAY;
    let total = |answer: &Value| {
        answer["series"][0]["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>()
    };
    let (status, sum) = range(s, &format!("device_id={device}&field=cpu_percent&from={from}&step=86400&agg=sum")).await;
    assert_eq!(status, 200, "{sum}");
    assert_eq!(total(&sum), 60.0, "{sum}");
    assert_eq!(
        sum["series"][0]["labels"],
        json!({"__name__": "device_system", "__field__": "cpu_percent", "device_id": device})
    );
    let (_, healthy) = range(s, &format!("device_id={device}&field=is_healthy&from={from}&step=86400&agg=sum")).await;
    assert_eq!(total(&healthy), 2.0, "healthy counts as 1: {healthy}");
    let (_, count) =
        range(s, &format!("device_id={device}&field=response_time_ms&from={from}&step=86400&agg=count")).await;
    assert_eq!(total(&count), 3.0);

    let (status, body) = range(s, &format!("device_id={device}&field=disk_percent")).await;
    assert_eq!(status, 404, "never reported: {body}");
    let (status, body) = range(s, "device_id=no-such-device&field=cpu_percent").await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Device 'no-such-device' not found")));

    // Several devices at once, as the fleet's sparklines ask: one series each, devices that
    // never reported the field left out, other devices' series not included.
    let (second, silent, other) = (unique("till-"), unique("till-"), unique("till-"));
    for (id, cpu) in [(&second, Some(70.0)), (&silent, None), (&other, Some(5.0))] {
        let key = s.register(id).await;
        let check = match cpu {
            Some(cpu) => json!({"is_healthy": true, "response_time_ms": 100, "system": {"cpu_percent": cpu}}),
            None => json!({"is_healthy": true, "response_time_ms": 100}),
        };
        let (status, body) =
            s.call(Method::POST, &format!("/api/v1/devices/{id}/health"), Some(&key), Some(&check)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, many) = range(
        s,
        &format!(
            "device_id={device}&device_id={second}&device_id={silent}&field=cpu_percent&from={from}&step=86400&agg=max"
        ),
    )
    .await;
    assert_eq!(status, 200, "{many}");
    let mut maxima: Vec<(String, f64)> = many["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["labels"]["device_id"].as_str().unwrap().to_owned(), s["points"][0][1].as_f64().unwrap()))
        .collect();
    maxima.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![(device.clone(), 30.0), (second.clone(), 70.0)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(maxima, expected, "{many}");
    let (status, body) = range(s, &format!("device_id={device}&device_id=no-such-device&field=cpu_percent")).await;
    assert_eq!((status, body["detail"].clone()), (404, json!("Device 'no-such-device' not found")));
    let (status, body) = range(s, &format!("device_id={silent}&device_id={silent}&field=cpu_percent")).await;
    assert_eq!(status, 404, "no device has the field: {body}");
}

async fn refused_queries(s: &TestServer) {
    let name = unique("refused");
    write_lines(s, &[format!("{name} value=1")]).await;
    let loc = |body: &Value| body["detail"][0]["loc"].clone();
    for (query, parameter) in [
        (format!("name={name}&step=90"), "step"),
        (format!("name={name}&step=60&from=0&to={}", 11_001 * 60), "step"),
        (format!("name={name}&max_points=0"), "max_points"),
        (format!("name={name}&max_points=11001"), "max_points"),
        (format!("name={name}&agg=median"), "agg"),
        (format!("name={name}&from=yesterday"), "from"),
        (format!("name={name}&from=100&to=50"), "to"),
        (format!("name={name}&device_id=x"), "name"),
        ("step=60".to_owned(), "name"),
        (format!("name={name}&tag=nocolon"), "tag"),
        ("device_id=pos-1".to_owned(), "field"),
    ] {
        let (status, body) = range(s, &query).await;
        assert_eq!((status, loc(&body)), (422, json!(["query", parameter])), "{query}: {body}");
    }
    let (status, _) = range(s, &format!("name={name}&field=other")).await;
    assert_eq!(status, 404, "no such field");
    let (status, _) = range(s, &format!("name={name}&tag=host:none")).await;
    assert_eq!(status, 404, "no series with that tag");
    let (status, _) = s.call(Method::GET, &format!("/api/v1/query/range?name={name}"), None, None).await;
    assert_eq!(status, 401);
    let device = unique("pos-");
    let device_key = s.register(&device).await;
    let (status, _) = s.call(Method::GET, &format!("/api/v1/query/range?name={name}"), Some(&device_key), None).await;
    assert_eq!(status, 403, "device keys do not read");
}

fn filtered() -> ServerConfig {
    ServerConfig { filter: FilterConfig { enabled: true, ..FilterConfig::default() }, ..ServerConfig::default() }
}

mod filter {
    use super::*;
    on_every_backend!(config = filtered; rollups_count_filtered_samples);
}

/// The SmartDataFilter decides what raw rows are stored; rollups see every sample.
async fn rollups_count_filtered_samples(s: &TestServer) {
    let device = unique("steady-");
    let key = s.register(&device).await;
    let mut stored = 0;
    for _ in 0..5 {
        let check = json!({"is_healthy": true, "response_time_ms": 100, "system": {"cpu_percent": 40.0}});
        let (_, body) =
            s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(&check)).await;
        stored += i32::from(body["stored"] == json!(true));
    }
    assert_eq!(stored, 1, "the filter stores the first check only");
    let from = now_s() - 3 * DAY;
    let (_, count) = range(s, &format!("device_id={device}&field=cpu_percent&from={from}&step=86400&agg=count")).await;
    let total: f64 = count["series"][0]["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).sum();
    assert_eq!(total, 5.0, "{count}");
}

fn quick_retention() -> ServerConfig {
    let mut config = ServerConfig {
        rollup_flush_interval: Duration::from_millis(50),
        retention: RetentionPolicy::default(),
        ..ServerConfig::default()
    };
    config.analytics.retention_interval = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn sqlite_raw_rows_go_after_30_days_and_rollups_keep_them() {
    let (store, dir) = open_isolated_store(Backend::Sqlite, "retention").await.expect("SQLite");
    let s = TestServer::start_on(Arc::new(store), dir, quick_retention()).await;
    raw_rows_go_after_30_days_and_rollups_keep_them(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn postgres_raw_rows_go_after_30_days_and_rollups_keep_them() {
    let Some((store, _)) = open_isolated_store(Backend::Postgres, "retention").await else { return };
    let s = TestServer::start_on(Arc::new(store), None, quick_retention()).await;
    raw_rows_go_after_30_days_and_rollups_keep_them(&s).await;
    s.shutdown().await;
}

/// Raw points older than 30 days are deleted, but their rollups stay: 1-minute buckets for 90
/// days, 1-hour buckets for two years. Raw rows from before rollups existed are kept.
async fn raw_rows_go_after_30_days_and_rollups_keep_them(s: &TestServer) {
    let name = unique("retained");
    // Written straight to storage, as if stored before rollups existed: never rolled up.
    let ancient_s = now_s() - 400 * DAY;
    let ancient = Point::new(
        name.clone(),
        vec![],
        vec![("value".into(), FieldValue::Float(7.0))],
        ancient_s * 1_000_000_000,
        MetricType::Gauge,
    )
    .unwrap();
    s.store.insert_points(&[ancient], &[]).await.unwrap();
    let at = |days: i64| (now_s() - days * DAY) / 3_600 * 3_600;
    let lines: Vec<String> = [(100, 1.0), (40, 2.0), (1, 3.0)]
        .iter()
        .map(|(days, v)| format!("{name} value={v} {}", at(*days) * 1_000_000_000))
        .collect();
    write_lines(s, &lines).await;

    // The retention job runs every 200 ms: wait until the two raw points older than 30 days
    // (and rolled up) are gone.
    let raw = || async { s.store.points_since(&name, i64::MIN, &[], 10).await.unwrap() };
    for _ in 0..200 {
        if raw().await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let values: Vec<f64> = raw().await.iter().map(|p| p.fields()[0].1.as_f64().unwrap()).collect();
    assert_eq!(values, [3.0, 7.0], "raw: the recent point and the one from before rollups");

    let hour_of = |days: i64| format!("name={name}&from={}&to={}&step=60", at(days), at(days) + 3_600);
    let (_, minutes) = range(s, &hour_of(40)).await;
    assert_eq!(points(&minutes), [(at(40), 2.0)], "1-minute buckets are kept 90 days");
    let (_, minutes) = range(s, &hour_of(100)).await;
    assert!(points(&minutes).is_empty(), "and no longer: {minutes}");
    let (_, hours) = range(s, &format!("name={name}&from={}&step=3600", at(120))).await;
    assert_eq!(points(&hours).iter().map(|p| p.1).collect::<Vec<_>>(), [1.0, 2.0, 3.0], "hours kept two years");
}

/// Rollups gathered in memory are stored at shutdown (and by the flush job): a restarted
/// server answers the same.
async fn rollups_survive_a_restart(s: TestServer) {
    let name = unique("kept");
    let origin = (now_s() - DAY) / 3_600 * 3_600;
    let lines: Vec<String> =
        (0..30).map(|i| format!("{name},host=a value={i} {}", (origin + i * 50) * 1_000_000_000)).collect();
    write_lines(&s, &lines).await;
    let query = format!("name={name}&from={origin}&to={}&step=300&agg=sum", origin + 3_600);
    let (_, before) = range(&s, &query).await;
    assert_eq!(points(&before).iter().map(|p| p.1).sum::<f64>(), 435.0, "{before}");
    let s = s.restart(ServerConfig::default()).await;
    let (_, after) = range(&s, &query).await;
    assert_eq!(after, before);
    s.shutdown().await;
}

#[tokio::test]
async fn sqlite_rollups_survive_a_restart() {
    let s = TestServer::start(Backend::Sqlite, "rollups_restart", ServerConfig::default()).await.expect("SQLite");
    rollups_survive_a_restart(s).await;
}

#[tokio::test]
async fn postgres_rollups_survive_a_restart() {
    let Some(s) = TestServer::start(Backend::Postgres, "rollups_restart", ServerConfig::default()).await else {
        return;
    };
    rollups_survive_a_restart(s).await;
}
