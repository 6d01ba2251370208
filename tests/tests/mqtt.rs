//! The container metrics MQTT bridge against the real local Mosquitto (127.0.0.1:1883, or
//! `HOMEPOT_TEST_MQTT_URL`). Skips with a notice when no broker answers.

use std::time::{Duration, Instant};

use homepot_http::{MqttConfig, ServerConfig};
use homepot_tests::{Backend, TestServer, container_data_message, unique};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

fn broker(test: &str) -> Option<MqttConfig> {
    let url = std::env::var("HOMEPOT_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_owned());
    let config = MqttConfig::from_url(&url).expect("valid MQTT URL");
    if std::net::TcpStream::connect((config.host.as_str(), config.port)).is_err() {
        eprintln!("SKIPPED {test}: no MQTT broker at {url}");
        return None;
    }
    Some(MqttConfig { client_id: unique("homepot-test-"), ..config })
}

/// A test client whose event loop runs in the background; incoming publishes are forwarded.
async fn test_client(config: &MqttConfig) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let options = MqttOptions::new(unique("test-client-"), config.host.clone(), config.port);
    let (client, mut events) = AsyncClient::new(options, 64);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    (client, rx)
}

/// Publishes `thing`'s data message, with its first originator renamed `originator`, until
/// the HTTP API shows that originator for `device`; returns its snapshot. Publishing again
/// covers a bridge that is still (re)subscribing.
async fn publish_until_seen(
    s: &TestServer,
    client: &AsyncClient,
    thing: &str,
    device: &str,
    originator: &str,
) -> Value {
    let mut message = container_data_message(thing);
    message["value"]["snapshot"][0]["originator"] = json!(originator);
    let path = format!("/api/v1/containers/metrics?originator={originator}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The client may be reconnecting too; a failed publish is simply tried again.
        let _ = client.publish(format!("e/tenant/{thing}"), QoS::AtLeastOnce, false, message.to_string()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, latest) = s.call(Method::GET, &path, Some(&s.admin_key), None).await;
        if let Some(found) =
            latest["snapshots"].as_array().and_then(|all| all.iter().find(|x| x["device_id"] == device).cloned())
        {
            return found;
        }
        assert!(Instant::now() < deadline, "{originator}: the bridge did not deliver");
    }
}

#[tokio::test]
async fn data_messages_on_the_broker_reach_the_http_api() {
    let Some(mqtt) = broker("data_messages_on_the_broker_reach_the_http_api") else { return };
    let s = TestServer::start(
        Backend::Sqlite,
        "mqtt",
        ServerConfig { mqtt: Some(mqtt.clone()), ..ServerConfig::default() },
    )
    .await
    .expect("SQLite");
    let device = format!("{}:device", unique("edge"));
    s.register(&device).await;
    let thing = format!("{device}:edge:containers");
    let (client, _) = test_client(&mqtt).await;
    client.publish(format!("e/tenant/{thing}"), QoS::AtLeastOnce, false, "not json").await.unwrap();

    publish_until_seen(&s, &client, &thing, &device, "Container:first").await;
    // The same message carried Container:test2, stored in the same write.
    let (_, latest) =
        s.call(Method::GET, "/api/v1/containers/metrics?originator=Container:test2", Some(&s.admin_key), None).await;
    let snapshot =
        latest["snapshots"].as_array().unwrap().iter().find(|x| x["device_id"] == device.as_str()).unwrap().clone();
    let cpu =
        snapshot["measurements"].as_array().unwrap().iter().find(|m| m["id"] == "cpu.utilization").unwrap().clone();
    assert_eq!(cpu["value"], 8.751566666666667);
    let (_, history) = s
        .call(
            Method::GET,
            &format!("/api/v1/metrics/history?name=container&tag=device_id:{device}"),
            Some(&s.admin_key),
            None,
        )
        .await;
    assert!(history["count"].as_u64().unwrap() >= 1, "stored durably: {history}");
    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    assert!(stats["mqtt_messages_rejected"].as_u64().unwrap() >= 1, "the malformed message was counted: {stats}");
    s.shutdown().await;
}

#[tokio::test]
async fn the_bridge_requests_metrics_when_it_connects() {
    let Some(mut mqtt) = broker("the_bridge_requests_metrics_when_it_connects") else { return };
    let thing = format!("{}:device:edge:containers", unique("edge"));
    let (client, mut incoming) = test_client(&mqtt).await;
    client.subscribe(format!("command//{thing}/req/#"), QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    mqtt.things = vec![thing.clone()];
    mqtt.frequency_ms = 2_000;
    mqtt.filters =
        vec![homepot_core::container::MetricsFilter { ids: vec!["cpu.*".into()], originator: String::new() }];
    let s = TestServer::start(
        Backend::Sqlite,
        "mqtt-request",
        ServerConfig { mqtt: Some(mqtt), ..ServerConfig::default() },
    )
    .await
    .expect("SQLite");
    let (topic, payload) =
        tokio::time::timeout(Duration::from_secs(20), incoming.recv()).await.expect("a request within 20 s").unwrap();
    assert!(topic.starts_with(&format!("command//{thing}/req/")) && topic.ends_with("/request"), "{topic}");
    let request =
        homepot_core::container::MetricsRequest::parse(&payload).expect("a container metrics request message");
    assert_eq!((request.thing_id.as_str(), request.frequency_ms), (thing.as_str(), 2_000));
    assert_eq!(request.filters[0].ids, ["cpu.*"]);
    let message: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(message["path"], "/features/Metrics/inbox/messages/request");
    assert_eq!(message["headers"]["correlation-id"], topic.split('/').nth(4).unwrap());
    // The device answers 204 on the response topic; the bridge takes it without complaint.
    let request_id = topic.split('/').nth(4).unwrap();
    client.publish(format!("command//{thing}/res/{request_id}/204"), QoS::AtLeastOnce, false, "{}").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.shutdown().await;
}

/// A private Mosquitto on its own port, so the test can stop and restart it.
struct PrivateBroker {
    process: std::process::Child,
}

impl PrivateBroker {
    fn start(port: u16) -> Option<Self> {
        let process = std::process::Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { process })
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn the_bridge_reconnects_and_resubscribes_after_a_broker_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(broker) = PrivateBroker::start(port) else {
        eprintln!("SKIPPED the_bridge_reconnects_and_resubscribes_after_a_broker_restart: no mosquitto binary");
        return;
    };
    let mqtt = MqttConfig {
        client_id: unique("homepot-restart-"),
        ..MqttConfig::from_url(&format!("mqtt://127.0.0.1:{port}")).unwrap()
    };
    let s = TestServer::start(
        Backend::Sqlite,
        "mqtt-restart",
        ServerConfig { mqtt: Some(mqtt.clone()), ..ServerConfig::default() },
    )
    .await
    .expect("SQLite");
    let device = format!("{}:device", unique("edge"));
    s.register(&device).await;
    let thing = format!("{device}:edge:containers");

    let (client, _) = test_client(&mqtt).await;
    publish_until_seen(&s, &client, &thing, &device, "Container:before").await;

    // The broker restarts without persistence: the bridge's session and subscriptions are gone.
    drop(broker);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _broker = PrivateBroker::start(port).expect("broker restarts");
    // The test client's event loop ends with the old broker; the bridge must reconnect alone.
    let (client, _) = test_client(&mqtt).await;
    publish_until_seen(&s, &client, &thing, &device, "Container:after").await;
    s.shutdown().await;
}
