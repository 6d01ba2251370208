//! Service endpoints, the simulator, request limits and graceful shutdown, on SQLite.

use std::sync::Arc;

use homepot_http::ServerConfig;
use homepot_storage::{HealthStore, Store};
use homepot_tests::{Backend, TestServer, open_store, unique};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

async fn sqlite(config: ServerConfig) -> TestServer {
    TestServer::start(Backend::Sqlite, "service", config).await.expect("SQLite")
}

#[tokio::test]
async fn health_openapi_and_docs_are_served() {
    let s = sqlite(ServerConfig { instance_id: "edge-b".into(), ..ServerConfig::default() }).await;
    let (status, body) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["instance_id"], "edge-b", "which instance behind a balancer answered");
    assert_eq!(body["checks"]["store"], true);
    assert!(body["uptime_seconds"].is_number() && body["version"].is_string());

    let (status, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().expect("paths");
    for path in ["/api/v1/devices/{device_id}/health", "/api/v1/devices", "/api/v1/simulator/device-metrics", "/health"]
    {
        assert!(paths.contains_key(path), "{path} documented");
    }
    let post = &spec["paths"]["/api/v1/devices/{device_id}/health"]["post"];
    for status in ["200", "401", "403", "404", "422", "503"] {
        assert!(post["responses"].get(status).is_some(), "{status} documented");
    }
    assert_eq!(spec, serde_json::from_str::<Value>(&homepot_http::openapi_json()).unwrap(), "served = printed");

    let docs = s.client.get(s.url("/docs")).send().await.expect("docs");
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().to_lowercase().contains("swagger"));

    let (status, body) = s.call(Method::GET, "/no/such/route", None, None).await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    s.shutdown().await;
}

