//! What the server holds in memory comes back after a restart: each gateway node's newest
//! report (the resources view and the baseline of `/ws` events) and the latest container
//! measurements.

use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, container_data_message, unique};
use reqwest::Method;
use serde_json::{Value, json};

fn node_report(version: &str, cpu: f64) -> Value {
    json!({
        "node_ip": "192.168.1.100", "hostname": "spore-node-1",
        "cpu": {"frequency_mhz": 160, "usage_percent": cpu, "temperature_c": 58.3},
        "memory": {"total_bytes": 98304, "free_bytes": 45632, "used_bytes": 52672, "usage_percent": 53.6},
        "network": {"bytes_sent": 3245678, "bytes_received": 5678901, "rssi_dbm": -65, "signal_quality_percent": 75.5},
        "labels": {"version": version, "zone": "zone-1"}
    })
}

async fn next_event(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    use futures_util::StreamExt;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("an event within 10 s")
            .expect("socket open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON event");
        }
    }
}

async fn views_survive_a_restart(s: TestServer) {
    let node = unique("spore-restart-");
    s.register(&node).await;
    let path = format!("/api/monitoring/nodes/{node}/resources");
    assert_eq!(s.call(Method::POST, &path, Some(&s.admin_key), Some(&node_report("1.0.0", 42.5))).await.0, 200);
    let namespace = unique("edge");
    let device = format!("{namespace}:device");
    s.register(&device).await;
    let message = container_data_message(&format!("{device}:edge:containers"));
    assert_eq!(s.call(Method::POST, "/api/v1/containers/metrics", Some(&s.admin_key), Some(&message)).await.0, 200);

    let s = s.restart(ServerConfig::default()).await;
    let admin = Some(s.admin_key.as_str());
    let (_, resources) = s.call(Method::GET, "/api/monitoring/resources?zone=zone-1", admin, None).await;
    let restored = resources["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == node.as_str());
    let restored = restored.unwrap_or_else(|| panic!("node {node} is back after the restart: {resources}"));
    assert_eq!(restored["cpu"]["usage_percent"], 42.5, "{restored}");
    assert_eq!((restored["hostname"].clone(), restored["stale"].clone()), (json!("spore-node-1"), json!(false)));
    assert_eq!(restored["network"]["bytes_sent"], 3245678);
    assert_eq!(restored["labels"], json!({"version": "1.0.0", "zone": "zone-1"}));

    let (_, containers) = s.call(Method::GET, "/api/v1/containers/metrics", admin, None).await;
    let mine: Vec<&Value> =
        containers["snapshots"].as_array().unwrap().iter().filter(|c| c["device_id"] == device.as_str()).collect();
    assert_eq!(mine.len(), 2, "both originators are back: {containers}");

    // The restored report is the baseline of `/ws` events: the node does not join again.
    let url = format!("{}/ws?p={}", s.base.replacen("http", "ws", 1), s.admin_key);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket upgrade");
    assert_eq!(s.call(Method::POST, &path, admin, Some(&node_report("1.1.0", 42.5))).await.0, 200);
    let event = next_event(&mut socket).await;
    assert_eq!((event["type"].clone(), event["node_id"].clone()), (json!("labels_changed"), json!(node)), "{event}");
    assert_eq!(event["previous"]["version"], "1.0.0");
    s.shutdown().await;
}

#[tokio::test]
async fn sqlite_views_survive_a_restart() {
    let s = TestServer::start(Backend::Sqlite, "views_survive_a_restart", ServerConfig::default()).await.unwrap();
    views_survive_a_restart(s).await;
}

#[tokio::test]
async fn postgres_views_survive_a_restart() {
    let Some(s) = TestServer::start(Backend::Postgres, "views_survive_a_restart", ServerConfig::default()).await else {
        return;
    };
    views_survive_a_restart(s).await;
}
