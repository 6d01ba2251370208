//! Analytics over real HTTP: collection, queries, the request log and device
//! states, on every backend.

use std::sync::Arc;
use std::time::Duration;

use homepot_http::ServerConfig;
use homepot_tests::gated::Gate;
use homepot_tests::{Backend, TestServer, on_every_backend, open_store, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    collection_endpoints_store_records,
    collection_bodies_are_validated,
    collection_roles,
    queries_validate_hours_and_keys,
    requests_are_logged_by_route_template,
);

/// Polls `path` with the admin key until `done` holds (the request log and the state
/// sweep are asynchronous); panics with the last body after 10 s.
async fn eventually(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, body) = s.call(Method::GET, path, Some(&s.admin_key), None).await;
        if status == 200 && done(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never satisfied the condition; last answer: {last}");
}

async fn collection_endpoints_store_records(s: &TestServer) {
    let admin = Some(s.admin_key.as_str());
    let activity = json!({"activity_type": "search", "page_url": "/dashboard", "search_query": "device status",
                          "extra_data": {"results_count": 5}});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/user-activity", admin, Some(&activity)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["success"].clone(), body["message"].clone()), (json!(true), json!("Activity logged")));
    assert!(body["id"].is_i64());

    let category = unique("frontend-");
    for severity in ["error", "error", "critical"] {
        let error = json!({"category": category, "severity": severity, "error_message": "x is undefined",
                           "stack_trace": "at f (app.js:1:1)", "context": {"url": "/", "user_agent": "UA"}});
        let (status, body) = s.call(Method::POST, "/api/v1/analytics/error", admin, Some(&error)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, trends) =
        s.call(Method::GET, &format!("/api/v1/metrics/error-trends?category={category}"), admin, None).await;
    assert_eq!(
        trends,
        json!({"success": true, "time_range_hours": 24, "errors": [
            {"category": category, "severity": "critical", "count": 1},
            {"category": category, "severity": "error", "count": 2}]})
    );
    // Per day: the same counts, each with its bucket's start (the three are seconds apart,
    // so at most a midnight separates them).
    let path = format!("/api/v1/metrics/error-trends?category={category}&bucket=1d");
    let (_, daily) = s.call(Method::GET, &path, admin, None).await;
    let errors = daily["errors"].as_array().unwrap();
    assert_eq!(errors.iter().map(|e| e["count"].as_u64().unwrap()).sum::<u64>(), 3, "{daily}");
    assert!(errors.iter().all(|e| e["bucket_start"].as_str().unwrap().ends_with("T00:00:00.000Z")), "{daily}");
    let (status, body) = s.call(Method::GET, &format!("{path}x"), admin, None).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["query", "bucket"])));

    let job_type = unique("device_restart-");
    for (status, duration) in [("success", 5000), ("success", 3000), ("failed", 1000), ("timeout", 30000)] {
        let job = json!({"job_id": unique("job-"), "job_type": job_type, "device_id": "device-123", "status": status,
                         "duration_ms": duration, "initiated_by": "user@example.com", "metadata": {"attempt": 1}});
        let (code, body) = s.call(Method::POST, "/api/v1/analytics/job-outcome", admin, Some(&job)).await;
        assert_eq!(code, 201, "{body}");
    }
    let (_, jobs) =
        s.call(Method::GET, &format!("/api/v1/metrics/job-outcomes?hours=168&job_type={job_type}"), admin, None).await;
    assert_eq!(jobs["time_range_hours"], 168);
    assert_eq!(
        jobs["outcomes"],
        json!([
            {"job_type": job_type, "status": "failed", "count": 1, "avg_duration_ms": 1000.0},
            {"job_type": job_type, "status": "success", "count": 2, "avg_duration_ms": 4000.0},
            {"job_type": job_type, "status": "timeout", "count": 1, "avg_duration_ms": 30000.0}])
    );
    assert_eq!(
        jobs["success_rates"],
        json!([{"job_type": job_type, "total": 4, "succeeded": 2, "success_rate_percent": 50.0}])
    );

    let device = unique("device-");
    s.register(&device).await;
    let metadata = json!({"last_seen": "2025-12-01T10:00:00Z", "nested": {"list": [1, "two", null]}});
    for (previous, new) in [("online", "offline"), ("offline", "maintenance")] {
        let mut change = json!({"device_id": device, "previous_state": previous, "new_state": new,
                                "reason": "Network timeout", "metadata": metadata});
        if new == "maintenance" {
            change["changed_by"] = json!("ops@example.com");
        }
        let (status, body) = s.call(Method::POST, "/api/v1/analytics/device-state-change", admin, Some(&change)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, history) =
        s.call(Method::GET, &format!("/api/v1/metrics/device-state-history/{device}?hours=720"), admin, None).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!((history["device_id"].clone(), history["time_range_hours"].clone()), (json!(device), json!(720)));
    let entries = history["history"].as_array().expect("history");
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0]["new_state"].clone(), entries[1]["new_state"].clone()),
        (json!("maintenance"), json!("offline"))
    );
    assert_eq!(entries[0]["metadata"], metadata, "metadata is returned intact");
    // What a client posts as `changed_by` is kept; the recording key is told apart.
    assert_eq!(entries[0]["changed_by"], "ops@example.com", "{history}");
    assert!(entries[0]["recorded_by"].as_str().unwrap().starts_with("key:"), "{history}");
    assert!(entries[1]["changed_by"].as_str().unwrap().starts_with("key:"), "without one, the key: {history}");
    assert_eq!(entries[1]["recorded_by"], entries[0]["recorded_by"]);
    let (_, view) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), admin, None).await;
    assert_eq!(view["state"], "maintenance");
}

