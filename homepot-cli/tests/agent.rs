//! `homepot agent` against a real `homepot serve`, both as processes: a server outage, an
//! agent killed mid-send, a server killed between commit and answer, a full queue and a
//! refusing server. Every sample arrives exactly once, at the time it was taken, or is
//! counted as dropped or rejected.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use homepot_engine::queue::DurableQueue;
use serde_json::Value;

mod common;

use common::{BIN, free_port};

const ADMIN_KEY: &str = "agent-test-admin-key";

struct Server {
    child: Child,
    port: u16,
    database: String,
}

impl Server {
    fn start(database: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let mut env = env.to_vec();
        env.push(("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"));
        // Counting stored rows needs every sample stored: the filter would keep only changes.
        env.push(("SMART_FILTER_ENABLED", "false"));
        Self { child: common::serve(database, port, ADMIN_KEY, &env), port, database: database.to_owned() }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn register(&self, device: &str) -> String {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/devices", self.base()))
            .header("X-API-Key", ADMIN_KEY)
            .json(&serde_json::json!({"device_id": device}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("answer");
        answer["api_key"].as_str().expect("key").to_owned()
    }

    /// `GET path` with the admin key, as JSON.
    async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base()))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .expect("sent");
        response.json().await.expect("JSON answer")
    }

