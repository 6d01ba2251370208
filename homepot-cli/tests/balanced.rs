//! Three `homepot serve` processes on one PostgreSQL database behind nginx as a round-robin
//! proxy, one of them killed with SIGKILL mid-run and started again, while 200 devices send
//! health checks, writers send `/write` batches and senders remote-write requests, each
//! retrying with its `Idempotency-Key`
//! until it is acknowledged: every acknowledged write is stored exactly once, no device's
//! state timeline repeats a transition, and every instance answers a query alike. Skips
//! without PostgreSQL (`HOMEPOT_TEST_DATABASE_URL`) or nginx.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use homepot_core::DeviceId;
use homepot_core::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use homepot_storage::{AnalyticsStore, HealthStore, MetricStore};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::{KilledOnDrop, isolated_postgres_url, unique};
use serde_json::{Value, json};

const INSTANCES: usize = 3;
const DEVICES: usize = 200;
const CHECKS_PER_DEVICE: usize = 20;
const WRITERS: usize = 4;
const BATCHES_PER_WRITER: usize = 25;
const POINTS_PER_BATCH: usize = 50;
const REMOTE_SENDERS: usize = 2;
const REMOTE_REQUESTS: usize = 20;
const SAMPLES_PER_REQUEST: usize = 100;
/// How long a sender keeps retrying one request before the test fails.
const GIVE_UP: Duration = Duration::from_secs(60);

fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// One `homepot serve` on `database` at `port`.
fn instance(database: &str, port: u16, admin: &str, n: usize) -> KilledOnDrop {
    let id = format!("balanced-{n}");
    let env = [
        ("HOMEPOT_INSTANCE_ID", id.as_str()),
        // Every check stored, so that what was acknowledged can be counted.
        ("SMART_FILTER_ENABLED", "false"),
        // One address sends for the whole fleet.
        ("RATE_LIMIT_REQUESTS_PER_MINUTE", "600000"),
        ("RATE_LIMIT_BURST", "100000"),
    ];
    KilledOnDrop(common::serve(database, port, admin, &env))
}

/// nginx in the foreground on `port`, round-robin over `upstreams`.
fn proxy(nginx: &PathBuf, dir: &std::path::Path, port: u16, upstreams: &[u16]) -> KilledOnDrop {
    use std::os::unix::fs::PermissionsExt;
    // Readable by nginx's worker, whichever user it drops to.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let servers: String =
        upstreams.iter().map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=1s; ")).collect();
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log; \
         events {{ worker_connections 1024; }} \
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; \
           fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
           upstream homepot {{ {servers} keepalive 32; }} \
           server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://homepot; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new(nginx)
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &path.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    KilledOnDrop(child)
}

/// Requests sent again after a failure, over the whole test.
static RETRIES: AtomicUsize = AtomicUsize::new(0);