async fn collection_bodies_are_validated(s: &TestServer) {
    let admin = Some(s.admin_key.as_str());
    let (status, body) =
        s.call(Method::POST, "/api/v1/analytics/error", admin, Some(&json!({"severity": "bad"}))).await;
    assert_eq!(status, 422);
    let locs: Vec<Value> = body["detail"].as_array().unwrap().iter().map(|e| e["loc"].clone()).collect();
    assert_eq!(locs, vec![json!(["body", "category"]), json!(["body", "severity"]), json!(["body", "error_message"])]);
    assert_eq!(body["detail"][1]["type"], "type_error.enum");

    let bad_job = json!({"job_id": "j", "job_type": "restart", "status": "done", "retry_count": -1});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/job-outcome", admin, Some(&bad_job)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"].as_array().unwrap().len(), 2, "{body}");

    let (status, body) = s.call(Method::POST, "/api/v1/analytics/user-activity", admin, Some(&json!({}))).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["body", "activity_type"])));
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/device-state-change", admin, Some(&json!([1]))).await;
    assert_eq!(status, 422);
    let response = s
        .client
        .post(s.url("/api/v1/analytics/error"))
        .header("X-API-Key", &s.admin_key)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    let unknown = json!({"device_id": unique("ghost-"), "new_state": "offline"});
    let (status, body) = s.call(Method::POST, "/api/v1/analytics/device-state-change", admin, Some(&unknown)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["detail"], format!("Device '{}' not found", unknown["device_id"].as_str().unwrap()));
}

