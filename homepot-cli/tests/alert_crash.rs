//! Notifications survive a crash: the real binary is killed with SIGKILL while it retries
//! deliveries to a failing receiver, restarted on the same database, and then every
//! notification reaches the receiver, each firing alert's exactly once, and no alert fires
//! twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use homepot_tests::webhook::Webhook;
use serde_json::{Value, json};

mod common;

use common::free_port;

const ADMIN_KEY: &str = "alert-crash-admin-key";
const DEVICES: usize = 6;

fn serve(database: &str, port: u16) -> std::process::Child {
    common::serve(
        database,
        port,
        ADMIN_KEY,
        &[("HOMEPOT_HEARTBEAT_INTERVAL_SECONDS", "1"), ("HOMEPOT_ALERT_EVALUATION_SECONDS", "0.2")],
    )
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut request = client.request(method, url).header("X-API-Key", ADMIN_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_delivery_loses_no_notification_and_refires_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("alerts.db").display());
    let hook = Webhook::start().await;
    hook.answer_with(503);
    let client = reqwest::Client::new();

    let port = free_port();
    let mut server = serve(&database, port);
    let base = format!("http://127.0.0.1:{port}");
    call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/alerts/receivers"),
        Some(json!({"id": "hook", "url": hook.url()})),
    )
    .await;
    let rule = json!({"id": "silent", "kind": "absent", "heartbeats": 1, "severity": "critical"});
    call(&client, reqwest::Method::POST, format!("{base}/api/v1/alerts/rules"), Some(rule)).await;
    for n in 0..DEVICES {
        call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/v1/devices"),
            Some(json!({"device_id": format!("lost-{n}")})),
        )
        .await;
    }
    // Wait until every alert fires and deliveries are being retried, then kill mid-retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let firing = loop {
        let firing = call(&client, reqwest::Method::GET, format!("{base}/api/v1/alerts?state=firing"), None).await;
        let pending = call(&client, reqwest::Method::GET, format!("{base}/api/v1/alerts/notifications"), None).await;
        let retried = pending["notifications"].as_array().unwrap().iter().any(|n| n["attempts"].as_u64() > Some(1));
        if firing["count"] == DEVICES && retried {
            break firing;
        }
        assert!(Instant::now() < deadline, "alerts never fired: {firing}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    assert!(hook.received().is_empty(), "the receiver refused everything so far");

    hook.answer_with(0);
    let port = free_port();
    let mut restarted = serve(&database, port);
    let base = format!("http://127.0.0.1:{port}");
    let received = hook.wait_for(60, |r| r.len() >= DEVICES).await;
    // Time for a wrong re-fire to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = hook.received().len().max(received.len());
    let after = call(&client, reqwest::Method::GET, format!("{base}/api/v1/alerts?state=firing"), None).await;
    let notifications = call(&client, reqwest::Method::GET, format!("{base}/api/v1/alerts/notifications"), None).await;
    restarted.kill().expect("stop");
    restarted.wait().expect("reaped");

    let ids = |list: &Value, field: &str| -> Vec<String> {
        let mut ids: Vec<String> =
            list["alerts"].as_array().unwrap().iter().map(|a| a[field].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after, "id"), ids(&firing, "id"), "the same alerts fire after the restart: none lost, none new");
    let bodies = hook.received();
    let mut per_alert: BTreeMap<String, usize> = BTreeMap::new();
    for body in &bodies {
        assert_eq!(body["status"], "firing");
        *per_alert.entry(body["alert"]["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(received, DEVICES, "{bodies:?}");
    assert!(per_alert.values().all(|n| *n == 1) && per_alert.len() == DEVICES, "{per_alert:?}");
    let states: Vec<&str> =
        notifications["notifications"].as_array().unwrap().iter().map(|n| n["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["delivered"; DEVICES], "{notifications}");
    eprintln!("SIGKILL during delivery: {DEVICES} notifications delivered once each after the restart");
}
