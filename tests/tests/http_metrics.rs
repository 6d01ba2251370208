//! The metrics service's ingest formats over real HTTP, read back from durable history.

use homepot_tests::{TestServer, on_every_backend, unique};
use reqwest::Method;
use serde_json::{Value, json};

on_every_backend!(
    documented_push_examples_are_stored,
    line_protocol_keeps_good_lines_and_reports_bad_ones,
    influx_write_is_compatible,
    invalid_json_metrics_are_422,
    device_keys_label_their_points,
    otlp_json_from_the_documentation_is_stored,
);

async fn history(s: &TestServer, query: &str) -> Value {
    let (status, body) =
        s.call(Method::GET, &format!("/api/v1/metrics/history?{query}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

async fn documented_push_examples_are_stored(s: &TestServer) {
    let (my_metric, fps) = (unique("my_metric_"), unique("fps_"));
    for body in [
        json!({"name": my_metric, "value": 42.5}),
        json!({"name": fps, "value": 29.97, "tags": {"source": "camera1", "pipeline": "detection"}}),
        json!({"name": fps, "value": 29.97, "timestamp": 1776947971}),
    ] {
        let (status, answer) = s.call(Method::POST, "/api/v1/metrics/simple", Some(&s.admin_key), Some(&body)).await;
        assert_eq!((status, answer), (200, json!({"accepted": 1, "message": "Accepted 1 metric"})));
    }
    let (cpu, inference) = (unique("cpu_"), unique("inference_"));
    let batch = json!({"metrics": [
        {"name": cpu, "fields": {"usage_user": 45.2, "usage_system": 12.1}, "tags": {"host": "server1"}, "timestamp": 1704067200000000000_i64},
        {"name": inference, "fields": {"latency_ms": 23.5, "throughput": 42}, "tags": {"model": "yolov8"}, "metric_type": "gauge"}
    ]});
    let (status, answer) = s.call(Method::POST, "/api/v1/metrics", Some(&s.admin_key), Some(&batch)).await;
    assert_eq!((status, answer), (200, json!({"accepted": 2, "message": "Accepted 2 metrics"})));
    let (cpu_usage, memory, fps_lp) = (unique("cpu_usage_"), unique("memory_"), unique("fps_"));
    let lines = format!(
        "{cpu_usage},host=server1,cpu=cpu0 usage=45.2 1704067200000000000\n{memory},host=server1 used_percent=67.5 1704067200000000000\n{fps_lp},pipeline=detection value=29.97"
    );
    let (status, answer) = s.post_text("/api/v1/metrics/influx", &s.admin_key, &lines).await;
    assert_eq!((status, answer), (200, json!({"accepted": 3, "message": "Accepted 3 metrics"})));

    let stored = history(s, &format!("name={my_metric}")).await;
    assert_eq!(stored["points"][0]["fields"]["value"], 42.5);
    let stored = history(s, &format!("name={fps}&hours=720")).await;
    assert_eq!(stored["count"], 1, "1776947971 (April 2026) lies outside the 720-hour window");
    assert_eq!(stored["points"][0]["tags"], json!({"pipeline": "detection", "source": "camera1"}));
    let stored = history(s, &format!("name={inference}")).await;
    assert_eq!(stored["points"][0]["fields"], json!({"latency_ms": 23.5, "throughput": 42}));
    assert_eq!(stored["points"][0]["metric_type"], "gauge");
    let stored = history(s, &format!("name={fps_lp}&tag=pipeline:detection")).await;
    assert_eq!(stored["count"], 1);
    assert_eq!(history(s, &format!("name={fps_lp}&tag=pipeline:other")).await["count"], 0);
}

async fn line_protocol_keeps_good_lines_and_reports_bad_ones(s: &TestServer) {
    let name = unique("lp_");
    let lines = format!("{name},host=a v=1\nnot line protocol\n{name},host=b v=2i\n{name} v=\"unterminated\n");
    let (status, answer) = s.post_text("/api/v1/metrics/influx", &s.admin_key, &lines).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 2);
    assert_eq!(
        answer["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect::<Vec<_>>(),
        [2, 4]
    );
    assert_eq!(history(s, &format!("name={name}")).await["count"], 2);

    let (status, answer) = s.post_text("/api/v1/metrics/influx", &s.admin_key, "bad\nworse x").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][1]["loc"], json!(["body", 2]));
    let (status, answer) = s.post_text("/api/v1/metrics/influx?precision=days", &s.admin_key, "m v=1").await;
    assert_eq!((status, answer["detail"][0]["loc"].clone()), (422, json!(["query", "precision"])));
}

async fn influx_write_is_compatible(s: &TestServer) {
    let name = unique("write_");
    let now_s = chrono::Utc::now().timestamp();
    let (status, body) = s
        .post_text("/write?db=telegraf&precision=s", &s.admin_key, &format!("{name},host=server1 usage=45.2 {now_s}"))
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let stored = history(s, &format!("name={name}")).await;
    assert_eq!(stored["points"][0]["timestamp_ns"].as_i64(), Some(now_s * 1_000_000_000));

    let (status, body) = s.post_text("/write", &s.admin_key, &format!("{name} v=2\n{name} v=oops")).await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().expect("InfluxDB error body");
    assert!(error.starts_with("partial write: line 2") && error.ends_with("dropped=1"), "{error}");
    assert_eq!(history(s, &format!("name={name}")).await["count"], 2, "the valid line of a partial write is stored");
    let (status, _) = s.post_text("/write", "wrong-key", &format!("{name} v=3")).await;
    assert_eq!(status, 401);
}

async fn invalid_json_metrics_are_422(s: &TestServer) {
    for (path, body, loc) in [
        ("/api/v1/metrics/simple", json!({"value": 1}), json!(["body", "name"])),
        ("/api/v1/metrics/simple", json!({"name": "x", "value": "high"}), json!(["body", "value"])),
        ("/api/v1/metrics/simple", json!({"name": "x".repeat(257), "value": 1}), json!(["body", "name"])),
        (
            "/api/v1/metrics",
            json!({"metrics": [{"name": "ok", "fields": {"v": 1}}, {"name": "x", "fields": {"v": 1}, "metric_type": "meter"}]}),
            json!(["body", "metrics", 1, "metric_type"]),
        ),
        ("/api/v1/metrics", json!({"metrics": [{"name": "x", "fields": {}}]}), json!(["body", "metrics", 0, "fields"])),
    ] {
        let (status, answer) = s.call(Method::POST, path, Some(&s.admin_key), Some(&body)).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{body}");
    }
    let (status, _) =
        s.call(Method::POST, "/api/v1/metrics/simple", None, Some(&json!({"name": "x", "value": 1}))).await;
    assert_eq!(status, 401);
}

async fn device_keys_label_their_points(s: &TestServer) {
    let device = unique("edge-");
    let key = s.register(&device).await;
    let name = unique("temp_");
    let body = json!({"name": name, "value": 41.0, "tags": {"device_id": "someone-else"}});
    let (status, _) = s.call(Method::POST, "/api/v1/metrics/simple", Some(&key), Some(&body)).await;
    assert_eq!(status, 200);
    let stored = history(s, &format!("name={name}")).await;
    assert_eq!(stored["points"][0]["tags"]["device_id"], device.as_str(), "a device writes only as itself");
    let (status, _) = s.call(Method::GET, &format!("/api/v1/metrics/history?name={name}"), Some(&key), None).await;
    assert_eq!(status, 403, "device keys read nothing");
}

async fn otlp_json_from_the_documentation_is_stored(s: &TestServer) {
    let name = unique("custom_metric_");
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my-service"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": name, "gauge": {"dataPoints": [{"asDouble": 42.5, "attributes": [{"key": "host", "value": {"stringValue": "server1"}}]}]}},
            {"name": "broken", "gauge": {"dataPoints": [{"attributes": []}]}}
        ]}]
    }]});
    let (status, answer) = s.call(Method::POST, "/api/v1/metrics/otlp", Some(&s.admin_key), Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], "1", "a data point without a value is rejected alone");
    let stored = history(s, &format!("name={name}")).await;
    assert_eq!(stored["points"][0]["fields"]["value"], 42.5);
    assert_eq!(stored["points"][0]["tags"], json!({"host": "server1", "service.name": "my-service"}));

    let (status, answer) =
        s.call(Method::POST, "/api/v1/metrics/otlp", Some(&s.admin_key), Some(&json!({"resourceMetrics": 7}))).await;
    assert_eq!((status, answer["detail"][0]["type"].clone()), (422, json!("value_error.decode")));
    let response = s
        .client
        .post(s.url("/api/v1/metrics/otlp"))
        .header("X-API-Key", &s.admin_key)
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0xff_u8, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422, "malformed protobuf is a clear error, not a 500");
    let response = s
        .client
        .post(s.url("/api/v1/metrics/otlp"))
        .header("X-API-Key", &s.admin_key)
        .header("Content-Type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let detail = response.json::<Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("application/x-protobuf or application/json"), "{detail}");
}
