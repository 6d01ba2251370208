//! The device registry over real HTTP.

use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    registry_lifecycle,
    registry_needs_an_admin_key,
    registrations_are_validated,
    the_fleet_pages_filters_and_sorts
);

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

    let (status, list) = s.call(Method::GET, &format!("/api/v1/devices?q={device}"), Some(&s.admin_key), None).await;
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

/// `GET /api/v1/devices` as a fleet page: latest figures, filters, sorting and cursors.
async fn the_fleet_pages_filters_and_sorts(s: &TestServer) {
    let prefix = unique("fleet-");
    let admin = Some(s.admin_key.as_str());
    let mut keys = Vec::new();
    for (n, zone) in ["north", "south", "north", "north"].iter().enumerate() {
        let request =
            json!({"device_id": format!("{prefix}-{n}"), "name": format!("Kiosk {n}"), "labels": {"zone": zone}});
        let (status, created) = s.call(Method::POST, "/api/v1/devices", admin, Some(&request)).await;
        assert_eq!(status, 201, "{created}");
        keys.push(created["api_key"].as_str().unwrap().to_owned());
    }
    // Devices 0-2 report; 3 never does.
    for (n, cpu, healthy) in [(0, 55.0, true), (1, 91.5, false), (2, 12.0, true)] {
        let check = json!({"is_healthy": healthy, "response_time_ms": 20, "system": {"cpu_percent": cpu, "memory_percent": 40.0}});
        let path = format!("/api/v1/devices/{prefix}-{n}/health");
        assert_eq!(s.call(Method::POST, &path, Some(&keys[n]), Some(&check)).await.0, 200);
    }
    let list = |query: String| {
        let path = format!("/api/v1/devices?q={prefix}&{query}");
        async move {
            let (status, body) = s.call(Method::GET, &path, admin, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap().to_owned()).collect()
    };
    let named = |ns: &[usize]| ns.iter().map(|n| format!("{prefix}-{n}")).collect::<Vec<_>>();

    let hottest = list("sort=-cpu_percent".to_owned()).await;
    assert_eq!(ids(&hottest), named(&[1, 0, 2, 3]), "highest CPU first, never-reported last");
    let top = &hottest["devices"][0];
    assert_eq!(top["latest"]["cpu_percent"], 91.5);
    assert_eq!(
        (top["latest"]["is_healthy"].clone(), top["latest"]["memory_percent"].clone()),
        (json!(false), json!(40.0))
    );
    assert!(top["latest"]["checked_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(top["state"], "unhealthy");
    assert!(hottest["devices"][3].get("latest").is_none());

    // Pages of two follow the same order.
    let first = list("sort=-cpu_percent&limit=2".to_owned()).await;
    assert_eq!(ids(&first), named(&[1, 0]));
    let cursor = first["next_cursor"].as_str().expect("more to come").to_owned();
    let second = list(format!("sort=-cpu_percent&limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), named(&[2, 3]));
    assert!(second.get("next_cursor").is_none(), "the last page: {second}");

    assert_eq!(ids(&list("healthy=false".to_owned()).await), named(&[1]));
    assert_eq!(ids(&list("state=online".to_owned()).await), named(&[0, 2]));
    assert_eq!(ids(&list("label=zone:north&sort=-name".to_owned()).await), named(&[3, 2, 0]));
    assert_eq!(ids(&list("sort=response_time_ms&limit=1".to_owned()).await), named(&[0]));

    let refused = |query: &str| {
        let path = format!("/api/v1/devices?q={prefix}&{query}");
        async move { s.call(Method::GET, &path, admin, None).await }
    };
    let (status, body) = refused("sort=colour").await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["query", "sort"])));
    let (status, body) = refused(&format!("sort=name&cursor={cursor}")).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["query", "cursor"])), "another order's cursor");
    let (status, _) = refused("cursor=not-a-cursor").await;
    assert_eq!(status, 422);
    let (status, _) = refused("label=nocolon").await;
    assert_eq!(status, 422);
    let (status, _) = refused("limit=0").await;
    assert_eq!(status, 422);
}
