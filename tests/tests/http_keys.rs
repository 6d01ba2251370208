//! Key rotation, revocation and read-only keys over real HTTP; and 401 on every protected
//! route of the OpenAPI document.

use std::sync::Arc;

use homepot_engine::{AdminKeyOutcome, ensure_admin_key};
use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, on_every_backend, open_store, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    device_keys_rotate_and_revoke,
    read_keys_read_and_write_nothing,
    every_protected_route_needs_a_key,
    every_protected_route_refuses_keys_outside_their_role,
);

async fn device_keys_rotate_and_revoke(s: &TestServer) {
    let (device, other) = (unique("till-"), unique("till-"));
    let first = s.register(&device).await;
    s.register(&other).await;
    let admin = Some(s.admin_key.as_str());
    let keys_path = format!("/api/v1/devices/{device}/keys");
    let health_path = format!("/api/v1/devices/{device}/health");
    let health = json!({"is_healthy": true, "response_time_ms": 4});

    let (status, issued) = s.call(Method::POST, &keys_path, admin, None).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!((issued["role"].clone(), issued["device_id"].clone()), (json!("device"), json!(device)));
    let second = issued["api_key"].as_str().expect("the secret, once").to_owned();
    let second_id = issued["key_id"].as_i64().unwrap();

    let (_, list) = s.call(Method::GET, &keys_path, admin, None).await;
    assert_eq!(list["count"], 2);
    assert!(list["keys"].as_array().unwrap().iter().all(|k| k.get("api_key").is_none()), "secrets are never listed");
    let first_id = list["keys"][0]["key_id"].as_i64().unwrap();
    assert_ne!(first_id, second_id);

    for key in [&first, &second] {
        let (status, _) = s.call(Method::POST, &health_path, Some(key), Some(&health)).await;
        assert_eq!(status, 200, "both keys work during the switch-over");
    }
    let (status, body) = s.call(Method::DELETE, &format!("/api/v1/devices/{other}/keys/{first_id}"), admin, None).await;
    assert_eq!(status, 404, "a key is revoked only through its own device: {body}");
    let (status, _) = s.call(Method::DELETE, &format!("{keys_path}/{first_id}"), admin, None).await;
    assert_eq!(status, 204);
    let (status, body) = s.call(Method::POST, &health_path, Some(&first), Some(&health)).await;
    assert_eq!((status, body), (401, json!({"detail": "Invalid API key"})), "revoked at once");
    let (status, _) = s.call(Method::POST, &health_path, Some(&second), Some(&health)).await;
    assert_eq!(status, 200);
    let (status, body) = s.call(Method::DELETE, &format!("{keys_path}/{first_id}"), admin, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["detail"], format!("API key {first_id} not found for device '{device}'"));

    let (status, _) = s.call(Method::POST, &keys_path, Some(&second), None).await;
    assert_eq!(status, 403, "a device cannot mint keys");
    let (status, _) = s.call(Method::POST, &format!("/api/v1/devices/{}/keys", unique("ghost-")), admin, None).await;
    assert_eq!(status, 404);
}

async fn read_keys_read_and_write_nothing(s: &TestServer) {
    let admin = Some(s.admin_key.as_str());
    let device = unique("till-");
    s.register(&device).await;
    let (status, issued) = s.call(Method::POST, "/api/v1/keys", admin, Some(&json!({"role": "read"}))).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["role"], "read");
    assert!(issued.get("device_id").is_none());
    let reader = issued["api_key"].as_str().unwrap().to_owned();
    let reader_id = issued["key_id"].as_i64().unwrap();
    let read = Some(reader.as_str());

    let (status, _) = s.call(Method::GET, "/api/v1/devices", read, None).await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, &format!("/api/v1/devices/{device}/health"), read, None).await;
    assert_eq!(status, 200);
    let health = json!({"is_healthy": true, "response_time_ms": 4});
    let (status, _) = s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), read, Some(&health)).await;
    assert_eq!(status, 403);
    let (status, _) = s.call(Method::POST, "/api/v1/devices", read, Some(&json!({"device_id": unique("x-")}))).await;
    assert_eq!(status, 403);
    let (status, _) = s.call(Method::POST, "/api/v1/keys", read, Some(&json!({"role": "admin"}))).await;
    assert_eq!(status, 403, "a read key cannot escalate");
    let (status, _) = s.call(Method::GET, "/api/v1/metrics/api-performance", read, None).await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v1/analytics/job-outcome",
            read,
            Some(&json!({"job_id": "j", "job_type": "t", "status": "success"})),
        )
        .await;
    assert_eq!(status, 403);

    let (status, body) = s.call(Method::POST, "/api/v1/keys", admin, Some(&json!({"role": "device"}))).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["body", "role"])));
    let (_, list) = s.call(Method::GET, "/api/v1/keys", admin, None).await;
    assert!(list["keys"].as_array().unwrap().iter().any(|k| k["key_id"] == reader_id));
    let (status, _) = s.call(Method::DELETE, &format!("/api/v1/keys/{reader_id}"), admin, None).await;
    assert_eq!(status, 204);
    let (status, _) = s.call(Method::GET, "/api/v1/devices", read, None).await;
    assert_eq!(status, 401);

    // With an operator-configured admin key, stored admin keys may all be revoked.
    let (_, issued) = s.call(Method::POST, "/api/v1/keys", admin, Some(&json!({"role": "admin"}))).await;
    let (status, _) = s.call(Method::DELETE, &format!("/api/v1/keys/{}", issued["key_id"]), admin, None).await;
    assert_eq!(status, 204);
}