async fn collection_roles(s: &TestServer) {
    let (mine, other) = (unique("till-"), unique("till-"));
    let key = s.register(&mine).await;
    s.register(&other).await;
    let key = Some(key.as_str());
    let own_change = json!({"device_id": mine, "new_state": "maintenance"});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/device-state-change", key, Some(&own_change)).await;
    assert_eq!(status, 201);
    let other_change = json!({"device_id": other, "new_state": "offline"});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/device-state-change", key, Some(&other_change)).await;
    assert_eq!(status, 403);

    let job_type = unique("update-");
    let job = json!({"job_id": "j-1", "job_type": job_type, "status": "success"});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/job-outcome", key, Some(&job)).await;
    assert_eq!(status, 201, "a device key's job defaults to its own device");
    let foreign_job = json!({"job_id": "j-2", "job_type": job_type, "status": "failed", "device_id": other});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/job-outcome", key, Some(&foreign_job)).await;
    assert_eq!(status, 403);
    let foreign_error = json!({"category": "api", "severity": "info", "error_message": "m", "device_id": other});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/error", key, Some(&foreign_error)).await;
    assert_eq!(status, 403);
    let own_error = json!({"category": "api", "severity": "info", "error_message": "m"});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/error", key, Some(&own_error)).await;
    assert_eq!(status, 201);
    let activity = json!({"activity_type": "click"});
    let (status, _) = s.call(Method::POST, "/api/v1/analytics/user-activity", key, Some(&activity)).await;
    assert_eq!(status, 201);

    for path in [
        "/api/v1/analytics/user-activity",
        "/api/v1/analytics/error",
        "/api/v1/analytics/device-state-change",
        "/api/v1/analytics/job-outcome",
    ] {
        let (status, _) = s.call(Method::POST, path, None, Some(&activity)).await;
        assert_eq!(status, 401, "{path} without a key");
        let (status, _) = s.call(Method::POST, path, Some("not-a-key"), Some(&activity)).await;
        assert_eq!(status, 401, "{path} with an unknown key");
    }
}

async fn queries_validate_hours_and_keys(s: &TestServer) {
    let device = unique("pos-");
    let device_key = s.register(&device).await;
    let admin = Some(s.admin_key.as_str());
    for (path, max) in [
        ("/api/v1/metrics/api-performance".to_owned(), 168),
        ("/api/v1/metrics/job-outcomes".to_owned(), 168),
        ("/api/v1/metrics/error-trends".to_owned(), 168),
        (format!("/api/v1/metrics/device-state-history/{device}"), 720),
    ] {
        let (status, body) = s.call(Method::GET, &path, admin, None).await;
        assert_eq!((status, body["time_range_hours"].clone(), body["success"].clone()), (200, json!(24), json!(true)));
        let (status, _) = s.call(Method::GET, &format!("{path}?hours={max}"), admin, None).await;
        assert_eq!(status, 200);
        for bad in ["0".to_owned(), (max + 1).to_string(), "abc".to_owned(), "-1".to_owned()] {
            let (status, body) = s.call(Method::GET, &format!("{path}?hours={bad}"), admin, None).await;
            assert_eq!(status, 422, "{path}?hours={bad}: {body}");
            assert_eq!(body["detail"][0]["loc"], json!(["query", "hours"]), "{body}");
        }
        let (status, _) = s.call(Method::GET, &path, None, None).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = s.call(Method::GET, &path, Some(&device_key), None).await;
        assert_eq!(status, 403, "{path}");
    }
    let (status, body) = s.call(Method::GET, "/api/v1/metrics/device-state-history/no-such-device", admin, None).await;
    assert_eq!((status, body), (404, json!({"detail": "Device 'no-such-device' not found"})));
}

