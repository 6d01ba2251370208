//! Drains the agent's queue to the server, oldest batch first, at most `drain_rate` batches a
//! second. Each request carries an `Idempotency-Key` derived from its batch, so sending a batch
//! again (after a timeout, a crash, a restart) is answered from the server's receipt and stores
//! nothing twice. Connection failures, timeouts, 408, 429 and 5xx are retried with exponential
//! backoff and jitter, never sooner than a `Retry-After`; any other 4xx drops the batch,
//! counted as rejected and logged. A batch leaves the queue only once the server answered it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use homepot_engine::queue::DurableQueue;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{AgentSettings, Batch};

/// The counters `homepot agent status` shows, kept in `status.json` in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Status {
    /// Batches queued.
    #[serde(default)]
    pub(crate) collected: u64,
    /// Batches the server accepted.
    pub(crate) sent: u64,
    /// Batches lost before sending: the queue's byte cap, a corrupt record, a failed write.
    pub(crate) dropped: u64,
    /// Batches the server refused (a 4xx other than 408 and 429), not retried.
    pub(crate) rejected: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at: Option<DateTime<Utc>>,
    pub(crate) last_sent_at: Option<DateTime<Utc>>,
}

impl Status {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.json")
    }

    /// The counters stored in `state_dir`, if any.
    pub(crate) fn load(state_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::path(state_dir)).ok()?).ok()
    }

    /// Replaces the stored counters (written aside, then renamed: never half a file).
    fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let scratch = state_dir.join("status.json.new");
        std::fs::write(&scratch, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(scratch, Self::path(state_dir))
    }
}

