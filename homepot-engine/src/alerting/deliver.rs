//! The outbox's delivery: pending notifications are sent in the order they were queued, one
//! receiver at a time in order (a receiver that fails holds back its later messages, not
//! other receivers'). Network errors, 5xx and 429 are retried with exponential backoff and
//! jitter, never sooner than a `Retry-After`; any other 4xx fails the notification for good.
//! Each attempt's outcome is stored, so a restart resumes where delivery stood; a message
//! sent just before a crash may be sent again, with the same id for the receiver to drop.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::BackoffBuilder;
use chrono::TimeDelta;
use homepot_core::alert::{DeliveryState, Notification, Receiver, ReceiverKind};
use homepot_storage::alerts::{AlertConfig, ConfigKind};

use super::Alerting;
use crate::Clock;
use crate::lease::Lease;

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Longest wait for a receiver's answer.
    pub timeout: Duration,
    /// The first retry's delay.
    pub min_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// A notification still undelivered this long after it was made fails.
    pub give_up_after: Duration,
    /// How often the outbox is looked at when nothing wakes it.
    pub poll_interval: Duration,
    /// `generatorURL` of Alertmanager alerts: where this server is reached.
    pub external_url: String,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(1),
            external_url: "http://localhost:8000/api/v1/alerts".to_owned(),
        }
    }
}

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: a network error, a 5xx or a 429; not before `after` if given.
    #[error("{reason}")]
    Retry {
        /// What happened.
        reason: String,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// The receiver refused the message for good (a 4xx other than 429).
    #[error("{0}")]
    Refused(String),
}

/// Sends one notification to one receiver.
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Sends `notification` to `receiver`.
    ///
    /// # Errors
    /// [`SendError`] says whether to retry.
    async fn send(&self, receiver: &Receiver, notification: &Notification) -> Result<(), SendError>;
}

/// Webhooks and Alertmanagers over HTTP(S), with the system's root certificates.
#[derive(Debug, Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    external_url: String,
}

impl HttpNotifier {
    /// A notifier whose requests time out after `policy.timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(policy: &DeliveryPolicy) -> Result<Self, String> {
        let client = crate::outbound::client(policy.timeout)?;
        Ok(Self { client, external_url: policy.external_url.clone() })
    }
}

use crate::outbound::retry_after;

#[async_trait]
impl Notifier for HttpNotifier {
    async fn send(&self, receiver: &Receiver, notification: &Notification) -> Result<(), SendError> {
        let request = match receiver.kind {
            ReceiverKind::Webhook => self
                .client
                .post(&receiver.url)
                .header("Idempotency-Key", &notification.id)
                .json(&notification.webhook_body()),
            ReceiverKind::Alertmanager => {
                let url = format!("{}/api/v2/alerts", receiver.url.trim_end_matches('/'));
                self.client.post(url).json(&notification.alertmanager_body(&self.external_url))
            }
        };
        let response = request.send().await.map_err(|e| SendError::Retry { reason: e.to_string(), after: None })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reason = format!("HTTP {status}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Retry { reason, after: retry_after(&response) })
        } else {
            Err(SendError::Refused(reason))
        }
    }
}

/// The delay before attempt `attempts + 1`: exponential from `min_backoff`, capped, jittered.
fn backoff(policy: &DeliveryPolicy, attempts: u32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(policy.min_backoff)
        .with_max_delay(policy.max_backoff)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(policy.max_backoff)
}

impl Alerting {
    /// One pass over the outbox; how many notifications were attempted.
    pub(crate) async fn deliver_due(&self, notifier: &dyn Notifier, clock: &dyn Clock) -> usize {
        let pending = match self.store.pending_notifications(500).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "alert outbox not read; next pass retries");
                return 0;
            }
        };
        if pending.is_empty() {
            return 0;
        }
        let receivers: HashMap<String, Receiver> = match self.store.alert_configs(ConfigKind::Receiver).await {
            Ok(configs) => configs
                .into_iter()
                .filter_map(|c| match c {
                    AlertConfig::Receiver(r) => Some((r.id.clone(), r)),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "alert receivers not read; next pass retries");
                return 0;
            }
        };
        let policy = &self.settings.delivery;
        let mut held: HashSet<String> = HashSet::new();
        let mut attempted = 0;
        for mut n in pending {
            if held.contains(&n.receiver_id) {
                continue;
            }
            let now = clock.now();
            if n.next_attempt_at > now {
                // Later messages to this receiver wait for this one.
                held.insert(n.receiver_id.clone());
                continue;
            }
            attempted += 1;
            n.attempts += 1;
            let outcome = match receivers.get(&n.receiver_id) {
                Some(receiver) => notifier.send(receiver, &n).await,
                None => Err(SendError::Refused("the receiver was removed".to_owned())),
            };
            let now = clock.now();
            match outcome {
                Ok(()) => {
                    n.state = DeliveryState::Delivered;
                    n.delivered_at = Some(now);
                    tracing::info!(notification = %n.id, receiver = %n.receiver_id, alert = %n.alert_id, "notification delivered");
                }
                Err(SendError::Refused(reason)) => {
                    tracing::warn!(notification = %n.id, receiver = %n.receiver_id, %reason, "notification refused; not retried");
                    n.state = DeliveryState::Failed;
                    n.last_error = Some(reason);
                }
                Err(SendError::Retry { reason, after }) => {
                    held.insert(n.receiver_id.clone());
                    let give_up = TimeDelta::from_std(policy.give_up_after).unwrap_or(TimeDelta::MAX);
                    if now - n.created_at >= give_up {
                        tracing::warn!(notification = %n.id, receiver = %n.receiver_id, %reason, "notification given up");
                        n.state = DeliveryState::Failed;
                        n.last_error = Some(format!("{reason}; given up after {} attempts", n.attempts));
                    } else {
                        let delay = backoff(policy, n.attempts).max(after.unwrap_or_default());
                        n.next_attempt_at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                        tracing::debug!(notification = %n.id, receiver = %n.receiver_id, %reason, ?delay, "notification will be retried");
                        n.last_error = Some(reason);
                    }
                }
            }
            if let Err(error) = self.store.update_notification(&n).await {
                // It stays pending: sent again later, with the same id.
                tracing::warn!(%error, notification = %n.id, "notification outcome not stored");
            }
        }
        attempted
    }
}

/// Delivers notifications until aborted, while this instance holds `lease`: woken when some
/// are queued, and every poll interval.
pub(crate) async fn deliver_forever(
    alerting: Arc<Alerting>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    lease: Lease,
) {
    let poll = alerting.settings.delivery.poll_interval.max(Duration::from_millis(10));
    loop {
        // Only the lease holder sends: every instance reads the same outbox, and each
        // notification must leave once.
        if lease.hold().await {
            alerting.deliver_due(notifier.as_ref(), clock.as_ref()).await;
        }
        let _ = tokio::time::timeout(poll, alerting.queued.notified()).await;
    }
}
