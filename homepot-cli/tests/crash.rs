//! Acknowledged means durable: the real binary is killed with SIGKILL in the middle of a
//! load of health checks and line-protocol batches, restarted on the same database, and every
//! acknowledged write (each returned `health_check_id`, each 204) is found in storage.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homepot_core::DeviceId;
use homepot_storage::{HealthStore, MetricStore};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};

mod common;

use common::free_port;

const ADMIN_KEY: &str = "crash-test-admin-key";
const HEALTH_CLIENTS: usize = 16;
const WRITE_CLIENTS: usize = 2;
const LINES_PER_BATCH: usize = 100;

fn serve(database: &str, port: u16) -> std::process::Child {
    common::serve(
        database,
        port,
        ADMIN_KEY,
        &[("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"), ("SMART_FILTER_ENABLED", "false")],
    )
}

#[derive(Default)]
struct Acknowledged {
    health_ids: BTreeSet<i64>,
    batches: BTreeSet<u64>,
}

async fn load(base: String, device: String, key: String, measurement: String, acked: Arc<Mutex<Acknowledged>>) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..HEALTH_CLIENTS {
        let (client, base, device, key, acked) =
            (client.clone(), base.clone(), device.clone(), key.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"is_healthy": true, "response_time_ms": 7, "system": {"cpu_percent": 12.5}});
            loop {
                let sent = client
                    .post(format!("{base}/api/v1/devices/{device}/health"))
                    .header("X-API-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    continue;
                }
                let Ok(answer) = response.json::<serde_json::Value>().await else { return };
                if let Some(id) = answer["health_check_id"].as_i64() {
                    acked.lock().unwrap().health_ids.insert(id);
                }
            }
        }));
    }
    let origin_ns = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()).unwrap_or_default();
    for writer in 0..WRITE_CLIENTS as u64 {
        let (client, base, key, acked, measurement) =
            (client.clone(), base.clone(), key.clone(), acked.clone(), measurement.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let batch = writer * 1_000_000 + n;
                let lines: String = (0..LINES_PER_BATCH)
                    .map(|i| {
                        format!(
                            "{measurement},batch={batch},line={i} value={i}i {}\n",
                            // Current times: raw points older than the retention (30 days) are
                            // deleted once their rollups are stored.
                            origin_ns + n * 1000 + i as u64
                        )
                    })
                    .collect();
                let sent = client
                    .post(format!("{base}/write"))
                    .header("Authorization", format!("Token {key}"))
                    .body(lines)
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() == 204 {
                    acked.lock().unwrap().batches.insert(batch);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn kill_mid_load_and_recover(database: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let mut server = serve(database, port);
    let base = format!("http://127.0.0.1:{port}");
    let device = format!("crash-{}-{}", std::process::id(), port);
    let client = reqwest::Client::new();
    let registered: serde_json::Value = client
        .post(format!("{base}/api/v1/devices"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&serde_json::json!({"device_id": device}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration answer");
    let key = registered["api_key"].as_str().expect("device key").to_owned();

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let measurement = format!("crash_{}_{port}", std::process::id());
    let load = tokio::spawn(load(base.clone(), device.clone(), key.clone(), measurement.clone(), acked.clone()));
    // Kill once writes are flowing, so some are in flight when the process dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().health_ids.len() < 200 || acked.lock().unwrap().batches.len() < 5 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    load.await.expect("load ends when the server is gone");
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    // The server comes back on the crashed database and takes writes again.
    let port = free_port();
    let mut restarted = serve(database, port);
    let answer = client
        .post(format!("http://127.0.0.1:{port}/api/v1/devices/{device}/health"))
        .header("X-API-Key", &key)
        .json(&serde_json::json!({"is_healthy": true, "response_time_ms": 1}))
        .send()
        .await
        .expect("health after restart");
    assert_eq!(answer.status(), 200);
    restarted.kill().expect("stop");
    restarted.wait().expect("reaped");

    let store = SeaOrmStore::connect(database, &StoreOptions::default()).await.expect("open");
    let stored: BTreeSet<i64> = store
        .health_since(&DeviceId::parse(&device).unwrap(), chrono::DateTime::UNIX_EPOCH, usize::MAX)
        .await
        .expect("read health")
        .into_iter()
        .map(|c| c.id.0)
        .collect();
    let lost: Vec<&i64> = acked.health_ids.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged health checks lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let mut per_batch: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for point in store.points_since(&measurement, 0, &[], usize::MAX).await.expect("read points") {
        let batch = point.tags().iter().find(|(k, _)| k == "batch").map(|(_, v)| v.clone()).unwrap_or_default();
        *per_batch.entry(batch).or_default() += 1;
    }
    for batch in &acked.batches {
        assert_eq!(
            per_batch.get(&batch.to_string()),
            Some(&LINES_PER_BATCH),
            "acknowledged batch {batch} is incomplete"
        );
    }
    eprintln!(
        "SIGKILL under load: {} acknowledged health checks and {} acknowledged batches ({} points), all found \
         after restart ({} health checks stored in all)",
        acked.health_ids.len(),
        acked.batches.len(),
        acked.batches.len() * LINES_PER_BATCH,
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_mid_load_and_recover(&format!("sqlite://{}", dir.path().join("crash.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_on_postgres() {
    let Some(url) = std::env::var("HOMEPOT_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SKIPPED sigkill_loses_no_acknowledged_write_on_postgres: set HOMEPOT_TEST_DATABASE_URL");
        return;
    };
    kill_mid_load_and_recover(&url).await;
}