async fn requests_are_logged_by_route_template(s: &TestServer) {
    let device = unique("pos-");
    let key = s.register(&device).await;
    let admin = Some(s.admin_key.as_str());
    let path = "/api/v1/metrics/api-performance?endpoint=/api/v1/devices/%7Bdevice_id%7D";
    // A database shared with earlier runs already holds logs of this route: count from them.
    let counts = |body: &Value| {
        body["metrics"].as_array().and_then(|m| m.iter().find(|e| e["method"] == "GET")).map_or((0, 0), |get| {
            (get["request_count"].as_u64().unwrap_or(0), get["error_count"].as_u64().unwrap_or(0))
        })
    };
    let (_, before) = s.call(Method::GET, path, admin, None).await;
    let (requests_before, errors_before) = counts(&before);
    for _ in 0..3 {
        let (status, _) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), admin, None).await;
        assert_eq!(status, 200);
        let (status, _) = s.call(Method::GET, &format!("/api/v1/devices/{}", unique("ghost-")), admin, None).await;
        assert_eq!(status, 404);
    }
    let health = json!({"is_healthy": true, "response_time_ms": 12});
    let (status, _) =
        s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(&health)).await;
    assert_eq!(status, 200);

    let body = eventually(s, path, |b| {
        let (requests, errors) = counts(b);
        requests >= requests_before + 6 && errors >= errors_before + 3
    })
    .await;
    let metrics = body["metrics"].as_array().unwrap();
    let get = metrics.iter().find(|m| m["method"] == "GET").expect("GET is logged");
    assert_eq!(get["endpoint"], "/api/v1/devices/{device_id}");
    let (min, avg, p95, max) = (
        get["min_response_time_ms"].as_f64().unwrap(),
        get["avg_response_time_ms"].as_f64().unwrap(),
        get["p95_response_time_ms"].as_f64().unwrap(),
        get["max_response_time_ms"].as_f64().unwrap(),
    );
    assert!(min <= avg && avg <= max && min <= p95 && p95 <= max, "{get}");

    let (_, all) = s.call(Method::GET, "/api/v1/metrics/api-performance?hours=1", admin, None).await;
    let endpoints: Vec<(&str, &str)> = all["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["method"].as_str().unwrap(), m["endpoint"].as_str().unwrap()))
        .collect();
    assert!(endpoints.contains(&("POST", "/api/v1/devices")), "{endpoints:?}");
    assert!(!endpoints.contains(&("POST", "/api/v1/devices/{device_id}/health")), "ingest is skipped: {endpoints:?}");
    assert!(!endpoints.iter().any(|(_, e)| e.contains(&device)), "raw paths are never logged: {endpoints:?}");
}

fn fast_heartbeats() -> ServerConfig {
    ServerConfig { heartbeat_interval: Duration::from_millis(200), missed_heartbeats: 2, ..ServerConfig::default() }
}

mod states {
    use super::*;

    on_every_backend!(config = fast_heartbeats; device_state_follows_health_checks_and_silence);
}

async fn device_state_follows_health_checks_and_silence(s: &TestServer) {
    let device = unique("till-");
    let key = s.register(&device).await;
    let post = |healthy: bool| {
        let body = json!({"is_healthy": healthy, "response_time_ms": 5, "error_message": if healthy { Value::Null } else { json!("disk full") }});
        let path = format!("/api/v1/devices/{device}/health");
        let key = key.clone();
        async move {
            let (status, body) = s.call(Method::POST, &path, Some(&key), Some(&body)).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    post(true).await;
    post(true).await;
    post(false).await;
    let history_path = format!("/api/v1/metrics/device-state-history/{device}");
    let states = |b: &Value| -> Vec<String> {
        b["history"].as_array().unwrap().iter().map(|h| h["new_state"].as_str().unwrap().to_owned()).collect()
    };
    let body = eventually(s, &history_path, |b| states(b).first().map(String::as_str) == Some("offline")).await;
    assert_eq!(states(&body), ["offline", "unhealthy", "online"]);
    let history = body["history"].as_array().unwrap();
    assert_eq!(history[1]["reason"], "health check reported unhealthy: disk full");
    assert_eq!(history[2]["previous_state"], Value::Null);
    assert!(history.iter().all(|h| h["changed_by"] == "system" && h["recorded_by"] == "system"));
    assert!(history[0]["reason"].as_str().unwrap().starts_with("no health check for"), "{body}");

    post(true).await;
    let (_, body) = s.call(Method::GET, &history_path, Some(&s.admin_key), None).await;
    assert_eq!(states(&body)[0], "online");
    assert_eq!(body["history"][0]["reason"], "health check received after silence");
    let (_, view) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), Some(&s.admin_key), None).await;
    assert_eq!(view["state"], "online");
}

