//! Prometheus remote write (`POST /api/v1/write`) through the real server: requests encoded
//! as senders encode them on every backend, then real senders: Prometheus scraping itself and
//! vmagent scraping itself, each remote-writing to homepot (Debian's `prometheus` and
//! `victoria-metrics`; each test skips with a notice without its binary).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homepot_core::ingest::remote_write::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest, encode};
use homepot_http::ServerConfig;
use homepot_tests::{Backend, KilledOnDrop, TestServer, free_port, on_every_backend, unique};
use reqwest::Method;
use serde_json::Value;

on_every_backend!(samples_are_stored_with_their_labels, bad_requests_are_refused_without_retry);

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
        samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
    }
}

async fn send(s: &TestServer, key: &str, body: Vec<u8>, encoding: &str) -> (u16, String) {
    let response = s
        .client
        .post(s.url("/api/v1/write"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", encoding)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("send");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

async fn history(s: &TestServer, name: &str) -> Value {
    let (status, body) =
        s.call(Method::GET, &format!("/api/v1/metrics/history?name={name}"), Some(&s.admin_key), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn samples_are_stored_with_their_labels(s: &TestServer) {
    let (counter, gauge) = (unique("rw_requests_total_"), unique("rw_temperature_"));
    let now_ms = chrono::Utc::now().timestamp_millis();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let request = WriteRequest {
        timeseries: vec![
            series(&[("__name__", &counter), ("code", "200"), ("job", "api")], &[(3.0, now_ms - 2_000), (5.0, now_ms)]),
            series(&[("__name__", &gauge), ("room", "lab")], &[(21.5, now_ms), (stale, now_ms + 1)]),
        ],
        metadata: vec![MetricMetadata { r#type: 1, metric_family_name: counter.clone(), ..Default::default() }],
    };
    let (status, text) = send(s, &s.admin_key, encode(&request), "snappy").await;
    assert_eq!((status, text.as_str()), (204, ""), "stale markers are skipped, not refused");

    let stored = history(s, &counter).await;
    assert_eq!(stored["count"], 2, "{stored}");
    let newest = &stored["points"][0];
    assert_eq!((newest["fields"]["value"].clone(), newest["metric_type"].clone()), (5.0.into(), "counter".into()));
    assert_eq!(newest["tags"], serde_json::json!({"code": "200", "job": "api"}));
    assert_eq!(newest["timestamp_ns"], now_ms * 1_000_000);
    let stored = history(s, &gauge).await;
    assert_eq!(stored["count"], 1, "the stale marker is not a sample: {stored}");
    assert_eq!(stored["points"][0]["metric_type"], "gauge");

    // A device key writes in its own name only, as on every ingest route.
    let device = unique("rw-dev-");
    let key = s.register(&device).await;
    let name = unique("rw_device_");
    let request = WriteRequest { timeseries: vec![series(&[("__name__", &name)], &[(1.0, now_ms)])], metadata: vec![] };
    assert_eq!(send(s, &key, encode(&request), "snappy").await.0, 204);
    assert_eq!(history(s, &name).await["points"][0]["tags"]["device_id"], device.as_str());
}

async fn bad_requests_are_refused_without_retry(s: &TestServer) {
    let (status, text) = send(s, &s.admin_key, b"plainly not snappy".to_vec(), "snappy").await;
    assert_eq!(status, 400);
    assert!(text.contains("snappy"), "{text}");
    let (status, text) = send(s, &s.admin_key, b"\x04\x00\xff\xff\xff\xff".to_vec(), "snappy").await;
    assert_eq!(status, 400, "{text}");
    let empty = encode(&WriteRequest::default());
    let (status, text) = send(s, &s.admin_key, empty.clone(), "gzip").await;
    assert_eq!((status, text.as_str()), (400, "Content-Encoding must be snappy, got gzip"));

    // One series homepot cannot store: 400 naming it, and the valid series stored.
    let good = unique("rw_good_");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let request = WriteRequest {
        timeseries: vec![
            series(&[("__name__", &good)], &[(1.0, now_ms)]),
            series(&[("job", "no-name")], &[(1.0, now_ms), (2.0, now_ms + 1)]),
        ],
        metadata: vec![],
    };
    let (status, text) = send(s, &s.admin_key, encode(&request), "snappy").await;
    assert_eq!((status, text.as_str()), (400, "2 samples rejected: a series has no __name__ label"));
    assert_eq!(history(s, &good).await["count"], 1);

    let (_, read) =
        s.call(Method::POST, "/api/v1/keys", Some(&s.admin_key), Some(&serde_json::json!({"role": "read"}))).await;
    assert_eq!(send(s, read["api_key"].as_str().unwrap(), empty.clone(), "snappy").await.0, 403);
    assert_eq!(send(s, "hpk_not_a_key", empty, "snappy").await.0, 401);
}

/// Waits up to 60 s for a live series named `name` with the label `job`.
async fn arrives(s: &TestServer, name: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = s.call(Method::GET, &format!("/api/v1/metrics?name={name}"), Some(&s.admin_key), None).await;
        if let Some(found) = body["metrics"].as_object().and_then(|m| m.values().find(|m| m["tags"]["job"] == job)) {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "{name}{{job={job}}} never arrived: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn prometheus_remote_writes_what_it_scrapes() {
    if Command::new("prometheus").arg("--version").output().is_err() {
        eprintln!("SKIPPED prometheus_remote_writes_what_it_scrapes: install Debian's prometheus");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "prometheus_rw", ServerConfig::default()).await.expect("SQLite");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prom-self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
         remote_write:\n  - url: {}/api/v1/write\n    authorization:\n      credentials: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
        s.base, s.admin_key
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let _prometheus = KilledOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let up = arrives(&s, "up", "prom-self").await;
    assert_eq!(up["fields"]["value"], 1.0, "{up}");
    assert_eq!(up["tags"]["instance"], format!("127.0.0.1:{port}"));
    let info = arrives(&s, "prometheus_build_info", "prom-self").await;
    assert_eq!(info["tags"]["version"], "2.42.0+ds", "{info}");
    s.shutdown().await;
}

#[tokio::test]
async fn vmagent_remote_writes_what_it_scrapes() {
    if Command::new("vmagent").arg("--version").output().is_err() {
        eprintln!("SKIPPED vmagent_remote_writes_what_it_scrapes: install Debian's victoria-metrics");
        return;
    }
    let s = TestServer::start(Backend::Sqlite, "vmagent_rw", ServerConfig::default()).await.expect("SQLite");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vmagent-self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    std::fs::write(dir.path().join("scrape.yml"), config).unwrap();
    let _vmagent = KilledOnDrop(
        Command::new("vmagent")
            .arg(format!("-promscrape.config={}", dir.path().join("scrape.yml").display()))
            .arg(format!("-remoteWrite.url={}/api/v1/write", s.base))
            .arg(format!("-remoteWrite.bearerToken={}", s.admin_key))
            .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().join("queue").display()))
            .arg("-remoteWrite.flushInterval=1s")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vmagent"),
    );
    let up = arrives(&s, "up", "vmagent-self").await;
    assert_eq!(up["fields"]["value"], 1.0, "{up}");
    arrives(&s, "vm_app_version", "vmagent-self").await;
    s.shutdown().await;
}
