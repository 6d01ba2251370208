//! Forwarding every accepted sample to other time-series stores (VictoriaMetrics, Prometheus,
//! Mimir) by Prometheus remote write, through a durable queue: a batch is in the queue, synced,
//! before its sender is answered, and each target is sent the queue in order from its own
//! cursor, retried with exponential backoff and jitter (never sooner than a `Retry-After`)
//! until it answers 2xx. A 4xx other than 429 drops that batch for that target, counted and
//! logged. Delivery is at least once: a batch sent just before a crash may be sent again, which
//! remote write receivers take as the same samples.
//!
//! Samples are named as the Prometheus query API names them (`promql::series_name`), so a
//! query gives the same answer on homepot and on the target.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use homepot_core::ingest::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use homepot_core::promql::series_name;
use homepot_core::{FieldValue, Point};
use tokio::sync::Notify;

use crate::queue::DurableQueue;

/// Where to send.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The receiver's remote write URL (`http://vm:8428/api/v1/write`).
    pub url: String,
    /// Credentials for it.
    pub auth: ForwardAuth,
}

impl std::fmt::Debug for ForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardTarget").field("url", &self.url).finish_non_exhaustive()
    }
}

/// How a target is authenticated. `Debug` shows the kind, never the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ForwardAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// Basic auth.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForwardAuth::None => "None",
            ForwardAuth::Bearer(_) => "Bearer(..)",
            ForwardAuth::Basic { .. } => "Basic(..)",
        })
    }
}

/// Forwarding settings: off without targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// The targets, each sent everything.
    pub targets: Vec<ForwardTarget>,
    /// The queue's directory.
    pub queue_dir: PathBuf,
    /// Past this many queued bytes the oldest batches are dropped (and counted).
    pub queue_max_bytes: u64,
    /// Each request's timeout.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, with jitter, up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest delay between retries.
    pub max_backoff: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            queue_dir: PathBuf::from("homepot-forward"),
            queue_max_bytes: 1024 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What forwarding has done, per target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardStatus {
    /// The target's URL.
    pub url: String,
    /// Batches the target accepted.
    pub sent: u64,
    /// Batches it refused with a 4xx other than 429, dropped.
    pub rejected: u64,
    /// Batches dropped unsent: the byte cap, or a corrupt queue record.
    pub dropped: u64,
    /// Queued bytes not yet sent.
    pub pending_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    rejected: AtomicU64,
}

/// The queue and its targets.
#[derive(Debug)]
pub(crate) struct Forwarder {
    queue: Arc<DurableQueue>,
    settings: ForwardSettings,
    counters: Vec<Counters>,
    appended: Notify,
}

/// The numeric fields of `points` as one remote write request, or `None` when there is none.
fn encode(points: &[&[Point]]) -> Option<Vec<u8>> {
    let mut timeseries = Vec::new();
    for point in points.iter().flat_map(|p| p.iter()) {
        let time_ms = point.timestamp_ns().div_euclid(1_000_000);
        for (field, value) in point.fields() {
            let value = match value {
                FieldValue::Float(v) => *v,
                FieldValue::Integer(v) => *v as f64,
                FieldValue::UInteger(v) => *v as f64,
                FieldValue::Boolean(v) => f64::from(u8::from(*v)),
                FieldValue::String(_) => continue,
            };
            let mut labels = vec![Label { name: "__name__".to_owned(), value: series_name(point.name(), field) }];
            labels.extend(point.tags().iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries { labels, samples: vec![Sample { value, timestamp: time_ms }] });
        }
    }
    (!timeseries.is_empty()).then(|| remote_write::encode(&WriteRequest { timeseries, metadata: vec![] }))
}

impl Forwarder {
    /// Opens the queue.
    pub(crate) fn open(settings: ForwardSettings) -> std::io::Result<Self> {
        let queue = DurableQueue::open(&settings.queue_dir, settings.targets.len(), settings.queue_max_bytes)?;
        let counters = settings.targets.iter().map(|_| Counters::default()).collect();
        Ok(Self { queue: Arc::new(queue), settings, counters, appended: Notify::new() })
    }