/// A request-log store that never answers slows no request: the queue fills, further logs
/// are dropped and counted, and once the store answers again logging resumes.
#[tokio::test]
async fn a_stalled_analytics_store_blocks_no_request() {
    let (store, dir) = open_store(Backend::Sqlite, "stalled_analytics").await.expect("SQLite");
    let (gated, gate) = Gate::around(Arc::new(store));
    let mut config = ServerConfig::default();
    config.analytics.queue_capacity = 4;
    config.analytics.skip = Vec::new();
    let s = TestServer::start_on(gated, dir, config).await;
    let device = unique("pos-");
    let key = s.register(&device).await;
    let health = json!({"is_healthy": true, "response_time_ms": 3});
    for _ in 0..50 {
        let (status, _) = s.call(Method::GET, "/api/v1/devices", Some(&s.admin_key), None).await;
        assert_eq!(status, 200);
        let (status, _) =
            s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(&health)).await;
        assert_eq!(status, 200, "ingest goes on while the request log is stuck");
    }
    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    let dropped = stats["analytics_requests_dropped"].as_u64().unwrap();
    assert!(dropped >= 90, "most logs were dropped, not waited for: {stats}");
    assert_eq!(stats["analytics_requests_logged"], 0);

    gate.open();
    let _ = eventually(&s, "/api/v1/stats", |b| b["analytics_requests_logged"].as_u64() > Some(0)).await;
    s.shutdown().await;
}

/// `ANALYTICS_ENABLED=false`: no request is logged and the collection endpoints answer 404;
/// the queries still answer from what is stored.
#[tokio::test]
async fn analytics_can_be_turned_off() {
    let mut config = ServerConfig::default();
    config.analytics.enabled = false;
    config.analytics.skip = Vec::new();
    let s = TestServer::start(Backend::Sqlite, "analytics_off", config).await.expect("SQLite");
    let admin = Some(s.admin_key.as_str());
    let (status, body) =
        s.call(Method::POST, "/api/v1/analytics/user-activity", admin, Some(&json!({"activity_type": "click"}))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("ANALYTICS_ENABLED"), "{body}");
    for _ in 0..5 {
        s.call(Method::GET, "/api/v1/devices", admin, None).await;
    }
    let (status, perf) = s.call(Method::GET, "/api/v1/metrics/api-performance", admin, None).await;
    assert_eq!((status, perf["metrics"].clone()), (200, json!([])));
    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    assert_eq!(
        (stats["analytics_requests_logged"].clone(), stats["analytics_requests_dropped"].clone()),
        (json!(0), json!(0))
    );
    s.shutdown().await;
}

/// The server's retention job deletes analytics older than the retention period on its own.
#[tokio::test]
async fn the_retention_job_runs_in_the_server() {
    use homepot_core::analytics::StateChange;
    use homepot_storage::AnalyticsStore;
    let (store, dir) = open_store(Backend::Sqlite, "retention_job").await.expect("SQLite");
    let change = |hours_ago: i64| StateChange {
        timestamp: chrono::Utc::now() - chrono::TimeDelta::hours(hours_ago),
        device_id: "pos-retained".to_owned(),
        previous_state: None,
        new_state: "online".to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: Some("system".to_owned()),
        reason: None,
        metadata: serde_json::Map::new(),
    };
    store.insert_state_change(&change(5)).await.expect("old");
    store.insert_state_change(&change(0)).await.expect("recent");
    let mut config = ServerConfig::default();
    config.analytics.retention = Some(Duration::from_secs(3600));
    let s = TestServer::start_on(Arc::new(store), dir, config).await;
    s.register("pos-retained").await;
    let body = eventually(&s, "/api/v1/metrics/device-state-history/pos-retained?hours=720", |b| {
        b["history"].as_array().is_some_and(|h| h.len() == 1)
    })
    .await;
    assert_eq!(body["history"].as_array().unwrap().len(), 1, "only the recent change is kept");
    s.shutdown().await;
}

/// Fields answered as `null` are documented as nullable, so clients generated from the
/// document accept them (schemathesis found them undeclared).
#[test]
fn null_answers_are_documented_nullable() {
    let spec: Value = serde_json::from_str(&homepot_http::openapi_json()).expect("JSON");
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in
        [("StateChangeView", "previous_state"), ("StateChangeView", "reason"), ("JobOutcomeCount", "avg_duration_ms")]
    {
        assert_eq!(schemas[schema]["properties"][field]["nullable"], true, "{schema}.{field}");
    }
}