/// `url` with a placeholder for every required query parameter of `operation`: the
/// document is public, so a 422 for a missing one would reveal nothing, but these walks check
/// the key.
fn with_required_query(url: String, operation: &Value) -> String {
    let required: Vec<String> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query" && p["required"] == true)
        .map(|p| format!("{}=x", p["name"].as_str().unwrap_or_default()))
        .collect();
    if required.is_empty() { url } else { format!("{url}?{}", required.join("&")) }
}

/// Fills a templated path with placeholder values.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| if segment.starts_with('{') { "1" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_protected_route_needs_a_key(s: &TestServer) {
    let (_, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    let mut checked = 0;
    let mut public = Vec::new();
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let schemes = operation["security"].as_array().cloned().unwrap_or_default();
            if schemes.is_empty() {
                public.push(format!("{} {path}", method.to_uppercase()));
                continue;
            }
            // `/ws` answers a plain GET 400 (not an upgrade); its 401 is tested with a real
            // WebSocket client in http_monitoring.
            if path == "/ws" {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let url = with_required_query(concrete(path), operation);
            for key in [None, Some("hpk_not-a-key")] {
                let (status, body) = s.call(method.clone(), &url, key, Some(&json!({}))).await;
                assert_eq!(status, 401, "{method} {url} with {key:?}: {body}");
            }
            checked += 1;
        }
    }
    public.sort();
    assert_eq!(
        public,
        [
            "DELETE /api/v1/session",
            "GET /api/health",
            "GET /api/v1/session",
            "GET /api/v1/stats",
            "GET /health",
            "POST /api/v1/session",
            "POST /api/v1/simulator/device-metrics"
        ],
        "only liveness, counters, the dashboard's sign-in (a key in the body, or a session cookie) \
         and the (off by default) simulator are public"
    );
    assert!(checked >= 35, "only {checked} protected operations found");
}

/// Without an operator-configured admin key, the last stored admin key cannot be revoked:
/// that would lock every operator out.
#[tokio::test]
async fn the_last_admin_key_is_kept() {
    homepot_tests::init();
    let (store, _dir) = open_store(Backend::Sqlite, "last_admin").await.expect("SQLite");
    let store: Arc<dyn homepot_storage::Store> = Arc::new(store);
    let AdminKeyOutcome::Generated(admin) =
        ensure_admin_key(&*store, None, chrono::Utc::now()).await.expect("bootstrap")
    else {
        panic!("a fresh database gets a generated admin key");
    };
    let server = homepot_http::start("127.0.0.1:0", Arc::clone(&store), ServerConfig::default()).await.expect("start");
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.local_addr());
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut request = client.request(method, format!("{base}{path}")).header("X-API-Key", admin.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, list) = call(Method::GET, "/api/v1/keys", None).await;
    let admin_id = list["keys"].as_array().unwrap().iter().find(|k| k["role"] == "admin").unwrap()["key_id"].clone();
    let (status, body) = call(Method::DELETE, &format!("/api/v1/keys/{admin_id}"), None).await;
    assert_eq!(status, 409, "{body}");
    let (status, issued) = call(Method::POST, "/api/v1/keys", Some(json!({"role": "admin"}))).await;
    assert_eq!(status, 201);
    let (status, _) = call(Method::DELETE, &format!("/api/v1/keys/{admin_id}"), None).await;
    assert_eq!(status, 204, "with another admin key issued, the first may go");
    let (status, _) = call(Method::GET, "/api/v1/keys", None).await;
    assert_eq!(status, 401, "the revoked admin key is refused");
    let next = issued["api_key"].as_str().unwrap();
    let response = client.get(format!("{base}/api/v1/keys")).header("X-API-Key", next).send().await.unwrap();
    assert_eq!(response.status(), 200);
    server.shutdown().await.expect("shutdown");
}

/// A valid body naming `device` where a handler reads the body before it can judge the key's
/// role; `{}` elsewhere.
fn body_for(path: &str, device: &str) -> Value {
    match path {
        "/api/v1/analytics/device-state-change" => json!({"device_id": device, "new_state": "maintenance"}),
        "/api/v1/analytics/job-outcome" => {
            json!({"job_id": "j", "job_type": "t", "status": "success", "device_id": device})
        }
        "/api/v1/analytics/error" => {
            json!({"category": "api", "severity": "info", "error_message": "m", "device_id": device})
        }
        "/api/v1/containers/metrics" => homepot_tests::container_data_message(&format!("{device}:edge:containers")),
        "/api/v1/keys" => json!({"role": "read"}),
        _ => json!({}),
    }
}