    /// The device's stored checks' sample times, oldest first, duplicates kept.
    async fn checked_at(&self, device: &str) -> Vec<DateTime<Utc>> {
        let answer = self.get(&format!("/api/v1/devices/{device}/health?hours=2&limit=10000")).await;
        let mut times: Vec<DateTime<Utc>> = answer["health_checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| c["checked_at"].as_str().unwrap().parse().unwrap())
            .collect();
        times.sort();
        times
    }

    /// Timestamps of the device's stored `host_system` points, duplicates kept.
    async fn host_points(&self, device: &str) -> Vec<i64> {
        let path = format!("/api/v1/metrics/history?name=host_system&hours=2&limit=10000&tag=device_id:{device}");
        let answer = self.get(&path).await;
        answer["points"].as_array().expect("points").iter().map(|p| p["timestamp_ns"].as_i64().unwrap()).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Agent(Child);

impl Agent {
    fn start(base: &str, device: &str, key: &str, state: &Path, extra: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(state.with_extension("log")).unwrap();
        let child = Command::new(BIN)
            .args(["agent", "--server", base, "--device-id", device, "--key", key, "--state-dir"])
            .arg(state)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        Self(child)
    }

    fn sigkill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let status = self.0.wait().expect("agent exits");
        assert!(status.success(), "agent exit: {status:?}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(state: &Path) -> Value {
    let output = Command::new(BIN).args(["agent", "status", "--json", "--state-dir"]).arg(state).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("status JSON")
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops `agent` and lets an agent that collects once more (at its start) send the queue
/// out; the final counters.
async fn drain(agent: Agent, base: &str, device: &str, key: &str, state: &Path) -> Value {
    agent.stop();
    let before = count(&status(state), "collected");
    let agent = Agent::start(base, device, key, state, &["--interval", "1h"]);
    wait_for("the queue to drain", Duration::from_secs(120), || {
        let now = status(state);
        count(&now, "collected") > before && count(&now, "queued_batches") == 0
    })
    .await;
    agent.stop();
    status(state)
}

fn count(status: &Value, field: &str) -> u64 {
    status[field].as_u64().unwrap_or_else(|| panic!("{field} in {status}"))
}

fn assert_distinct<T: Ord + Clone + std::fmt::Debug>(what: &str, items: &[T]) {
    let set: BTreeSet<T> = items.iter().cloned().collect();
    assert_eq!(set.len(), items.len(), "duplicate {what}");
}

fn setup() -> (tempfile::TempDir, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("server.db").display());
    (dir, database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_server_outage_loses_nothing_and_duplicates_nothing() {
    let (dir, database) = setup();
    let port = free_port();
    let mut server = Server::start(&database, port, &[]);
    let key = server.register("agent-outage").await;
    let state = dir.path().join("agent");
    let agent = Agent::start(&server.base(), "agent-outage", &key, &state, &["--interval", "1s"]);
    wait_for("first batches", Duration::from_secs(30), || count(&status(&state), "sent") >= 3).await;
    server.kill();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let queued = count(&status(&state), "queued_batches");
    assert!(queued >= 25, "the agent kept collecting while the server was away: {queued} queued");
    let server = Server::start(&server.database.clone(), port, &[]);
    wait_for("the backlog to drain", Duration::from_secs(120), || count(&status(&state), "queued_batches") <= 1).await;
    let last = drain(agent, &server.base(), "agent-outage", &key, &state).await;
    let collected = count(&last, "collected");
    assert_eq!(
        (count(&last, "dropped"), count(&last, "rejected"), count(&last, "queued_batches")),
        (0, 0, 0),
        "{last}"
    );
    assert_eq!(count(&last, "sent"), collected, "{last}");
    let times = server.checked_at("agent-outage").await;
    assert_eq!(times.len() as u64, collected, "every batch's health check is stored once");
    assert_distinct("sample times", &times);
    // The last batch is the draining agent's, taken later.
    let widest = times[..times.len() - 1].windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < chrono::TimeDelta::milliseconds(2500), "no gap in the samples: widest {widest}");
    let span = *times.last().unwrap() - times[0];
    assert!(span.to_std().unwrap() >= down.elapsed().min(Duration::from_secs(30)), "the outage is covered: {span}");
    let points = server.host_points("agent-outage").await;
    assert_eq!(points.len() as u64, collected, "every batch's points are stored once");
    eprintln!(
        "outage of 30 s: {collected} batches, {queued} of them queued while the server was away, all stored once"
    );
}

/// Reads every batch a stopped agent's queue holds.
fn queued_times(state: &Path) -> BTreeSet<DateTime<Utc>> {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(state.join("queue")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let queue = DurableQueue::open_single(copy.path(), u64::MAX).unwrap();
    let mut times = BTreeSet::new();
    while let Some((payload, after)) = queue.next(0).unwrap() {
        let batch: Value = serde_json::from_slice(&payload).unwrap();
        let taken_at: DateTime<Utc> = batch["taken_at"].as_str().unwrap().parse().unwrap();
        // The API shows times to the millisecond.
        times.insert(taken_at.duration_trunc(chrono::TimeDelta::milliseconds(1)).unwrap());
        queue.advance(0, after).unwrap();
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_send_loses_nothing_and_duplicates_nothing() {
    let (dir, database) = setup();
    let port = free_port();
    let state = dir.path().join("agent");
    // A backlog first, with the agent killed three times while it collects.
    let mut server = Server::start(&database, port, &[]);
    let key = server.register("agent-kill").await;
    server.kill();
    for _ in 0..3 {
        let agent = Agent::start(&server.base(), "agent-kill", &key, &state, &["--interval", "50ms"]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        agent.sigkill();
    }
    let backlog = queued_times(&state);
    assert!(backlog.len() >= 30, "{} batches queued", backlog.len());
    // Then the server is back and the agent is killed twice while it drains, slowly.
    let server = Server::start(&database, port, &[]);
    let slow = ["--interval", "1h", "--drain-rate", "10"];
    for pause in [1500, 1100] {
        let agent = Agent::start(&server.base(), "agent-kill", &key, &state, &slow);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        agent.sigkill();
    }
    let agent = Agent::start(&server.base(), "agent-kill", &key, &state, &slow);
    wait_for("the backlog to drain", Duration::from_secs(60), || count(&status(&state), "queued_batches") == 0).await;
    agent.stop();
    let stored = server.checked_at("agent-kill").await;
    assert_distinct("sample times", &stored);
    let stored: BTreeSet<DateTime<Utc>> = stored.into_iter().collect();
    let lost: Vec<_> = backlog.difference(&stored).collect();
    assert!(lost.is_empty(), "{} queued batches never stored, e.g. {:?}", lost.len(), lost.first());
    assert_distinct("points", &server.host_points("agent-kill").await);
    eprintln!("agent SIGKILLed 5 times: {} queued batches, all stored once ({} in all)", backlog.len(), stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_between_commit_and_answer_stores_the_retry_once() {
    let (dir, database) = setup();
    let port = free_port();
    let mut server = Server::start(&database, port, &[("HOMEPOT_FAULT_KILL_AFTER_COMMITS", "6")]);
    let key = server.register("agent-commit").await;
    let state = dir.path().join("agent");
    let agent = Agent::start(&server.base(), "agent-commit", &key, &state, &["--interval", "300ms"]);
    wait_for("the server to kill itself", Duration::from_secs(30), || server.child.try_wait().unwrap().is_some()).await;
    let killed = server.child.try_wait().unwrap();
    let sent_before = count(&status(&state), "sent");
    let server = Server::start(&database, port, &[]);
    wait_for("more batches", Duration::from_secs(60), || count(&status(&state), "sent") >= sent_before + 5).await;
    let last = drain(agent, &server.base(), "agent-commit", &key, &state).await;
    assert_eq!((count(&last, "dropped"), count(&last, "rejected")), (0, 0), "{last}");
    let times = server.checked_at("agent-commit").await;
    assert_distinct("sample times", &times);
    assert_eq!(times.len() as u64, count(&last, "collected"), "{last}");
    let points = server.host_points("agent-commit").await;
    assert_distinct("points", &points);
    assert_eq!(points.len(), times.len());
    eprintln!("server killed ({killed:?}) after a commit it never answered: {} batches, each stored once", times.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent");
    // Nothing listens there: every batch stays queued.
    let base = format!("http://127.0.0.1:{}", free_port());
    let agent =
        Agent::start(&base, "agent-full", "no-key", &state, &["--interval", "20ms", "--queue-max-bytes", "65536"]);
    wait_for("drops", Duration::from_secs(60), || count(&status(&state), "dropped") >= 10).await;
    agent.stop();
    let last = status(&state);
    let (collected, queued, dropped) =
        (count(&last, "collected"), count(&last, "queued_batches"), count(&last, "dropped"));
    assert_eq!(collected, queued + dropped, "every batch is queued or counted as dropped: {last}");
    assert!(count(&last, "queued_bytes") <= 65_536 + 8_192, "{last}");
    let oldest: DateTime<Utc> = last["oldest_queued"].as_str().unwrap().parse().unwrap();
    let oldest = oldest.duration_trunc(chrono::TimeDelta::milliseconds(1)).unwrap();
    assert_eq!(Some(&oldest), queued_times(&state).first(), "the oldest left is what the queue holds first");
    eprintln!("full queue: {collected} collected, {dropped} oldest dropped, {queued} kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_is_dropped_and_counted_not_retried() {
    let (dir, database) = setup();
    let port = free_port();
    // Each batch has more series than the key may create: its metrics get 422.
    let server = Server::start(&database, port, &[("HOMEPOT_METRICS_MAX_SERIES_PER_KEY", "3")]);
    let key = server.register("agent-422").await;
    let state = dir.path().join("agent");
    let agent = Agent::start(&server.base(), "agent-422", &key, &state, &["--interval", "200ms"]);
    wait_for("rejections", Duration::from_secs(30), || count(&status(&state), "rejected") >= 5).await;
    let last = drain(agent, &server.base(), "agent-422", &key, &state).await;
    assert_eq!(count(&last, "rejected"), count(&last, "collected"), "{last}");
    assert_eq!(count(&last, "sent"), 0, "{last}");
    assert!(last["last_error"].as_str().unwrap().contains("422"), "{last}");
    // The health checks of those batches were accepted, once each.
    let times = server.checked_at("agent-422").await;
    assert_distinct("sample times", &times);
    assert_eq!(times.len() as u64, count(&last, "collected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_host_metrics_shows_its_own_machine_live() {
    let (_dir, database) = setup();
    let server = Server::start(&database, free_port(), &[("HOMEPOT_HOST_METRICS_SECONDS", "1")]);
    let mut live = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        live = server.get("/api/v1/metrics?name=host_memory").await;
        if live["metrics"]["host_memory"].is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metric = &live["metrics"]["host_memory"];
    assert!(metric["tags"]["host"].is_string(), "{live}");
    assert!(metric["fields"]["total_bytes"].as_i64().is_some_and(|b| b > 0), "{live}");
}
