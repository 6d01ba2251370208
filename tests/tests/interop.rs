//! Real clients against the real server: the OpenTelemetry SDK's OTLP/HTTP exporter and the
//! InfluxDB 1.x client (Python packages from `tests/interop/requirements.txt`). Each test skips
//! with a notice when its client is not installed.

use std::process::Command;

use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, unique};
use reqwest::Method;
use serde_json::Value;

fn python_has(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success())
}

fn script(name: &str) -> String {
    format!("{}/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn history(s: &TestServer, name: &str) -> Value {
    let (status, body) =
        s.call(Method::GET, &format!("/api/v1/metrics/history?name={name}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn run(command: &mut Command) {
    let out = command.output().expect("run python3");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn opentelemetry_sdk_exports_a_gauge_and_a_sum() {
    if !python_has("opentelemetry.exporter.otlp.proto.http") {
        eprintln!("SKIPPED: pip install -r tests/interop/requirements.txt to run the OTLP exporter test");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "otlp", ServerConfig::default()).await.expect("SQLite");
    let prefix = unique("otel_");
    let (base, key) = (s.base.clone(), s.admin_key.clone());
    let exporter = tokio::task::spawn_blocking(move || {
        run(Command::new("python3")
            .args([&script("otlp_export.py"), &base, &key, &prefix])
            .env("OTEL_SDK_DISABLED", "false"))
    });
    exporter.await.expect("exporter ran");
    let names = s.call(Method::GET, "/api/v1/metrics/names", Some(&s.admin_key), None).await.1;
    let names: Vec<String> =
        names["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
    let gauge_name = names.iter().find(|n| n.ends_with("_temperature")).expect("gauge arrived").clone();
    let sum_name = names.iter().find(|n| n.ends_with("_requests")).expect("sum arrived").clone();

    let gauge = history(&s, &gauge_name).await;
    let point = &gauge["points"][0];
    assert_eq!(point["fields"]["value"], 21.5);
    assert_eq!(point["tags"]["room"], "lab");
    assert_eq!(point["tags"]["service.name"], "interop");
    assert_eq!(point["metric_type"], "gauge");
    let sum = history(&s, &sum_name).await;
    assert_eq!(sum["points"][0]["fields"]["value"], 3);
    assert_eq!(sum["points"][0]["metric_type"], "counter");
    assert_eq!(sum["points"][0]["tags"]["route"], "/health");
    s.shutdown().await;
}

#[tokio::test]
async fn influxdb_v1_client_writes_through_write() {
    if !python_has("influxdb") {
        eprintln!("SKIPPED: pip install -r tests/interop/requirements.txt to run the InfluxDB client test");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "influx", ServerConfig::default()).await.expect("SQLite");
    let measurement = unique("influx_cpu_");
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let (key, name) = (s.admin_key.clone(), measurement.clone());
    tokio::task::spawn_blocking(move || {
        run(Command::new("python3").args([&script("influx_v1_write.py"), "127.0.0.1", &port, &key, &name]))
    })
    .await
    .expect("client ran");
    let stored = history(&s, &measurement).await;
    assert_eq!(stored["count"], 2);
    let server1 =
        stored["points"].as_array().unwrap().iter().find(|p| p["tags"]["host"] == "server1").expect("server1");
    assert_eq!(server1["fields"]["usage"], 45.2);
    assert_eq!(server1["fields"]["count"], 3);
    assert_eq!(server1["fields"]["note"], "a b,c");
    s.shutdown().await;
}