/// Walks the OpenAPI document: read keys write nothing but analytics about themselves,
/// device keys read and manage nothing, and a device key cannot write for another device.
async fn every_protected_route_refuses_keys_outside_their_role(s: &TestServer) {
    let (device, other) = (unique("own-"), unique("other-"));
    let device_key = s.register(&device).await;
    s.register(&other).await;
    let (_, issued) = s.call(Method::POST, "/api/v1/keys", Some(&s.admin_key), Some(&json!({"role": "read"}))).await;
    let read_key = issued["api_key"].as_str().expect("read key").to_owned();
    // Writes any valid key may make, about itself.
    let any_key = ["/api/v1/analytics/user-activity", "/api/v1/analytics/error"];
    // Writes a device key may make for its own device; the device is in the path or body.
    let own_device_writes = [
        "/api/v1/devices/{device_id}/health",
        "/api/monitoring/nodes/{node_id}/resources",
        "/api/v1/containers/metrics",
        "/api/v1/analytics/device-state-change",
        "/api/v1/analytics/job-outcome",
        "/api/v1/analytics/error",
    ];
    // Writes a device key may make, tagged with its own device whatever it sends.
    let self_tagged = [
        "/api/v1/metrics",
        "/api/v1/metrics/simple",
        "/api/v1/metrics/influx",
        "/api/v1/metrics/otlp",
        "/write",
        "/api/v1/write",
    ];
    // Reads that Prometheus clients may POST as forms.
    let posted_reads = ["/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels"];
    let (_, spec) = s.call(Method::GET, "/openapi.json", None, None).await;
    let mut checked = 0;
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation["security"].as_array().is_none_or(|schemes| schemes.is_empty())
                || ["/ws", "/metrics/stream"].contains(&path.as_str())
            {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Paths and bodies name the *other* device, so a device key never acts for itself.
            let url = with_required_query(
                path.replace("{device_id}", &other).replace("{node_id}", &other).replace("{key_id}", "1"),
                operation,
            );
            let body = body_for(path, &other);
            let (path, is_write) = (path.as_str(), method != Method::GET && !posted_reads.contains(&path.as_str()));
            let device_refused = !is_write
                || own_device_writes.contains(&path)
                || !(any_key.contains(&path) || self_tagged.contains(&path));
            let read_refused = is_write && !any_key.contains(&path);
            let refusals =
                [(device_refused, "device key", device_key.as_str()), (read_refused, "read key", read_key.as_str())];
            for (who, key) in refusals.iter().filter(|r| r.0).map(|r| (r.1, r.2)) {
                let (status, answer) = s.call(method.clone(), &url, Some(key), Some(&body)).await;
                assert_eq!(status, 403, "{method} {url} with a {who}: {answer}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} refusals checked");
}

/// Valid keys are remembered for `key_cache_ttl` (an hour here). A key revoked outside this
/// server (the CLI, another instance on the same database) stops working within a key
/// revision poll all the same; removing a device through the API ends its keys at once,
/// however recently they were used.
#[tokio::test]
async fn sqlite_cached_keys_end_with_revocation() {
    let s = TestServer::start(Backend::Sqlite, "key_cache", long_key_cache()).await.expect("SQLite");
    cached_keys_end_with_revocation(s).await;
}

#[tokio::test]
async fn postgres_cached_keys_end_with_revocation() {
    let Some(s) = TestServer::start(Backend::Postgres, "key_cache", long_key_cache()).await else { return };
    cached_keys_end_with_revocation(s).await;
}

fn long_key_cache() -> ServerConfig {
    ServerConfig {
        key_cache_ttl: std::time::Duration::from_secs(3600),
        key_revision_poll: std::time::Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

async fn cached_keys_end_with_revocation(s: TestServer) {
    let health = json!({"is_healthy": true, "response_time_ms": 4});
    let (device, removed) = (unique("till-"), unique("till-"));
    let (key, removed_key) = (s.register(&device).await, s.register(&removed).await);
    let post = |device: String, key: String| {
        let (s, health) = (&s, &health);
        async move { s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(health)).await.0 }
    };
    assert_eq!(post(device.clone(), key.clone()).await, 200, "now remembered");

    let id = homepot_core::DeviceId::parse(&device).unwrap();
    let stored = s.store.keys(Some(&id)).await.expect("keys");
    s.store.revoke_key(stored[0].id, Some(&id), chrono::Utc::now()).await.expect("revoke in storage");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(post(device.clone(), key.clone()).await, 401, "revoked elsewhere: refused after a poll");

    assert_eq!(post(removed.clone(), removed_key.clone()).await, 200, "now remembered");
    let (status, _) = s.call(Method::DELETE, &format!("/api/v1/devices/{removed}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 204);
    assert_eq!(post(removed, removed_key).await, 401, "a removed device's key ends at once");
    s.shutdown().await;
}
