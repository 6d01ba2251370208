//! The metrics service's outputs over real HTTP: the live JSON views, Prometheus text (checked by
//! `promtool` when installed), and the credential forms stock clients use.

use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    live_views_follow_every_ingest_path,
    prometheus_text_is_valid,
    stock_client_credentials_are_accepted,
    clearing_the_live_view_keeps_history,
);

async fn push(s: &TestServer, path: &str, body: Value) {
    let (status, answer) = s.call(Method::POST, path, Some(&s.admin_key), Some(&body)).await;
    assert_eq!(status, 200, "{path}: {answer}");
}

async fn get(s: &TestServer, path: &str) -> Value {
    let (status, body) = s.call(Method::GET, path, Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn prometheus_text(s: &TestServer) -> String {
    let response = s
        .client
        .get(s.url("/metrics"))
        .header("Authorization", format!("Bearer {}", s.admin_key))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

async fn live_views_follow_every_ingest_path(s: &TestServer) {
    push(s, "/api/v1/metrics/simple", json!({"name": "fps", "value": 29.97, "tags": {"source": "camera1"}})).await;
    push(
        s,
        "/api/v1/metrics",
        json!({"metrics": [
            {"name": "cpu", "fields": {"usage": 45.2}, "tags": {"host": "server1"}},
            {"name": "cpu", "fields": {"usage": 12.5}, "tags": {"host": "server2"}}
        ]}),
    )
    .await;
    let device = unique("pos-");
    let key = s.register(&device).await;
    let check = json!({"is_healthy": true, "response_time_ms": 150, "system": {"cpu_percent": 65.5}});
    let (status, _) = s.call(Method::POST, &format!("/api/v1/devices/{device}/health"), Some(&key), Some(&check)).await;
    assert_eq!(status, 200);

    let all = get(s, "/api/v1/metrics").await;
    let fps = &all["metrics"]["fps"];
    assert_eq!((fps["name"].clone(), fps["fields"].clone()), (json!("fps"), json!({"value": 29.97})));
    assert_eq!(fps["tags"], json!({"source": "camera1"}));
    assert!(fps["timestamp"].as_i64().unwrap() > 1_700_000_000, "Unix seconds");
    assert_eq!(
        all["metrics"]["cpu{host=server2}"]["fields"]["usage"], 12.5,
        "several series of a name are keyed apart"
    );
    let system = &all["metrics"]["device_system"];
    assert_eq!(system["tags"]["device_id"], device.as_str(), "health checks feed the live view");
    assert_eq!(system["fields"]["cpu_percent"], 65.5);

    let only = get(s, "/api/v1/metrics?name=fps").await;
    assert_eq!(only["metrics"].as_object().unwrap().len(), 1);
    let latest = get(s, "/api/v1/metrics/latest").await;
    assert!(latest["metrics"]["cpu"]["fields"]["usage"].is_number(), "one series per name: {latest}");
    let names = get(s, "/api/v1/metrics/names").await;
    // A database shared with earlier runs brings their container series back at start.
    let mut listed: Vec<&str> = names["names"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    listed.retain(|name| *name != "container");
    assert_eq!(listed, ["cpu", "device_health", "device_system", "fps"], "no app_metrics, no device_app");

    let text = prometheus_text(s).await;
    assert!(text.contains("fps{source=\"camera1\"} 29.97\n"), "{text}");
    assert!(text.contains("cpu_usage{host=\"server1\"} 45.2\n"), "{text}");
    assert!(text.contains(&format!("device_system_cpu_percent{{device_id=\"{device}\"}} 65.5\n")), "{text}");
    assert!(text.contains(&format!("device_health_is_healthy{{device_id=\"{device}\"}} 1\n")), "{text}");
}

async fn prometheus_text_is_valid(s: &TestServer) {
    let lines = "weird-name,host=a\\ b,quote=x\"y v=1,flag=true,note=\"text\"\n9starts,__reserved=z value=-2i\nhits,path=/a value=3u";
    assert_eq!(s.post_text("/api/v1/metrics/influx", &s.admin_key, lines).await.0, 200);
    push(
        s,
        "/api/v1/metrics",
        json!({"metrics": [{"name": "requests", "fields": {"total": 10}, "metric_type": "counter"}]}),
    )
    .await;
    let text = prometheus_text(s).await;
    assert!(text.contains("# TYPE weird_name_v gauge\n"), "{text}");
    assert!(text.contains("weird_name_v{host=\"a b\",quote=\"x\\\"y\"} 1\n"), "{text}");
    assert!(!text.contains("note"), "strings are not exposed: {text}");
    assert!(text.contains("_9starts{tag__reserved=\"z\"} -2\n"), "{text}");
    assert!(text.contains("# TYPE requests_total counter\nrequests_total 10\n"), "{text}");

    let Ok(promtool) = which_promtool() else {
        eprintln!("SKIPPED promtool check: install Debian's 'prometheus' package to run it");
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("promtool check metrics: {} {report}", out.status);
    assert!(out.status.success(), "{report}\n{text}");
}

fn which_promtool() -> Result<String, ()> {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .ok_or(())
}

async fn stock_client_credentials_are_accepted(s: &TestServer) {
    let name = unique("creds_");
    for (path, header) in [
        ("/write".to_owned(), Some(format!("Token {}", s.admin_key))),
        ("/write".to_owned(), Some(format!("Bearer {}", s.admin_key))),
        (format!("/write?db=x&u=anyone&p={}", s.admin_key), None),
        // InfluxDB 1.x clients send Basic credentials with the key as the password.
        ("/write".to_owned(), Some(format!("Basic {}", base64_encode(&format!("anyone:{}", s.admin_key))))),
    ] {
        let mut request = s.client.post(s.url(&path)).header("Content-Type", "text/plain").body(format!("{name} v=1"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        assert_eq!(request.send().await.unwrap().status().as_u16(), 204, "{path}");
    }
    // InfluxDB ignores the body's content type, and its clients send application/octet-stream.
    let octet = s
        .client
        .post(s.url("/write"))
        .header("X-API-Key", &s.admin_key)
        .header("Content-Type", "application/octet-stream")
        .body(format!("{name} v=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(octet.status().as_u16(), 204);
    let history = get(s, &format!("/api/v1/metrics/history?name={name}")).await;
    assert_eq!(history["count"], 5);
    let bad_basic = s.client.get(s.url("/metrics")).header("Authorization", "Basic !!!").send().await.unwrap();
    assert_eq!(bad_basic.status().as_u16(), 401);
    let wrong = s.client.get(s.url("/metrics")).header("Authorization", "Bearer nope").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let none = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
}

async fn clearing_the_live_view_keeps_history(s: &TestServer) {
    let (a, b) = (unique("a_"), unique("b_"));
    push(s, "/api/v1/metrics/simple", json!({"name": a, "value": 1})).await;
    push(s, "/api/v1/metrics/simple", json!({"name": b, "value": 2})).await;
    let (status, cleared) =
        s.call(Method::DELETE, &format!("/api/v1/metrics?name={a}"), Some(&s.admin_key), None).await;
    assert_eq!((status, cleared), (200, json!({"cleared": 1, "message": "Cleared 1 metric"})));
    assert!(get(s, "/api/v1/metrics").await["metrics"].get(&a).is_none());
    let (_, cleared) = s.call(Method::DELETE, "/api/v1/metrics", Some(&s.admin_key), None).await;
    // At least `b`: a database shared with earlier runs brings container series back at start.
    assert!(cleared["cleared"].as_u64() >= Some(1), "{cleared}");
    assert_eq!(get(s, "/api/v1/metrics/names").await["count"], 0);
    assert_eq!(get(s, &format!("/api/v1/metrics/history?name={a}")).await["count"], 1, "history is durable");
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
