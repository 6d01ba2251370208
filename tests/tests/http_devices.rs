//! The device registry over real HTTP.

use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::json;

on_every_backend!(registry_lifecycle, registry_needs_an_admin_key, registrations_are_validated);

async fn registry_lifecycle(s: &TestServer) {
    let device = unique("pos-terminal-");
    let request =
        json!({"device_id": device, "name": "Till 1", "device_type": "pos-terminal", "labels": {"zone": "zone-1"}});
    let (status, created) = s.call(Method::POST, "/api/v1/devices", Some(&s.admin_key), Some(&request)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["device_id"], device.as_str());
    assert_eq!(created["labels"]["zone"], "zone-1");
    let key = created["api_key"].as_str().expect("key shown once").to_owned();
    assert!(key.starts_with("hpk_") && key.len() == 68, "{key}");

    let (status, body) = s.call(Method::POST, "/api/v1/devices", Some(&s.admin_key), Some(&request)).await;
    assert_eq!(status, 409, "{body}");

    let (status, list) = s.call(Method::GET, "/api/v1/devices", Some(&s.admin_key), None).await;
    assert_eq!(status, 200);
    assert!(list["devices"].as_array().unwrap().iter().any(|d| d["device_id"] == device.as_str()));
    assert!(list["devices"].as_array().unwrap().iter().all(|d| d.get("api_key").is_none()), "keys are never listed");

    let path = format!("/api/v1/devices/{device}");
    let (status, view) = s.call(Method::GET, &path, Some(&s.admin_key), None).await;
    assert_eq!(status, 200);
    assert_eq!(view["name"], "Till 1");
    assert!(view.get("latest_health").is_none());

    let (status, _) = s.call(Method::DELETE, &path, Some(&s.admin_key), None).await;
    assert_eq!(status, 204);
    let (status, body) = s.call(Method::GET, &path, Some(&s.admin_key), None).await;
    assert_eq!((status, body), (404, json!({"detail": format!("Device '{device}' not found")})));
    let (status, _) = s.call(Method::DELETE, &path, Some(&s.admin_key), None).await;
    assert_eq!(status, 404);
    let health = json!({"is_healthy": true, "response_time_ms": 1});
    let (status, _) = s.call(Method::POST, &format!("{path}/health"), Some(&key), Some(&health)).await;
    assert_eq!(status, 401, "a removed device's key is revoked with it");
}

async fn registry_needs_an_admin_key(s: &TestServer) {
    let device = unique("pos-");
    let device_key = s.register(&device).await;
    let request = json!({"device_id": unique("other-")});
    let (status, _) = s.call(Method::POST, "/api/v1/devices", None, Some(&request)).await;
    assert_eq!(status, 401);
    let (status, _) = s.call(Method::POST, "/api/v1/devices", Some("nope"), Some(&request)).await;
    assert_eq!(status, 401);
    let (status, body) = s.call(Method::POST, "/api/v1/devices", Some(&device_key), Some(&request)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = s.call(Method::DELETE, &format!("/api/v1/devices/{device}"), Some(&device_key), None).await;
    assert_eq!(status, 403);
    let (status, _) = s.call(Method::GET, "/api/v1/devices", Some(&device_key), None).await;
    assert_eq!(status, 403);
    let (status, _) = s.call(Method::GET, &format!("/api/v1/devices/{device}"), None, None).await;
    assert_eq!(status, 401);
}

async fn registrations_are_validated(s: &TestServer) {
    for (body, loc) in [
        (json!({}), json!(["body", "device_id"])),
        (json!({"device_id": "has space"}), json!(["body", "device_id"])),
        (json!({"device_id": "ok", "labels": {"zone": 1}}), json!(["body", "labels", "zone"])),
        (json!({"device_id": "ok", "name": 7}), json!(["body", "name"])),
    ] {
        let (status, answer) = s.call(Method::POST, "/api/v1/devices", Some(&s.admin_key), Some(&body)).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{body}");
    }
}