#[tokio::test]
async fn simulator_is_off_by_default() {
    let s = sqlite(ServerConfig::default()).await;
    let (status, _) = s.call(Method::POST, "/api/v1/simulator/device-metrics", None, None).await;
    assert_eq!(status, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn simulator_answers_as_documented() {
    let s = sqlite(ServerConfig { simulator: true, ..ServerConfig::default() }).await;
    let (status, body) = s.call(Method::POST, "/api/v1/simulator/device-metrics", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Simulated metrics submitted successfully");
    assert!(body["device_id"].as_str().unwrap().starts_with("simulator-pos-"));
    let metrics = &body["metrics"];
    assert_eq!(metrics["is_healthy"], true);
    for field in [
        "cpu_percent",
        "memory_percent",
        "memory_used_mb",
        "memory_total_mb",
        "disk_percent",
        "disk_used_gb",
        "disk_total_gb",
        "uptime_seconds",
    ] {
        assert!(metrics["system"][field].is_number(), "system.{field}");
    }
    for field in ["transactions_count", "errors_count", "warnings_count", "avg_response_time_ms"] {
        assert!(metrics["app_metrics"][field].is_number(), "app_metrics.{field}");
    }
    assert!(metrics["network"]["latency_ms"].is_number());

    let device = unique("test-pos-");
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/api/v1/simulator/device-metrics?device_id={device}&is_healthy=false"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metrics"]["is_healthy"], false);
    let first_id = body["health_check_id"].as_i64().unwrap();
    let (status, view) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "the simulator registers unknown devices");
    assert_eq!(view["latest_health"]["id"].as_i64(), Some(first_id));
    let (status, _) =
        s.call(Method::POST, &format!("/api/v1/simulator/device-metrics?device_id={device}"), None, None).await;
    assert_eq!(status, 200, "and reuses known ones");
    let (status, body) = s.call(Method::POST, "/api/v1/simulator/device-metrics?device_id=bad%20id", None, None).await;
    assert_eq!(status, 422, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_and_non_json_bodies_get_clear_errors() {
    let s = sqlite(ServerConfig { max_body_bytes: 1024, ..ServerConfig::default() }).await;
    let device = unique("pos-");
    let key = s.register(&device).await;
    let path = s.url(&format!("/api/v1/devices/{device}/health"));
    let big = json!({"is_healthy": true, "response_time_ms": 1, "response_data": {"blob": "x".repeat(2000)}});
    let response = s.client.post(&path).header("X-API-Key", &key).json(&big).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(response.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("1024"));

    let response = s
        .client
        .post(&path)
        .header("X-API-Key", &key)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(response.json::<Value>().await.unwrap()["detail"].is_string());

    // No Content-Type at all is read as JSON, as the original service did.
    let response = s
        .client
        .post(&path)
        .header("X-API-Key", &key)
        .body(r#"{"is_healthy": true, "response_time_ms": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    s.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_loses_no_acknowledged_write() {
    let (store, dir) = open_store(Backend::Sqlite, "shutdown").await.expect("SQLite");
    let verify = store.clone();
    let s = TestServer::start_on(Arc::new(store) as Arc<dyn Store>, dir, ServerConfig::default()).await;
    let device = unique("pos-");
    let key = s.register(&device).await;
    let url = s.url(&format!("/api/v1/devices/{device}/health"));
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..400 {
        let (client, url, key, acks) = (s.client.clone(), url.clone(), key.clone(), acks.clone());
        sends.spawn(async move {
            let body = json!({"is_healthy": i % 2 == 0, "response_time_ms": i});
            let Ok(response) = client.post(url).header("X-API-Key", key).json(&body).send().await else { return };
            if response.status().as_u16() == 200
                && let Some(id) = response.json::<Value>().await.ok().and_then(|b| b["health_check_id"].as_i64())
            {
                let _ = acks.send(id);
            }
        });
    }
    drop(acks);
    // Stop once writes are being acknowledged, while the rest are still in flight.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 20 {
        acknowledged.push(acked.recv().await.expect("the first writes are acknowledged"));
    }
    s.shutdown().await;
    while sends.join_next().await.is_some() {}
    while let Some(id) = acked.recv().await {
        acknowledged.push(id);
    }
    let device_id = homepot_core::DeviceId::parse(&device).unwrap();
    let stored: std::collections::HashSet<i64> = verify
        .health_since(&device_id, chrono::DateTime::UNIX_EPOCH, 10_000)
        .await
        .expect("read back")
        .into_iter()
        .map(|h| h.id.0)
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged health check {id} is stored");
    }
    eprintln!("graceful shutdown: {} acknowledged, {} stored", acknowledged.len(), stored.len());
}

#[tokio::test]
async fn locked_storage_answers_503_and_recovers() {
    homepot_tests::init();
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("locked.db").display());
    let options = homepot_storage_sea::StoreOptions {
        sqlite_busy_timeout: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let store = homepot_storage_sea::SeaOrmStore::connect(&url, &options).await.expect("open");
    let s = TestServer::start_on(Arc::new(store) as Arc<dyn Store>, Some(dir), ServerConfig::default()).await;
    let device = unique("pos-");
    let key = s.register(&device).await;
    let path = format!("/api/v1/devices/{device}/health");
    let check = json!({"is_healthy": true, "response_time_ms": 1});

    // Another process holds SQLite's write lock for longer than homepot waits.
    let mut lock_options = sea_orm::ConnectOptions::new(url.clone());
    lock_options.max_connections(1);
    let locker = sea_orm::Database::connect(lock_options).await.expect("second connection");
    locker.execute_unprepared("BEGIN IMMEDIATE").await.expect("take the write lock");

    let response = s.client.post(s.url(&path)).header("X-API-Key", &key).json(&check).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(response.json::<Value>().await.unwrap()["detail"].is_string());

    locker.execute_unprepared("COMMIT").await.expect("release the lock");
    let (status, body) = s.call(Method::POST, &path, Some(&key), Some(&check)).await;
    assert_eq!(status, 200, "recovers by itself once storage is back: {body}");
    s.shutdown().await;
}

#[tokio::test]
async fn concurrent_registrations_never_fail_health_writes() {
    let s = sqlite(ServerConfig::default()).await;
    let devices: Vec<String> = (0..4).map(|_| unique("pos-")).collect();
    let mut keys = Vec::new();
    for device in &devices {
        keys.push(s.register(device).await);
    }
    let mut work = tokio::task::JoinSet::new();
    for i in 0..300 {
        let (client, base, admin) = (s.client.clone(), s.base.clone(), s.admin_key.clone());
        let (device, key) = (devices[i % 4].clone(), keys[i % 4].clone());
        work.spawn(async move {
            let response = if i % 3 == 0 {
                // Registry writes on other connections, racing the health writer.
                client
                    .post(format!("{base}/api/v1/devices"))
                    .header("X-API-Key", admin)
                    .json(&json!({"device_id": unique("racer-")}))
                    .send()
                    .await
            } else {
                client
                    .post(format!("{base}/api/v1/devices/{device}/health"))
                    .header("X-API-Key", key)
                    .json(&json!({"is_healthy": true, "response_time_ms": i}))
                    .send()
                    .await
            };
            response.expect("sent").status().as_u16()
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(status) = work.join_next().await {
        *statuses.entry(status.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(statuses.keys().copied().collect::<Vec<u16>>(), [200, 201], "{statuses:?}");
    s.shutdown().await;
}
