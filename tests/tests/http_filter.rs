//! The SmartDataFilter on real durable writes: what is stored, what is answered, and
//! that the live view still sees every sample. On SQLite and, when configured, PostgreSQL.

use homepot_core::filter::FilterConfig;
use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, unique};
use reqwest::Method;
use serde_json::{Value, json};

fn filtered() -> ServerConfig {
    ServerConfig { filter: FilterConfig::default(), ..ServerConfig::default() }
}

async fn health_checks_are_stored_only_when_they_say_something_new(s: &TestServer) {
    let device = unique("pos-");
    let key = s.register(&device).await;
    let path = format!("/api/v1/devices/{device}/health");
    let check = |cpu: f64, healthy: bool| json!({"is_healthy": healthy, "response_time_ms": 100, "system": {"cpu_percent": cpu, "memory_percent": 50.0}});
    let post = |body: Value| {
        let (s, path, key) = (s, path.clone(), key.clone());
        async move {
            let (status, answer) = s.call(Method::POST, &path, Some(&key), Some(&body)).await;
            assert_eq!(status, 200, "{answer}");
            (answer["health_check_id"].as_i64().unwrap(), answer["stored"].as_bool().unwrap())
        }
    };
    let (first, stored) = post(check(40.0, true)).await;
    assert!(stored, "first contact is stored");
    assert_eq!(
        post(check(40.5, true)).await,
        (first, false),
        "a 1 % change is not: the answer names the last stored check"
    );
    let (second, stored) = post(check(44.0, true)).await;
    assert!(stored && second > first, "10 % is significant");
    let (third, stored) = post(check(44.0, false)).await;
    assert!(stored && third > second, "an is_healthy flip is always significant");
    assert_eq!(post(check(44.0, false)).await, (third, false));

    let (_, history) = s.call(Method::GET, &path, Some(&s.admin_key), None).await;
    assert_eq!(history["count"], 3, "{history}");
    let (_, live) = s.call(Method::GET, "/api/v1/metrics?name=device_system", Some(&s.admin_key), None).await;
    let entry =
        live["metrics"].as_object().unwrap().values().find(|m| m["tags"]["device_id"] == device.as_str()).unwrap();
    assert_eq!(entry["fields"]["cpu_percent"], 44.0, "the live view sees filtered samples too");
}

async fn metric_points_are_filtered_per_series(s: &TestServer) {
    let name = unique("temp_");
    let push = |value: f64, host: &'static str| {
        let body = json!({"name": name, "value": value, "tags": {"host": host}});
        async move { s.call(Method::POST, "/api/v1/metrics/simple", Some(&s.admin_key), Some(&body)).await.1 }
    };
    assert_eq!(push(20.0, "a").await, json!({"accepted": 1, "message": "Accepted 1 metric"}));
    assert_eq!(push(20.2, "a").await, json!({"accepted": 1, "message": "Accepted 1 metric", "stored": 0}));
    assert_eq!(push(20.2, "b").await["stored"], Value::Null, "another series: first contact, all stored");
    assert_eq!(push(30.0, "a").await["stored"], Value::Null);
    let (_, history) =
        s.call(Method::GET, &format!("/api/v1/metrics/history?name={name}"), Some(&s.admin_key), None).await;
    assert_eq!(history["count"], 3);
    let lines = format!("{name},host=a value=30.0\n{name},host=a value=30.1\n{name},host=c value=1");
    let (status, answer) = s.post_text("/api/v1/metrics/influx", &s.admin_key, &lines).await;
    assert_eq!((status, answer["accepted"].clone(), answer["stored"].clone()), (200, json!(3), json!(1)));
}

#[tokio::test]
async fn health_filter_on_sqlite() {
    let s = TestServer::start(Backend::Sqlite, "filter", filtered()).await.expect("SQLite");
    health_checks_are_stored_only_when_they_say_something_new(&s).await;
    metric_points_are_filtered_per_series(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn health_filter_on_postgres() {
    let Some(s) = TestServer::start(Backend::Postgres, "health_filter_on_postgres", filtered()).await else { return };
    health_checks_are_stored_only_when_they_say_something_new(&s).await;
    metric_points_are_filtered_per_series(&s).await;
    s.shutdown().await;
}
