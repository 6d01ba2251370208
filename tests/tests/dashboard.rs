//! The dashboard in a real browser: headless Chromium driven by selenium
//! (`tests/interop/dashboard.py`). Skips with a notice without Chromium, chromedriver or
//! selenium (`.ci/run` installs them). Screenshots go to `HOMEPOT_SCREENSHOTS` when set.

use std::process::Command;
use std::time::Duration;

use homepot_engine::AlertSettings;
use homepot_http::ServerConfig;
use homepot_tests::{Backend, TestServer, container_data_message};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn the_dashboard_works_in_a_real_browser() {
    let selenium = Command::new("python3").args(["-c", "import selenium"]).status().is_ok_and(|s| s.success());
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"].iter().all(|p| std::path::Path::new(p).exists());
    if !selenium || !browser {
        eprintln!("SKIPPED the_dashboard_works_in_a_real_browser: install chromium, chromium-driver and selenium");
        return;
    }
    let config = ServerConfig {
        alerting: AlertSettings { evaluation_interval: Duration::from_millis(200), ..AlertSettings::default() },
        ..ServerConfig::default()
    };
    let s = TestServer::start(Backend::Sqlite, "dashboard", config).await.unwrap();
    let (_, read) = s.call(Method::POST, "/api/v1/keys", Some(&s.admin_key), Some(&json!({"role": "read"}))).await;
    let read = read["api_key"].as_str().unwrap().to_owned();
    // A container snapshot for the containers page (its device reports over MQTT in the field).
    let edge_key = s.register("browser-edge:gateway").await;
    let message = container_data_message("browser-edge:gateway:edge:containers");
    let (status, body) = s.call(Method::POST, "/api/v1/containers/metrics", Some(&edge_key), Some(&message)).await;
    assert_eq!(status, 200, "{body}");
    let shots = std::env::var("HOMEPOT_SCREENSHOTS").ok().filter(|d| !d.is_empty());
    let scratch = tempfile::tempdir().unwrap();
    let shots = shots.unwrap_or_else(|| scratch.path().display().to_string());
    let script = format!("{}/interop/dashboard.py", env!("CARGO_MANIFEST_DIR"));
    let (base, admin) = (s.base.clone(), s.admin_key.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").args([&script, &base, &admin, &read, &shots]).output().expect("run python3")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    s.shutdown().await;
}
