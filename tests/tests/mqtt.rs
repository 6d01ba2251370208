//! The container metrics MQTT bridge against the real local Mosquitto (127.0.0.1:1883, or
//! `HOMEPOT_TEST_MQTT_URL`). Skips with a notice when no broker answers.

use std::time::{Duration, Instant};

use homepot_http::ServerConfig;
use homepot_mqtt::MqttConfig;
use homepot_tests::{Backend, TestServer, container_data_message, unique};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, Packet, QoS};
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
/// It reaches the broker as the bridge does (TLS and credentials included).
async fn test_client(config: &MqttConfig) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let options = config.options(&unique("test-client-")).expect("client options");
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
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt", ServerConfig::default(), mqtt.clone())
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
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-request", ServerConfig::default(), mqtt)
        .await
        .expect("SQLite");
    let (topic, payload) =
        tokio::time::timeout(Duration::from_secs(20), incoming.recv()).await.expect("a request within 20 s").unwrap();
    assert!(topic.starts_with(&format!("command//{thing}/req/")) && topic.ends_with("/request"), "{topic}");
    let request = homepot_core::ingest::container_json::parse_request_message(&payload)
        .expect("a container metrics request message");
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
        Self::spawn(&["-p", &port.to_string()], port)
    }

    /// Runs `mosquitto ARGS` and waits until `port` accepts connections.
    fn spawn(args: &[&str], port: u16) -> Option<Self> {
        let process = std::process::Command::new("mosquitto")
            .args(args)
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
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-restart", ServerConfig::default(), mqtt.clone())
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

/// Data on the topic the container metrics documentation shows
/// (`command//<thing>/res//data`) is stored and counted, like data on `e/<tenant>/<thing>`.
#[tokio::test]
async fn data_on_the_documented_topic_is_stored_and_counted() {
    let Some(mqtt) = broker("data_on_the_documented_topic_is_stored_and_counted") else { return };
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-doc-data", ServerConfig::default(), mqtt.clone())
        .await
        .expect("SQLite");
    let device = format!("{}:device", unique("edge"));
    s.register(&device).await;
    let thing = format!("{device}:edge:containers");
    let (client, _) = test_client(&mqtt).await;
    let mut message = container_data_message(&thing);
    message["value"]["snapshot"][0]["originator"] = json!("Container:documented");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ =
            client.publish(format!("command//{thing}/res//data"), QoS::AtLeastOnce, false, message.to_string()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, latest) = s
            .call(Method::GET, "/api/v1/containers/metrics?originator=Container:documented", Some(&s.admin_key), None)
            .await;
        if latest["snapshots"].as_array().is_some_and(|all| all.iter().any(|x| x["device_id"] == device.as_str())) {
            break;
        }
        assert!(Instant::now() < deadline, "data on command//<thing>/res//data was not stored");
    }
    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None, None).await;
    // The broker is shared with other tests, whose messages this bridge sees too.
    assert!(stats["mqtt_messages_received"].as_u64().unwrap() >= 1, "counted: {stats}");
    s.shutdown().await;
}

