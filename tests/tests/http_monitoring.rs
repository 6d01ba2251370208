//! Gateway resource monitoring over real HTTP.

use std::time::Duration;

use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(nodes_report_and_the_cluster_is_summarised, node_reports_are_validated_and_authorised);

fn sample_node(zone: &str, cpu: f64) -> Value {
    json!({
        "timestamp": 1729763445, "node_ip": "192.168.1.100", "hostname": "spore-node-1",
        "cpu": {"frequency_mhz": 160, "usage_percent": cpu, "temperature_c": 58.3},
        "memory": {"total_bytes": 98304, "free_bytes": 45632, "used_bytes": 52672, "usage_percent": 53.6},
        "network": {"bytes_sent": 3245678, "bytes_received": 5678901, "packets_sent": 32456, "packets_received": 56789,
                    "rssi_dbm": -65, "signal_quality_percent": 75.5},
        "flash": {"total_bytes": 4194304, "used_bytes": 2097152, "free_bytes": 2097152, "usage_percent": 50.0},
        "labels": {"version": "1.0.0", "stable": "true", "env": "production", "zone": zone, "type": "spore-node"}
    })
}

fn report_path(node: &str) -> String {
    format!("/api/monitoring/nodes/{node}/resources")
}

async fn nodes_report_and_the_cluster_is_summarised(s: &TestServer) {
    let (a, b) = (unique("spore-a-"), unique("spore-b-"));
    let key_a = s.register(&a).await;
    s.register(&b).await;
    // A database shared with earlier runs brings their nodes back at start: a label of this
    // run's own tells its nodes apart.
    let run = unique("run-");
    let labelled = |zone: &str, cpu: f64| {
        let mut node = sample_node(zone, cpu);
        node["labels"]["run"] = json!(run);
        node
    };
    let (status, answer) = s.call(Method::POST, &report_path(&a), Some(&key_a), Some(&labelled("zone-1", 40.0))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message"], "Node resources recorded successfully");
    let (status, _) = s.call(Method::POST, &report_path(&b), Some(&s.admin_key), Some(&labelled("zone-2", 20.0))).await;
    assert_eq!(status, 200);

    let (status, view) =
        s.call(Method::GET, &format!("/api/monitoring/resources?run={run}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{view}");
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let node_a = nodes.iter().find(|n| n["node_id"] == a.as_str()).unwrap();
    assert_eq!(node_a["hostname"], "spore-node-1");
    assert_eq!(node_a["cpu"]["usage_percent"], 40.0);
    assert_eq!(node_a["flash"]["usage_percent"], 50.0);
    assert_eq!(node_a["labels"]["zone"], "zone-1");
    assert_eq!((node_a["stale"].clone(), node_a["timestamp"].clone()), (json!(false), json!(1729763445)));
    let summary = &view["summary"];
    assert_eq!(summary["total_nodes"], 2);
    assert_eq!(summary["avg_cpu_usage_percent"], 30.0);
    assert_eq!(summary["avg_memory_usage_percent"], 53.6);
    assert_eq!(summary["total_bytes_sent"], 2 * 3_245_678);
    assert_eq!(summary["stale_nodes"], 0);

    let zone_1 = format!("/api/monitoring/resources?zone=zone-1&env=production&run={run}");
    let (_, zone_1) = s.call(Method::GET, &zone_1, Some(&s.admin_key), None).await;
    assert_eq!(zone_1["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(zone_1["summary"]["avg_cpu_usage_percent"], 40.0);
    let (_, none) = s.call(Method::GET, "/api/monitoring/resources?zone=zone-9", Some(&s.admin_key), None).await;
    assert_eq!((none["nodes"].as_array().unwrap().len(), none["summary"]["total_nodes"].clone()), (0, json!(0)));

    let text =
        s.client.get(s.url("/metrics")).header("X-API-Key", &s.admin_key).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains("node_cpu_usage_percent{") && text.contains(&format!("node_id=\"{a}\"")),
        "nodes reach Prometheus: {text}"
    );
    let (_, history) = s
        .call(Method::GET, &format!("/api/v1/metrics/history?name=node_cpu&tag=node_id:{a}"), Some(&s.admin_key), None)
        .await;
    assert_eq!(history["count"], 1, "reports are stored as metric history");
}

async fn node_reports_are_validated_and_authorised(s: &TestServer) {
    let (a, b) = (unique("spore-a-"), unique("spore-b-"));
    let key_a = s.register(&a).await;
    s.register(&b).await;
    let mut bad = sample_node("zone-1", 120.0);
    bad["memory"]["used_bytes"] = json!(1);
    let (status, answer) = s.call(Method::POST, &report_path(&a), Some(&key_a), Some(&bad)).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "cpu", "usage_percent"]));
    assert_eq!(answer["detail"][1]["loc"], json!(["body", "memory", "used_bytes"]));
    let ok = sample_node("zone-1", 10.0);
    assert_eq!(
        s.call(Method::POST, &report_path(&b), Some(&key_a), Some(&ok)).await.0,
        403,
        "a node reports only for itself"
    );
    assert_eq!(s.call(Method::POST, &report_path(&a), None, Some(&ok)).await.0, 401);
    let ghost = unique("ghost-");
    let (status, answer) = s.call(Method::POST, &report_path(&ghost), Some(&s.admin_key), Some(&ok)).await;
    assert_eq!((status, answer), (404, json!({"detail": format!("Device '{ghost}' not found")})));
    assert_eq!(s.call(Method::GET, "/api/monitoring/resources", Some(&key_a), None).await.0, 403);
}

