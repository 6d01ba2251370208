//! Remote write forwarding to a real VictoriaMetrics (Debian's `victoria-metrics`; skips with a
//! notice without it): the target is stopped for 20 s while samples keep arriving, homepot
//! itself is restarted on the same queue while the target is still down, and in the end the
//! target holds every sample exactly once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homepot_engine::{ForwardSettings, ForwardTarget};
use homepot_http::ServerConfig;
use homepot_tests::{Backend, KilledOnDrop, TestServer, free_port, unique};
use serde_json::{Value, json};

fn victoria_metrics(data: &std::path::Path, port: u16) -> KilledOnDrop {
    KilledOnDrop(
        Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics"),
    )
}

/// Stops it as an operator would (SIGTERM), so that it flushes what it acknowledged.
fn stop(mut vm: KilledOnDrop) {
    let _ = Command::new("kill").args(["-TERM", &vm.0.id().to_string()]).status();
    let _ = vm.0.wait();
}

async fn ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "{base} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ten samples per batch, one per `n`, at the current time.
async fn write_batch(s: &TestServer, name: &str, batch: usize) {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let lines: Vec<String> =
        (0..10).map(|n| format!("{name},n={n},batch={batch} value={batch}.{n} {now_ns}")).collect();
    let (status, body) = s.post_text("/write", &s.admin_key, &lines.join("\n")).await;
    assert_eq!(status, 204, "{body}");
}

async fn start(queue: &std::path::Path, vm: &str) -> TestServer {
    let config = ServerConfig {
        forward: ForwardSettings {
            targets: vec![ForwardTarget { url: format!("{vm}/api/v1/write"), auth: Default::default() }],
            queue_dir: queue.to_owned(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..ForwardSettings::default()
        },
        ..ServerConfig::default()
    };
    TestServer::start(Backend::Sqlite, "forward", config).await.expect("SQLite")
}

#[tokio::test]
async fn every_sample_reaches_victoria_metrics_across_its_outage_and_a_restart() {
    if Command::new("victoria-metrics").arg("-version").output().is_err() {
        eprintln!(
            "SKIPPED every_sample_reaches_victoria_metrics_across_its_outage_and_a_restart: install victoria-metrics"
        );
        return;
    }
    homepot_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let (data, queue) = (dir.path().join("vm"), dir.path().join("queue"));
    let port = free_port();
    let vm_base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let vm = victoria_metrics(&data, port);
    ready(&client, &vm_base).await;
    let name = unique("forwarded_").replace('-', "_");

    let s = start(&queue, &vm_base).await;
    for batch in 0..10 {
        write_batch(&s, &name, batch).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The target goes away for 20 s; ingest carries on and is answered as usual.
    stop(vm);
    let down = Instant::now();
    for batch in 10..30 {
        write_batch(&s, &name, batch).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // homepot restarts while the target is still down: the queue is all it has of them.
    s.shutdown().await;
    let s = start(&queue, &vm_base).await;
    write_batch(&s, &name, 30).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(down.elapsed())).await;
    let _vm = victoria_metrics(&data, port);
    ready(&client, &vm_base).await;
    for batch in 31..40 {
        write_batch(&s, &name, batch).await;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let count = loop {
        let _ = client.get(format!("{vm_base}/internal/force_flush")).send().await;
        let answer: Value = client
            .get(format!("{vm_base}/api/v1/query"))
            .query(&[("query", format!("sum(count_over_time({name}[1h]))")), ("nocache", "1".to_owned())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let count = answer["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if count >= 400.0 || Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(count, 400.0, "40 batches of 10 samples, each arrived once");
    let series: Value = client
        .get(format!("{vm_base}/api/v1/series"))
        .query(&[("match[]", name.clone())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(series["data"].as_array().unwrap().len(), 400, "one series per batch and n: {series}");
    // The server's stats show the target caught up (this run's counters: after the restart).
    let (_, stats) = s.call(reqwest::Method::GET, "/api/v1/stats", None, None).await;
    let target = &stats["forwarding"][0];
    assert_eq!(target["target"], format!("{vm_base}/api/v1/write"), "{stats}");
    assert_eq!(
        (&target["pending_bytes"], &target["dropped"], &target["rejected"]),
        (&json!(0), &json!(0), &json!(0)),
        "{stats}"
    );
    assert!(target["sent"].as_u64().unwrap() >= 1, "{stats}");
    s.shutdown().await;
}
