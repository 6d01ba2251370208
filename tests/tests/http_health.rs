//! The device health API over real HTTP: `POST/GET /api/v1/devices/{device_id}/health`.

use chrono::DateTime;
use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    documented_examples_answer_as_documented,
    unknown_device_is_404,
    missing_field_is_the_documented_422,
    every_bad_field_is_listed,
    malformed_json_is_422_not_500,
    keys_are_checked,
    history_window_is_validated,
);

fn health_path(device: &str) -> String {
    format!("/api/v1/devices/{device}/health")
}

fn full_metrics() -> Value {
    json!({
        "is_healthy": true, "response_time_ms": 150, "status_code": 200,
        "system": {"cpu_percent": 65.5, "memory_percent": 80.0, "disk_percent": 60.0, "uptime_seconds": 86400},
        "app_metrics": {"app_version": "1.2.3", "transactions_count": 150, "errors_count": 2},
        "network": {"latency_ms": 45}
    })
}

fn unhealthy() -> Value {
    json!({
        "is_healthy": false, "response_time_ms": 5000, "status_code": 500,
        "error_message": "Database connection timeout",
        "system": {"cpu_percent": 95.0, "memory_percent": 98.0}
    })
}

async fn documented_examples_answer_as_documented(s: &TestServer) {
    let device = unique("pos-terminal-");
    let key = s.register(&device).await;
    let mut ids = Vec::new();
    for example in [json!({"is_healthy": true, "response_time_ms": 100}), full_metrics(), unhealthy()] {
        let (status, body) = s.call(Method::POST, &health_path(&device), Some(&key), Some(&example)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["message"], "Health check recorded successfully");
        assert_eq!(body["device_id"], device.as_str());
        let timestamp = body["timestamp"].as_str().expect("timestamp");
        assert!(timestamp.ends_with('Z') && DateTime::parse_from_rfc3339(timestamp).is_ok(), "{timestamp}");
        ids.push(body["health_check_id"].as_i64().expect("integer id"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let (status, history) = s.call(Method::GET, &health_path(&device), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["count"], 3);
    let checks = history["health_checks"].as_array().expect("array");
    let got: Vec<i64> = checks.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids.iter().rev().copied().collect::<Vec<_>>(), "newest first");
    assert_eq!(checks[0]["is_healthy"], false);
    assert_eq!(checks[0]["error_message"], "Database connection timeout");
    assert_eq!(checks[0]["response_data"]["system"]["cpu_percent"], 95.0);
    assert_eq!(checks[1]["response_data"]["app_metrics"]["transactions_count"], 150);
    assert_eq!(checks[1]["response_data"]["network"]["latency_ms"], 45);
    assert_eq!(checks[2]["status_code"], 200, "status_code defaults to 200");

    let (status, view) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200);
    assert_eq!(view["latest_health"]["id"].as_i64(), Some(ids[2]));
}

async fn unknown_device_is_404(s: &TestServer) {
    let device = unique("pos-terminal-");
    let (status, body) = s.call(Method::POST, &health_path(&device), Some(&s.admin_key), Some(&full_metrics())).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"detail": format!("Device '{device}' not found")}));
    let (status, _) = s.call(Method::GET, &health_path(&device), Some(&s.admin_key), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        s.call(Method::POST, &health_path("not%20valid"), Some(&s.admin_key), Some(&full_metrics())).await;
    assert_eq!(status, 404);
}

async fn missing_field_is_the_documented_422(s: &TestServer) {
    let device = unique("pos-");
    let key = s.register(&device).await;
    let (status, body) =
        s.call(Method::POST, &health_path(&device), Some(&key), Some(&json!({"response_time_ms": 100}))).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "is_healthy"], "msg": "field required", "type": "value_error.missing"}]})
    );
}