    /// Queues `batches` durably. A failure is logged and counted: the samples are stored
    /// in homepot already, only the forwarding of them is lost.
    pub(crate) async fn append(&self, batches: &[&[Point]]) {
        let Some(body) = encode(batches) else { return };
        let queue = Arc::clone(&self.queue);
        let outcome = tokio::task::spawn_blocking(move || queue.append(&body)).await;
        match outcome {
            Ok(Ok(())) => self.appended.notify_waiters(),
            Ok(Err(error)) => tracing::error!(%error, "forwarding queue write failed: samples not forwarded"),
            Err(error) => tracing::error!(%error, "forwarding queue write failed: samples not forwarded"),
        }
    }

    /// Per-target figures.
    pub(crate) fn status(&self) -> Vec<ForwardStatus> {
        self.settings
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let counts = self.queue.counts(i);
                ForwardStatus {
                    url: target.url.clone(),
                    sent: self.counters[i].sent.load(Ordering::Relaxed),
                    rejected: self.counters[i].rejected.load(Ordering::Relaxed),
                    dropped: counts.dropped,
                    pending_bytes: counts.pending_bytes,
                }
            })
            .collect()
    }

    /// Sends target `index` its queue, forever.
    pub(crate) async fn send_forever(self: Arc<Self>, index: usize) {
        let client = match crate::outbound::client(self.settings.timeout) {
            Ok(client) => client,
            Err(error) => return tracing::error!(%error, "remote write forwarding cannot start"),
        };
        let target = &self.settings.targets[index];
        loop {
            let queue = Arc::clone(&self.queue);
            // Registered before looking, so an append between the look and the wait wakes it.
            let appended = self.appended.notified();
            let next = tokio::task::spawn_blocking(move || queue.next(index)).await;
            let (body, after) = match next {
                Ok(Ok(Some(next))) => next,
                Ok(Ok(None)) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), appended).await;
                    continue;
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, url = %target.url, "forwarding queue read failed");
                    tokio::time::sleep(self.settings.max_backoff).await;
                    continue;
                }
                Err(_) => return,
            };
            let mut delays = backon::ExponentialBuilder::default()
                .with_min_delay(self.settings.min_backoff)
                .with_max_delay(self.settings.max_backoff)
                .with_jitter()
                .without_max_times()
                .build();
            loop {
                match self.send(&client, target, body.clone()).await {
                    Ok(()) => {
                        self.counters[index].sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(Failure::Refused(reason)) => {
                        self.counters[index].rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(url = %target.url, %reason, "remote write target refused a batch: dropped");
                        break;
                    }
                    Err(Failure::Retry(reason, after)) => {
                        let delay = delays.next().unwrap_or(self.settings.max_backoff).max(after.unwrap_or_default());
                        tracing::warn!(url = %target.url, %reason, ?delay, "remote write target unavailable: retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            let queue = Arc::clone(&self.queue);
            if let Ok(Err(error)) = tokio::task::spawn_blocking(move || queue.advance(index, after)).await {
                tracing::error!(%error, "forwarding cursor not saved: the batch may be sent again");
            }
        }
    }

    async fn send(&self, client: &reqwest::Client, target: &ForwardTarget, body: Vec<u8>) -> Result<(), Failure> {
        let mut request = client
            .post(&target.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        request = match &target.auth {
            ForwardAuth::None => request,
            ForwardAuth::Bearer(token) => request.bearer_auth(token),
            ForwardAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
        };
        let response = request.send().await.map_err(|e| Failure::Retry(e.to_string(), None))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Retry(format!("HTTP {status}"), crate::outbound::retry_after(&response)))
        } else {
            Err(Failure::Refused(format!("HTTP {status}")))
        }
    }
}

enum Failure {
    Retry(String, Option<Duration>),
    Refused(String),
}