/// A device that answers every metrics request for `thing` in the documented form: the
/// status and correlation id in the payload, on `command//<thing>/res//request`. Returns the
/// requests it saw.
async fn answering_device(
    config: &MqttConfig,
    thing: &str,
    status: u16,
) -> tokio::sync::mpsc::UnboundedReceiver<homepot_core::container::MetricsRequest> {
    let (client, mut incoming) = test_client(config).await;
    client.subscribe(format!("command//{thing}/req/+/request"), QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    let thing = thing.to_owned();
    tokio::spawn(async move {
        while let Some((_, payload)) = incoming.recv().await {
            let Ok(request) = homepot_core::ingest::container_json::parse_request_message(&payload) else { continue };
            let mut answer = json!({
                "topic": homepot_core::container::ditto_topic(&thing, "request"),
                "headers": {"content-type": "application/json", "correlation-id": request.correlation_id},
                "path": "/features/Metrics/outbox/messages/request",
                "status": status,
            });
            if status >= 400 {
                answer["value"] = json!({"error": "unknown originator"});
            }
            let _ = client
                .publish(format!("command//{thing}/res//request"), QoS::AtLeastOnce, false, answer.to_string())
                .await;
            let _ = seen.send(request);
        }
    });
    requests
}

/// `POST /api/v1/containers/requests` sends the request over the bridge and answers with the
/// device's status, read from the payload as the documentation shows it.
#[tokio::test]
async fn requests_over_http_answer_with_the_devices_status() {
    let Some(mqtt) = broker("requests_over_http_answer_with_the_devices_status") else { return };
    let mqtt = MqttConfig { request_timeout: Duration::from_secs(2), ..mqtt };
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-requests", ServerConfig::default(), mqtt.clone())
        .await
        .expect("SQLite");
    let admin = Some(s.admin_key.as_str());
    let request = |device: &str| json!({"device_id": device, "frequency": "5s", "filter": [{"id": ["cpu.*"], "originator": "SYSTEM"}]});

    let willing = format!("{}:device", unique("edge"));
    let willing_key = s.register(&willing).await;
    let mut seen = answering_device(&mqtt, &format!("{willing}:edge:containers"), 204).await;
    // The bridge may still be subscribing: the first answer can take a retry.
    let mut status = 0;
    for _ in 0..5 {
        status = s.call(Method::POST, "/api/v1/containers/requests", admin, Some(&request(&willing))).await.0;
        if status == 204 {
            break;
        }
    }
    assert_eq!(status, 204);
    let sent = seen.recv().await.expect("the device saw the request");
    assert_eq!((sent.frequency_ms, sent.filters[0].ids.clone()), (5_000, vec!["cpu.*".to_owned()]));

    let unwilling = format!("{}:device", unique("edge"));
    s.register(&unwilling).await;
    let _device = answering_device(&mqtt, &format!("{unwilling}:edge:containers"), 400).await;
    let (status, body) = s.call(Method::POST, "/api/v1/containers/requests", admin, Some(&request(&unwilling))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["device_status"], 400);
    assert_eq!(body["device_response"]["value"]["error"], "unknown originator");

    let silent = format!("{}:device", unique("edge"));
    s.register(&silent).await;
    let (status, body) = s.call(Method::POST, "/api/v1/containers/requests", admin, Some(&request(&silent))).await;
    assert_eq!(status, 504, "{body}");

    let (status, _) = s.call(Method::POST, "/api/v1/containers/requests", admin, Some(&request("edge:ghost"))).await;
    assert_eq!(status, 404);
    let (status, _) =
        s.call(Method::POST, "/api/v1/containers/requests", Some(&willing_key), Some(&request(&willing))).await;
    assert_eq!(status, 403, "admin keys only");
    let (status, body) =
        s.call(Method::POST, "/api/v1/containers/requests", admin, Some(&json!({"device_id": willing}))).await;
    assert_eq!((status, body["detail"][0]["loc"].clone()), (422, json!(["body", "frequency"])));
    s.shutdown().await;

    let plain = TestServer::start(Backend::Sqlite, "no-bridge", ServerConfig::default()).await.expect("SQLite");
    plain.register(&willing).await;
    let (status, _) =
        plain.call(Method::POST, "/api/v1/containers/requests", Some(&plain.admin_key), Some(&request(&willing))).await;
    assert_eq!(status, 503, "no bridge runs");
    plain.shutdown().await;
}

/// With `request_all`, every device that has sent container data is asked again whenever
/// the bridge connects, including after a restart.
#[tokio::test]
async fn request_all_asks_every_device_that_sent_data_at_connect() {
    let Some(mqtt) = broker("request_all_asks_every_device_that_sent_data_at_connect") else { return };
    let mqtt = MqttConfig { request_all: true, frequency_ms: 3_000, ..mqtt };
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-request-all", ServerConfig::default(), mqtt.clone())
        .await
        .expect("SQLite");
    let device = format!("{}:device", unique("edge"));
    let key = s.register(&device).await;
    let thing = format!("{device}:edge:containers");
    let quiet = format!("{}:device", unique("edge"));
    s.register(&quiet).await;
    let message = container_data_message(&thing);
    assert_eq!(s.call(Method::POST, "/api/v1/containers/metrics", Some(&key), Some(&message)).await.0, 200);

    let (client, mut incoming) = test_client(&mqtt).await;
    client.subscribe(format!("command//{thing}/req/#"), QoS::AtLeastOnce).await.unwrap();
    client.subscribe(format!("command//{quiet}:edge:containers/req/#"), QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = s.restart_with_mqtt(ServerConfig::default(), mqtt.clone()).await;
    let (topic, payload) =
        tokio::time::timeout(Duration::from_secs(20), incoming.recv()).await.expect("a request within 20 s").unwrap();
    assert!(topic.starts_with(&format!("command//{thing}/req/")), "only the device that sent data: {topic}");
    let request = homepot_core::ingest::container_json::parse_request_message(&payload).unwrap();
    assert_eq!(request.frequency_ms, 3_000);
    s.shutdown().await;
}

/// A Mosquitto that speaks only TLS and wants a password: a throwaway CA signs its
/// certificate. Needs `openssl`, `mosquitto` and `mosquitto_passwd` (`.ci/run` installs
/// them); `None` after a notice without them.
struct TlsBroker {
    _broker: PrivateBroker,
    _dir: tempfile::TempDir,
    port: u16,
    ca: std::path::PathBuf,
}

impl TlsBroker {
    fn start(test: &str) -> Option<Self> {
        let have = |tool: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !["openssl", "mosquitto", "mosquitto_passwd"].iter().all(|t| have(t)) {
            eprintln!("SKIPPED {test}: needs openssl, mosquitto and mosquitto_passwd");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0]).args(&args[1..]).output().expect("run");
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(path("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
            .unwrap();
        run(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=homepot test CA",
            "-keyout",
            &path("ca.key"),
            "-out",
            &path("ca.crt"),
        ]);
        run(&[
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &path("server.key"),
            "-out",
            &path("server.csr"),
        ]);
        run(&[
            "openssl",
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.crt"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &path("ext.cnf"),
            "-out",
            &path("server.crt"),
        ]);
        run(&["mosquitto_passwd", "-c", "-b", &path("passwd"), "homepot", "s3cret-broker-password"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::write(
            path("mosquitto.conf"),
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\n\
                 listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                path("passwd"),
                path("ca.crt"),
                path("server.crt"),
                path("server.key")
            ),
        )
        .unwrap();
        let broker = PrivateBroker::spawn(&["-c", &path("mosquitto.conf")], port)?;
        Some(Self { _broker: broker, ca: dir.path().join("ca.crt"), _dir: dir, port })
    }

    fn config(&self) -> MqttConfig {
        MqttConfig {
            client_id: unique("homepot-tls-"),
            tls: Some(homepot_mqtt::MqttTls::CaFile(self.ca.clone())),
            username: Some("homepot".to_owned()),
            password: Some("s3cret-broker-password".to_owned()),
            ..MqttConfig::from_url(&format!("mqtts://localhost:{}", self.port)).unwrap()
        }
    }
}

/// The bridge reaches a broker over TLS (verified against a given CA) with a user name and
/// password, and data flows as over plain MQTT.
#[tokio::test]
async fn the_bridge_speaks_tls_with_credentials() {
    homepot_tests::init();
    let Some(broker) = TlsBroker::start("the_bridge_speaks_tls_with_credentials") else { return };
    let mqtt = broker.config();
    let s = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-tls", ServerConfig::default(), mqtt.clone())
        .await
        .expect("SQLite");
    let device = format!("{}:device", unique("edge"));
    s.register(&device).await;
    let thing = format!("{device}:edge:containers");
    let (client, _) = test_client(&mqtt).await;
    publish_until_seen(&s, &client, &thing, &device, "Container:tls").await;

    // Without the password the broker refuses the bridge: nothing reaches the API.
    let refused = MqttConfig { password: Some("wrong".to_owned()), client_id: unique("homepot-tls-bad-"), ..mqtt };
    let other = TestServer::start_with_mqtt(Backend::Sqlite, "mqtt-tls-bad", ServerConfig::default(), refused)
        .await
        .expect("SQLite");
    other.register(&device).await;
    let _ = client
        .publish(format!("e/tenant/{thing}"), QoS::AtLeastOnce, false, container_data_message(&thing).to_string())
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, stats) = other.call(Method::GET, "/api/v1/stats", None, None).await;
    assert_eq!(stats["mqtt_messages_received"], 0, "{stats}");
    other.shutdown().await;
    s.shutdown().await;
}