async fn every_bad_field_is_listed(s: &TestServer) {
    let device = unique("pos-");
    let key = s.register(&device).await;
    let bad = json!({
        "is_healthy": "yes", "response_time_ms": 1.5, "status_code": 99, "endpoint": "x".repeat(201),
        "system": {"cpu_percent": 101, "memory_percent": -1, "disk_used_gb": 300, "disk_total_gb": 200},
        "app_metrics": {"errors_count": -2},
        "network": "fast"
    });
    let (status, body) = s.call(Method::POST, &health_path(&device), Some(&key), Some(&bad)).await;
    assert_eq!(status, 422, "{body}");
    let got: Vec<(String, String)> = body["detail"]
        .as_array()
        .expect("detail list")
        .iter()
        .map(|e| {
            let loc: Vec<String> =
                e["loc"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            (loc.join("."), e["type"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected = [
        ("body.is_healthy", "type_error.bool"),
        ("body.response_time_ms", "type_error.integer"),
        ("body.network", "type_error.dict"),
        ("body.status_code", "value_error.number.not_ge"),
        ("body.endpoint", "value_error.any_str.max_length"),
        ("body.system.cpu_percent", "value_error.number.not_le"),
        ("body.system.memory_percent", "value_error.number.not_ge"),
        ("body.system.disk_used_gb", "value_error"),
        ("body.app_metrics.errors_count", "value_error.number.not_ge"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(l, t)| ((*l).to_owned(), (*t).to_owned())).collect();
    assert_eq!(got, expected);
    let (_, history) = s.call(Method::GET, &health_path(&device), Some(&s.admin_key), None).await;
    assert_eq!(history["count"], 0, "nothing invalid is stored");
}

async fn malformed_json_is_422_not_500(s: &TestServer) {
    let device = unique("pos-");
    let key = s.register(&device).await;
    for raw in ["{\"is_healthy\": tru", "", "[1, 2]", "null"] {
        let response = s
            .client
            .post(s.url(&health_path(&device)))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), 422, "for {raw:?}");
        let body: Value = response.json().await.expect("JSON error body");
        assert_eq!(body["detail"][0]["loc"], json!(["body"]), "for {raw:?}: {body}");
    }
}

async fn keys_are_checked(s: &TestServer) {
    let (a, b) = (unique("pos-a-"), unique("pos-b-"));
    let key_a = s.register(&a).await;
    s.register(&b).await;
    let ok = json!({"is_healthy": true, "response_time_ms": 1});
    let (status, body) = s.call(Method::POST, &health_path(&a), None, Some(&ok)).await;
    assert_eq!((status, body["detail"].is_string()), (401, true), "{body}");
    let (status, body) = s.call(Method::POST, &health_path(&a), Some("hpk_wrong"), Some(&ok)).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"detail": "Invalid API key"}));
    let (status, body) = s.call(Method::POST, &health_path(&b), Some(&key_a), Some(&ok)).await;
    assert_eq!(status, 403, "a device key writes only its own device: {body}");
    let (status, _) = s.call(Method::POST, &health_path(&a), Some(&key_a), Some(&ok)).await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, &health_path(&a), Some(&key_a), None).await;
    assert_eq!(status, 403, "device keys read nothing");
    let (status, _) = s.call(Method::GET, &health_path(&a), None, None).await;
    assert_eq!(status, 401);
}

async fn history_window_is_validated(s: &TestServer) {
    let device = unique("pos-");
    s.register(&device).await;
    for (query, loc_field, kind) in [
        ("hours=0", "hours", "value_error.number.not_ge"),
        ("hours=721", "hours", "value_error.number.not_le"),
        ("hours=abc", "hours", "type_error.integer"),
        ("limit=0", "limit", "value_error.number.not_ge"),
    ] {
        let (status, body) =
            s.call(Method::GET, &format!("{}?{query}", health_path(&device)), Some(&s.admin_key), None).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", loc_field]), "{query}");
        assert_eq!(body["detail"][0]["type"], kind, "{query}");
    }
    let (status, body) =
        s.call(Method::GET, &format!("{}?hours=720&limit=5", health_path(&device)), Some(&s.admin_key), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["time_range_hours"], 720);
}
