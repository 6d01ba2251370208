//! Exactly-once ingest over real HTTP: an `Idempotency-Key` repeated within its window is
//! answered as the first request was and stores nothing; health checks may carry their own
//! sample time (`checked_at`).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, on_every_backend, unique};
use serde_json::{Value, json};

on_every_backend!(
    a_repeated_health_check_is_answered_as_the_first_and_stored_once,
    repeats_in_flight_at_once_store_once,
    every_metrics_route_honours_the_key,
    a_filtered_check_is_remembered_too,
    bad_keys_are_422,
    checked_at_places_a_check_at_its_own_time,
);

fn health_path(device: &str) -> String {
    format!("/api/v1/devices/{device}/health")
}

async fn post_keyed(s: &TestServer, path: &str, key: &str, idempotency: &str, body: &Value) -> (u16, Value) {
    let response = s
        .client
        .post(s.url(path))
        .header("X-API-Key", key)
        .header("Idempotency-Key", idempotency)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.expect("body")).unwrap_or(Value::Null))
}

/// Line protocol to `/write` with an idempotency key; the status.
async fn write_keyed(s: &TestServer, key: &str, idempotency: &str, lines: &str) -> u16 {
    let sent = s.client.post(s.url("/write")).header("X-API-Key", key).header("Idempotency-Key", idempotency);
    sent.body(lines.to_owned()).send().await.expect("sent").status().as_u16()
}