/// How one request ended.
enum Answer {
    Accepted,
    /// Not to be sent again.
    Refused(String),
    /// Worth another try, not before `after`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// What became of a batch.
enum Outcome {
    Sent,
    Rejected(String),
}

pub(crate) struct Sender {
    settings: AgentSettings,
    queue: Arc<DurableQueue>,
    client: reqwest::Client,
    status: Mutex<Status>,
    woken: Notify,
    /// The last accepted request's round trip, or -1.
    latency_ms: AtomicI64,
    /// Drops the queue had counted when last looked at.
    queue_drops: AtomicU64,
}

impl Sender {
    pub(crate) fn new(settings: &AgentSettings, queue: Arc<DurableQueue>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            settings: settings.clone(),
            queue,
            client,
            status: Mutex::new(Status::load(&settings.state_dir).unwrap_or_default()),
            woken: Notify::new(),
            latency_ms: AtomicI64::new(-1),
            queue_drops: AtomicU64::new(0),
        })
    }

    /// A batch was queued.
    pub(crate) fn queued(&self) {
        self.update(|s| s.collected += 1);
        // The append may have pushed the queue past its cap.
        self.count_queue_drops();
        self.woken.notify_one();
    }

    /// The last round trip to the server, for the health check's `network.latency_ms`.
    pub(crate) fn latency_ms(&self) -> Option<i64> {
        Some(self.latency_ms.load(Ordering::Relaxed)).filter(|ms| *ms >= 0)
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut status = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut status);
        if let Err(error) = status.save(&self.settings.state_dir) {
            tracing::warn!(%error, "cannot store the agent's counters");
        }
    }

    fn note_error(&self, error: &str) {
        let error = error.to_owned();
        self.update(|s| {
            s.last_error = Some(error);
            s.last_error_at = Some(Utc::now());
        });
    }

    /// A reading that never reached the queue.
    pub(crate) fn note_lost(&self, error: &str) {
        self.note_error(error);
        self.update(|s| s.dropped += 1);
    }

    /// Adds what the queue dropped since last time to the stored count.
    fn count_queue_drops(&self) {
        let dropped = self.queue.counts(0).dropped;
        let before = self.queue_drops.swap(dropped, Ordering::Relaxed);
        if dropped > before {
            tracing::warn!(dropped = dropped - before, "queued batches dropped: the queue was full or corrupt");
            self.update(|s| s.dropped += dropped - before);
        }
    }

    /// Sends the queue, forever: waits for batches when it is empty.
    pub(crate) async fn run_forever(self: Arc<Self>) -> anyhow::Result<()> {
        let pace = Duration::from_secs_f64(1.0 / f64::from(self.settings.drain_rate));
        loop {
            self.count_queue_drops();
            let queue = Arc::clone(&self.queue);
            let next = tokio::task::spawn_blocking(move || queue.next(0)).await?.context("cannot read the queue")?;
            let Some((payload, after)) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.woken.notified()).await;
                continue;
            };
            let started = Instant::now();
            let outcome = match serde_json::from_slice::<Batch>(&payload) {
                Ok(batch) => self.deliver(&batch).await,
                Err(error) => Outcome::Rejected(format!("unreadable queued batch: {error}")),
            };
            let queue = Arc::clone(&self.queue);
            tokio::task::spawn_blocking(move || queue.advance(0, after)).await?.context("cannot advance the queue")?;
            match outcome {
                Outcome::Sent => self.update(|s| {
                    s.sent += 1;
                    s.last_sent_at = Some(Utc::now());
                }),
                Outcome::Rejected(reason) => {
                    tracing::warn!(%reason, "batch refused by the server: dropped, not retried");
                    self.note_error(&reason);
                    self.update(|s| s.rejected += 1);
                }
            }
            if let Some(rest) = pace.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }

    /// Sends every request of `batch` until each is answered for good.
    async fn deliver(&self, batch: &Batch) -> Outcome {
        let mut refused = Vec::new();
        let health_url = format!("{}/api/v1/devices/{}/health", self.settings.server, self.settings.device_id);
        for (i, report) in batch.health.iter().enumerate() {
            let body = match serde_json::to_vec(report) {
                Ok(body) => body,
                Err(error) => {
                    refused.push(format!("health check {i}: {error}"));
                    continue;
                }
            };
            let key = format!("{}-h{i}", batch.key);
            let request =
                || self.client.post(&health_url).header("Content-Type", "application/json").body(body.clone());
            if let Err(reason) = self.until_answered(&key, request).await {
                refused.push(format!("health check: {reason}"));
            }
        }
        if !batch.lines.is_empty() {
            let url = format!("{}/write", self.settings.server);
            let key = format!("{}-m", batch.key);
            let request = || self.client.post(&url).header("Content-Type", "text/plain").body(batch.lines.clone());
            if let Err(reason) = self.until_answered(&key, request).await {
                refused.push(format!("metrics: {reason}"));
            }
        }
        if refused.is_empty() { Outcome::Sent } else { Outcome::Rejected(refused.join("; ")) }
    }

    /// Sends one request until the server accepts or refuses it; the refusal's reason.
    async fn until_answered(&self, key: &str, request: impl Fn() -> reqwest::RequestBuilder) -> Result<(), String> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(60))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let sent = Instant::now();
            let answer = request().header("X-API-Key", &self.settings.key).header("Idempotency-Key", key).send().await;
            match classify(answer).await {
                Answer::Accepted => {
                    let ms = i64::try_from(sent.elapsed().as_millis()).unwrap_or(i64::MAX);
                    self.latency_ms.store(ms, Ordering::Relaxed);
                    return Ok(());
                }
                Answer::Refused(reason) => return Err(reason),
                Answer::Retry { reason, after } => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(60)).max(after.unwrap_or_default());
                    tracing::info!(%reason, retry_in = ?delay, "server not reachable or busy; batch kept");
                    self.note_error(&reason);
                    self.count_queue_drops();
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

async fn classify(answer: reqwest::Result<reqwest::Response>) -> Answer {
    let response = match answer {
        Ok(response) => response,
        Err(error) => return Answer::Retry { reason: format!("request failed: {error}"), after: None },
    };
    let status = response.status();
    if status.is_success() {
        return Answer::Accepted;
    }
    let after = retry_after(response.headers().get(reqwest::header::RETRY_AFTER));
    let text = response.text().await.unwrap_or_default();
    let reason = format!("HTTP {status}: {}", text.chars().take(500).collect::<String>().trim());
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        Answer::Retry { reason, after }
    } else {
        Answer::Refused(reason)
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(3600)));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    (at - Utc::now()).to_std().ok().map(|d| d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let header = |v: &str| reqwest::header::HeaderValue::from_str(v).unwrap();
        assert_eq!(retry_after(Some(&header("7"))), Some(Duration::from_secs(7)));
        let soon = (Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        assert!(retry_after(Some(&header(&soon))).is_some_and(|d| d > Duration::from_secs(25)));
        assert_eq!(retry_after(Some(&header("soon"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn counters_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Status::load(dir.path()), None);
        let status = Status { sent: 3, rejected: 1, last_error: Some("HTTP 422".into()), ..Status::default() };
        status.save(dir.path()).unwrap();
        assert_eq!(Status::load(dir.path()), Some(status));
    }
}