/// Sends a request until it is answered `expected`, with the same idempotency key each time:
/// a refused connection, a proxy's 502 (its instance died mid-request) or a 503 is retried.
/// Deliberately no 500: nothing in this load may fail inside a server.
async fn until_acknowledged(request: impl Fn() -> reqwest::RequestBuilder, expected: u16) -> Value {
    let deadline = Instant::now() + GIVE_UP;
    for attempt in 0.. {
        if attempt > 0 {
            RETRIES.fetch_add(1, Ordering::Relaxed);
        }
        match request().send().await {
            Ok(response) if response.status().as_u16() == expected => {
                return response.json().await.unwrap_or(Value::Null);
            }
            // The proxy's 502 and 504 when an instance dies with the request, or a 503 when a
            // writer's queue is full: retryable. A 500 is a defect (a deadlock, say).
            Ok(response) if [502, 503, 504].contains(&response.status().as_u16()) => {}
            Ok(response) => {
                let status = response.status();
                panic!("answered {status}: {}", response.text().await.unwrap_or_default());
            }
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("the loop returns or panics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_behind_nginx_store_every_acknowledged_write_once() {
    let Some(nginx) = nginx() else {
        eprintln!("SKIPPED three_instances_behind_nginx_store_every_acknowledged_write_once: nginx is not installed");
        return;
    };
    let Some(database) =
        isolated_postgres_url("three_instances_behind_nginx_store_every_acknowledged_write_once").await
    else {
        return;
    };
    let admin = format!("balanced-admin-{}", unique(""));
    let ports: Vec<u16> = (0..INSTANCES).map(|_| common::free_port()).collect();
    // One after the other: the first creates the schema.
    let mut instances: Vec<KilledOnDrop> =
        ports.iter().enumerate().map(|(n, port)| instance(&database, *port, &admin, n)).collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let proxy_port = common::free_port();
    let _nginx = proxy(&nginx, dir.path(), proxy_port, &ports);
    let base = format!("http://127.0.0.1:{proxy_port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let run = unique("");
    let mut registrations = Vec::new();
    for n in 0..DEVICES {
        let (client, base, admin) = (client.clone(), base.clone(), admin.clone());
        let device = format!("lb-{run}-{n:03}");
        registrations.push(tokio::spawn(async move {
            let body = json!({"device_id": device});
            let url = format!("{base}/api/v1/devices");
            let answer = until_acknowledged(|| client.post(&url).header("X-API-Key", &admin).json(&body), 201).await;
            (device, answer["api_key"].as_str().expect("a device key").to_owned())
        }));
    }
    let mut devices = Vec::new();
    for registration in registrations {
        devices.push(registration.await.expect("registered"));
    }

    // The load: every device's checks one after another, the writers' batches beside them.
    let mut checks = Vec::new();
    for (device, key) in devices.clone() {
        let (client, base) = (client.clone(), base.clone());
        checks.push(tokio::spawn(async move {
            let url = format!("{base}/api/v1/devices/{device}/health");
            let mut acknowledged = BTreeSet::new();
            for seq in 0..CHECKS_PER_DEVICE {
                let body = json!({"is_healthy": seq % 4 != 2, "response_time_ms": 10 + seq});
                let idempotency = format!("{device}-{seq}");
                let answer = until_acknowledged(
                    || client.post(&url).header("X-API-Key", &key).header("Idempotency-Key", &idempotency).json(&body),
                    200,
                )
                .await;
                acknowledged.insert(answer["health_check_id"].as_i64().expect("an id"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (device, acknowledged)
        }));
    }
    let series = format!("balanced_{run}");
    let start_ns = Utc::now().timestamp_nanos_opt().expect("now");
    let mut writes = Vec::new();
    for writer in 0..WRITERS {
        let (client, base, admin, series) = (client.clone(), base.clone(), admin.clone(), series.clone());
        writes.push(tokio::spawn(async move {
            let url = format!("{base}/write");
            for batch in 0..BATCHES_PER_WRITER {
                let lines: Vec<String> = (0..POINTS_PER_BATCH)
                    .map(|i| {
                        let at = start_ns + ((batch * POINTS_PER_BATCH + i) as i64) * 1_000;
                        format!("{series},writer=w{writer} value={i} {at}")
                    })
                    .collect();
                let body = lines.join("\n");
                let idempotency = format!("{series}-{writer}-{batch}");
                until_acknowledged(
                    || {
                        client
                            .post(&url)
                            .header("X-API-Key", &admin)
                            .header("Idempotency-Key", &idempotency)
                            .body(body.clone())
                    },
                    204,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        }));
    }
    let remote_series = format!("balanced_remote_{run}");
    let start_ms = Utc::now().timestamp_millis();
    for sender in 0..REMOTE_SENDERS {
        let (client, base, admin, name) = (client.clone(), base.clone(), admin.clone(), remote_series.clone());
        writes.push(tokio::spawn(async move {
            let url = format!("{base}/api/v1/write");
            for request in 0..REMOTE_REQUESTS {
                let label = |name: &str, value: &str| Label { name: name.into(), value: value.into() };
                let samples = (0..SAMPLES_PER_REQUEST)
                    .map(|i| Sample {
                        value: i as f64,
                        timestamp: start_ms + (request * SAMPLES_PER_REQUEST + i) as i64,
                    })
                    .collect();
                let series = TimeSeries {
                    labels: vec![label("__name__", &name), label("sender", &format!("s{sender}"))],
                    samples,
                };
                let body = encode(&WriteRequest { timeseries: vec![series], metadata: vec![] });
                let idempotency = format!("{name}-{sender}-{request}");
                until_acknowledged(
                    || {
                        client
                            .post(&url)
                            .header("Authorization", format!("Bearer {admin}"))
                            .header("Content-Type", "application/x-protobuf")
                            .header("Content-Encoding", "snappy")
                            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                            .header("Idempotency-Key", &idempotency)
                            .body(body.clone())
                    },
                    204,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        }));
    }
    // Mid-run, the second instance dies without a word, and comes back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!checks.iter().all(tokio::task::JoinHandle::is_finished), "the kill lands mid-run");
    instances[1].0.kill().expect("SIGKILL");
    instances[1].0.wait().expect("reaped");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    instances[1] = instance(&database, ports[1], &admin, 1);

    let mut acknowledged: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for task in checks {
        let (device, ids) = task.await.expect("a device's checks");
        assert_eq!(ids.len(), CHECKS_PER_DEVICE, "{device}: each check acknowledged under an id of its own");
        acknowledged.insert(device, ids);
    }
    for task in writes {
        task.await.expect("a writer's batches");
    }
    eprintln!("requests sent again after a failure: {}", RETRIES.load(Ordering::Relaxed));

    let store = SeaOrmStore::connect(&database, &StoreOptions::default()).await.expect("the database");
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    for (device, ids) in &acknowledged {
        let id = DeviceId::parse(device).expect("an id");
        let stored: BTreeSet<i64> =
            store.health_since(&id, epoch, 1_000).await.expect("checks").into_iter().map(|c| c.id.0).collect();
        assert_eq!(&stored, ids, "{device}: the acknowledged checks, each stored once");

        let history = store.state_history(device, epoch, 1_000).await.expect("history");
        let mut previous: Option<String> = None;
        for change in history.iter().rev() {
            assert_eq!(change.previous_state, previous, "{device}: each transition starts where the last ended");
            assert_ne!(Some(&change.new_state), previous.as_ref(), "{device}: no transition repeats");
            previous = Some(change.new_state.clone());
        }
        assert!(!history.is_empty(), "{device}: its first check made it online");
    }
    let points = store.points_since(&series, 0, &[], 1_000_000).await.expect("points");
    let distinct: BTreeSet<(String, i64)> = points.iter().map(|p| (p.tags()[0].1.clone(), p.timestamp_ns())).collect();
    assert_eq!(points.len(), WRITERS * BATCHES_PER_WRITER * POINTS_PER_BATCH, "every acknowledged point once");
    assert_eq!(distinct.len(), points.len());
    let remote = store.points_since(&remote_series, 0, &[], 1_000_000).await.expect("samples");
    assert_eq!(remote.len(), REMOTE_SENDERS * REMOTE_REQUESTS * SAMPLES_PER_REQUEST, "every acknowledged sample once");

    // Each instance, asked directly, answers from the same database alike.
    for (device, _) in acknowledged.iter().take(5) {
        let mut answers = Vec::new();
        for port in &ports {
            let url = format!("http://127.0.0.1:{port}/api/v1/devices/{device}/health?limit=1000");
            let answer: Value =
                client.get(&url).header("X-API-Key", &admin).send().await.expect("sent").json().await.expect("JSON");
            answers.push(answer);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{device}: {answers:?}");
        assert_eq!(answers[0]["health_checks"].as_array().map(Vec::len), Some(CHECKS_PER_DEVICE));
    }
}