async fn stored_checks(s: &TestServer, device: &str) -> Vec<Value> {
    let (status, history) =
        s.call(reqwest::Method::GET, &format!("{}?limit=1000", health_path(device)), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{history}");
    history["health_checks"].as_array().expect("checks").clone()
}

async fn a_repeated_health_check_is_answered_as_the_first_and_stored_once(s: &TestServer) {
    let device = unique("idem-");
    let key = s.register(&device).await;
    let body = json!({"is_healthy": true, "response_time_ms": 12, "system": {"cpu_percent": 10.0}});
    let (status, first) = post_keyed(s, &health_path(&device), &key, "batch-1", &body).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post_keyed(s, &health_path(&device), &key, "batch-1", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the repeat gets the first answer, id and timestamp included");
    let (_, other) = post_keyed(s, &health_path(&device), &key, "batch-2", &body).await;
    assert_ne!(other["health_check_id"], first["health_check_id"]);
    assert_eq!(stored_checks(s, &device).await.len(), 2, "two keys, two checks");
    // An admin repeating the device's key is the same sender scope: the device.
    let (_, by_admin) = post_keyed(s, &health_path(&device), &s.admin_key, "batch-1", &body).await;
    assert_eq!(by_admin, first);
    assert_eq!(stored_checks(s, &device).await.len(), 2);
}

async fn repeats_in_flight_at_once_store_once(s: &TestServer) {
    let device = unique("idem-race-");
    let key = s.register(&device).await;
    let body = json!({"is_healthy": true, "response_time_ms": 3});
    let path = health_path(&device);
    let sends = (0..16).map(|_| post_keyed(s, &path, &key, "same", &body));
    let answers = futures_util::future::join_all(sends).await;
    let ids: std::collections::BTreeSet<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["health_check_id"].as_i64().expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "every repeat names the one stored check: {ids:?}");
    assert_eq!(stored_checks(s, &device).await.len(), 1);
}

async fn count_points(s: &TestServer, name: &str) -> usize {
    let (status, history) = s
        .call(reqwest::Method::GET, &format!("/api/v1/metrics/history?name={name}&hours=1"), Some(&s.admin_key), None)
        .await;
    assert_eq!(status, 200, "{history}");
    history["count"].as_u64().expect("count") as usize
}

async fn every_metrics_route_honours_the_key(s: &TestServer) {
    let device = unique("idem-metrics-");
    let key = s.register(&device).await;
    let name = unique("idem_metric_").replace('-', "_");
    let now_ns = Utc::now().timestamp_nanos_opt().unwrap();
    let line = format!("{name} value=1 {now_ns}");
    for _ in 0..3 {
        assert_eq!(write_keyed(s, &key, "lines-1", &line).await, 204);
    }
    assert_eq!(count_points(s, &name).await, 1, "/write stores a repeated batch once");

    let batch = json!({"metrics": [{"name": name, "fields": {"value": 2.0}}]});
    let (status, first) = post_keyed(s, "/api/v1/metrics", &key, "json-1", &batch).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = post_keyed(s, "/api/v1/metrics", &key, "json-1", &batch).await;
    assert_eq!(again, first);
    assert_eq!(count_points(s, &name).await, 2);

    let report = json!({
        "cpu": {"frequency_mhz": 160, "usage_percent": 12.5, "temperature_c": 50.0},
        "memory": {"total_bytes": 1000, "free_bytes": 600, "used_bytes": 400, "usage_percent": 40.0},
        "network": {"bytes_sent": 1, "bytes_received": 2, "packets_sent": 1, "packets_received": 2,
                    "rssi_dbm": -60, "signal_quality_percent": 80.0},
        "flash": {"total_bytes": 1000, "used_bytes": 500, "free_bytes": 500, "usage_percent": 50.0},
        "labels": {"zone": "a"}
    });
    let path = format!("/api/monitoring/nodes/{device}/resources");
    let (status, first) = post_keyed(s, &path, &key, "node-1", &report).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = post_keyed(s, &path, &key, "node-1", &report).await;
    assert_eq!(again["timestamp"], first["timestamp"], "the repeat names the first acceptance time");

    // The same key from another sender is another request.
    let other = s.register(&unique("idem-other-")).await;
    assert_eq!(write_keyed(s, &other, "lines-1", &line).await, 204);
    assert_eq!(count_points(s, &name).await, 3, "keys are scoped to their sender");

    // A key first used on one kind of request cannot answer another.
    let (status, body) =
        post_keyed(s, &health_path(&device), &key, "json-1", &json!({"is_healthy": true, "response_time_ms": 1})).await;
    assert_eq!(status, 409, "{body}");
}

async fn a_filtered_check_is_remembered_too(s: &TestServer) {
    // Only meaningful with the filter on; the default configuration of this suite has it off,
    // so the scenario runs its own server over the same store.
    let mut config = ServerConfig::default();
    config.filter.enabled = true;
    let server = TestServer::start_on(std::sync::Arc::clone(&s.store), None, config).await;
    let device = unique("idem-filter-");
    let key = server.register(&device).await;
    let body = json!({"is_healthy": true, "response_time_ms": 5, "system": {"cpu_percent": 20.0}});
    let (_, stored) = post_keyed(&server, &health_path(&device), &key, "a", &body).await;
    assert_eq!(stored["stored"], true);
    let (_, filtered) = post_keyed(&server, &health_path(&device), &key, "b", &body).await;
    assert_eq!(filtered["stored"], false, "{filtered}");
    let (_, again) = post_keyed(&server, &health_path(&device), &key, "b", &body).await;
    assert_eq!(again, filtered);
    assert_eq!(stored_checks(&server, &device).await.len(), 1);
    server.shutdown().await;
}

async fn bad_keys_are_422(s: &TestServer) {
    let device = unique("idem-bad-");
    let key = s.register(&device).await;
    let body = json!({"is_healthy": true, "response_time_ms": 1});
    for bad in ["has space", &"k".repeat(256)] {
        let (status, answer) = post_keyed(s, &health_path(&device), &key, bad, &body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["detail"][0]["loc"], json!(["header", "Idempotency-Key"]), "{answer}");
    }
    assert!(stored_checks(s, &device).await.is_empty());
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn checked_at_places_a_check_at_its_own_time(s: &TestServer) {
    let device = unique("idem-time-");
    let key = s.register(&device).await;
    let taken = Utc::now() - Duration::minutes(90);
    let body = json!({"is_healthy": true, "response_time_ms": 1, "checked_at": rfc3339(taken)});
    let (status, answer) = s.call(reqwest::Method::POST, &health_path(&device), Some(&key), Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
    let checks = stored_checks(s, &device).await;
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["checked_at"], rfc3339(taken), "stored at the sample's time");

    let ahead =
        json!({"is_healthy": true, "response_time_ms": 1, "checked_at": rfc3339(Utc::now() + Duration::minutes(6))});
    let (status, answer) = s.call(reqwest::Method::POST, &health_path(&device), Some(&key), Some(&ahead)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "checked_at"]));
    let garbled = json!({"is_healthy": true, "response_time_ms": 1, "checked_at": "last tuesday"});
    let (status, _) = s.call(reqwest::Method::POST, &health_path(&device), Some(&key), Some(&garbled)).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn checked_at_older_than_the_raw_retention_is_422() {
    let mut config = ServerConfig::default();
    config.retention.raw = Some(std::time::Duration::from_secs(24 * 3600));
    let s = TestServer::start(Backend::Sqlite, "checked_at_retention", config).await.expect("SQLite");
    let device = unique("idem-old-");
    let key = s.register(&device).await;
    let old =
        json!({"is_healthy": true, "response_time_ms": 1, "checked_at": rfc3339(Utc::now() - Duration::hours(25))});
    let (status, answer) = s.call(reqwest::Method::POST, &health_path(&device), Some(&key), Some(&old)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["detail"][0]["msg"].as_str().unwrap().contains("retention"), "{answer}");
    let recent =
        json!({"is_healthy": true, "response_time_ms": 1, "checked_at": rfc3339(Utc::now() - Duration::hours(23))});
    let (status, _) = s.call(reqwest::Method::POST, &health_path(&device), Some(&key), Some(&recent)).await;
    assert_eq!(status, 200);
    s.shutdown().await;
}
