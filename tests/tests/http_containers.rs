//! Container metrics data messages over real HTTP.

use homepot_tests::{TestServer, container_data_message, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(documented_data_message_is_stored_and_served, container_messages_are_validated_and_authorised);

fn data_message(namespace: &str, name: &str) -> Value {
    container_data_message(&format!("{namespace}:{name}:edge:containers"))
}

async fn documented_data_message_is_stored_and_served(s: &TestServer) {
    let (namespace, name) = (unique("edge"), "device");
    let device = format!("{namespace}:{name}");
    let key = s.register(&device).await;
    let (status, answer) =
        s.call(Method::POST, "/api/v1/containers/metrics", Some(&key), Some(&data_message(&namespace, name))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"accepted": 9, "message": "Accepted 9 measurements", "device_id": device}));

    let (_, latest) =
        s.call(Method::GET, "/api/v1/containers/metrics?originator=Container:test2", Some(&s.admin_key), None).await;
    // A shared database brings other runs' devices back into the view: look at this one's.
    let snapshots: Vec<&Value> =
        latest["snapshots"].as_array().unwrap().iter().filter(|s| s["device_id"] == device.as_str()).collect();
    assert_eq!(snapshots.len(), 1, "{latest}");
    assert!(latest["snapshots"].as_array().unwrap().iter().all(|s| s["originator"] == "Container:test2"));
    let ids: Vec<&str> =
        snapshots[0]["measurements"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cpu.utilization", "io.writeBytes", "gpu.custom"], "unknown ids are kept");

    let text =
        s.client.get(s.url("/metrics")).header("X-API-Key", &s.admin_key).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(&format!(
            "container_cpu_utilization{{device_id=\"{device}\",originator=\"Container:test2\"}} 8.751566666666667"
        )),
        "{text}"
    );
    let (_, history) = s
        .call(
            Method::GET,
            &format!("/api/v1/metrics/history?name=container&tag=device_id:{device}"),
            Some(&s.admin_key),
            None,
        )
        .await;
    assert_eq!(history["count"], 2, "one stored point per originator");
}

async fn container_messages_are_validated_and_authorised(s: &TestServer) {
    let namespace = unique("edge");
    let device = format!("{namespace}:device");
    let key = s.register(&device).await;
    let mut bad = data_message(&namespace, "device");
    bad["value"]["snapshot"][0]["measurements"][1]["value"] = json!("lots");
    let (status, answer) = s.call(Method::POST, "/api/v1/containers/metrics", Some(&key), Some(&bad)).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "value", "snapshot", 0, "measurements", 1, "value"]));
    // A request message is no data: nothing of it is stored.
    let mut request = data_message(&namespace, "device");
    request["path"] = json!("/features/Metrics/inbox/messages/request");
    let (status, answer) = s.call(Method::POST, "/api/v1/containers/metrics", Some(&key), Some(&request)).await;
    assert_eq!((status, answer["detail"][0]["loc"].clone()), (422, json!(["body", "path"])), "{answer}");
    let (_, history) = s
        .call(
            Method::GET,
            &format!("/api/v1/metrics/history?name=container&tag=device_id:{device}"),
            Some(&s.admin_key),
            None,
        )
        .await;
    assert_eq!(history["count"], 0, "{history}");
    let other = data_message(&unique("other"), "device");
    assert_eq!(s.call(Method::POST, "/api/v1/containers/metrics", Some(&key), Some(&other)).await.0, 403);
    let (status, _) = s.call(Method::POST, "/api/v1/containers/metrics", Some(&s.admin_key), Some(&other)).await;
    assert_eq!(status, 404, "the thing's device must be registered");
    assert_eq!(s.call(Method::POST, "/api/v1/containers/metrics", None, Some(&other)).await.0, 401);
}