#[tokio::test]
async fn silent_nodes_are_marked_stale_and_left_out_of_the_summary() {
    let config = ServerConfig { node_stale_after: Duration::from_millis(50), ..ServerConfig::default() };
    let s = TestServer::start(Backend::Sqlite, "stale", config).await.expect("SQLite");
    let node = unique("spore-");
    s.register(&node).await;
    let body = sample_node("zone-1", 40.0);
    assert_eq!(s.call(Method::POST, &report_path(&node), Some(&s.admin_key), Some(&body)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (_, view) = s.call(Method::GET, "/api/monitoring/resources", Some(&s.admin_key), None).await;
    assert_eq!(view["nodes"][0]["stale"], true);
    assert_eq!((view["summary"]["total_nodes"].clone(), view["summary"]["stale_nodes"].clone()), (json!(0), json!(1)));
    s.shutdown().await;
}

/// The next text frame from `/ws`, as JSON.
async fn next_event(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    use futures_util::StreamExt;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an event within 10 s")
            .expect("socket open")
            .expect("readable frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON event");
        }
    }
}

#[tokio::test]
async fn websocket_clients_see_joins_label_changes_thresholds_and_staleness() {
    let config = ServerConfig { node_stale_after: Duration::from_millis(300), ..ServerConfig::default() };
    let s = TestServer::start(Backend::Sqlite, "ws", config).await.expect("SQLite");
    let node = unique("spore-");
    s.register(&node).await;
    let url = format!("{}/ws?p={}", s.base.replacen("http", "ws", 1), s.admin_key);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket upgrade");

    let post = |body: Value| {
        let (s, node) = (&s, node.clone());
        async move { assert_eq!(s.call(Method::POST, &report_path(&node), Some(&s.admin_key), Some(&body)).await.0, 200) }
    };
    post(sample_node("zone-1", 40.0)).await;
    let joined = next_event(&mut socket).await;
    assert_eq!((joined["type"].clone(), joined["node_id"].clone()), (json!("node_joined"), json!(node)));
    assert_eq!(joined["labels"]["zone"], "zone-1");

    let mut hot = sample_node("zone-2", 93.5);
    hot["labels"]["version"] = json!("1.2.0");
    post(hot).await;
    let labels = next_event(&mut socket).await;
    assert_eq!(labels["type"], "labels_changed");
    assert_eq!(
        (labels["previous"]["version"].clone(), labels["labels"]["version"].clone()),
        (json!("1.0.0"), json!("1.2.0"))
    );
    let crossed = next_event(&mut socket).await;
    assert_eq!(
        crossed,
        json!({"type": "threshold_crossed", "node_id": node, "metric": "cpu_percent", "value": 93.5, "threshold": 80.0})
    );

    // Silence: the sweep announces the node stale.
    let stale = next_event(&mut socket).await;
    assert_eq!((stale["type"].clone(), stale["node_id"].clone()), (json!("node_stale"), json!(node)));

    let anonymous = tokio_tungstenite::connect_async(format!("{}/ws", s.base.replacen("http", "ws", 1))).await;
    match anonymous {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("an upgrade without a key must be refused, got {other:?}"),
    }
    s.shutdown().await;
}
