//! Service counters (`GET /api/v1/stats`): the engine counts writes, the adapters count
//! requests, stream events and MQTT messages. Relaxed atomics: each is a monotonic tally read
//! for display, with no ordering relation to anything else.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// What the server has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    metrics_received_total: AtomicU64,
    sse_events_sent: AtomicU64,
    sse_subscribers: AtomicUsize,
    mqtt_messages_received: AtomicU64,
    mqtt_messages_rejected: AtomicU64,
    analytics_logged: AtomicU64,
    analytics_dropped: AtomicU64,
    /// Unix milliseconds of the last commit, and of the last commit that storage refused for
    /// a reason of its own (unreachable, locked, read-only, full).
    last_write_ok_ms: AtomicI64,
    last_write_unavailable_ms: AtomicI64,
}

/// How long after a failed commit, with no successful one since, `/health` reports storage
/// failing: long enough to be seen, short enough to clear by itself once no one writes.
const WRITE_FAILURE_SHOWN_MS: i64 = 30_000;

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub requests_total: u64,
    pub errors_total: u64,
    pub metrics_received_total: u64,
    pub sse_events_sent: u64,
    pub sse_subscribers: usize,
    pub mqtt_messages_received: u64,
    pub mqtt_messages_rejected: u64,
    pub analytics_logged: u64,
    pub analytics_dropped: u64,
}

impl Stats {
    /// Counts an answered request; `status` ≥ 400 also counts as an error.
    pub fn request(&self, status: u16) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if status >= 400 {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts metric points that were stored.
    pub fn metrics_received(&self, points: usize) {
        self.metrics_received_total.fetch_add(points as u64, Ordering::Relaxed);
    }

    /// Records the outcome of a commit: `unavailable` when storage itself refused it.
    pub fn write_outcome(&self, unavailable: bool, now_ms: i64) {
        let slot = if unavailable { &self.last_write_unavailable_ms } else { &self.last_write_ok_ms };
        slot.store(now_ms, Ordering::Relaxed);
    }

    /// Whether the latest commit failed because of storage, recently enough to report: a ping
    /// can succeed while writes cannot (a locked or read-only SQLite file).
    pub fn writes_failing(&self, now_ms: i64) -> bool {
        let failed = self.last_write_unavailable_ms.load(Ordering::Relaxed);
        failed > self.last_write_ok_ms.load(Ordering::Relaxed) && now_ms - failed < WRITE_FAILURE_SHOWN_MS
    }

    /// Counts an MQTT data message received.
    pub fn mqtt_message(&self) {
        self.mqtt_messages_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an MQTT data message dropped as malformed or unstorable.
    pub fn mqtt_rejected(&self) {
        self.mqtt_messages_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts request logs stored.
    pub fn analytics_logged(&self, logs: usize) {
        self.analytics_logged.fetch_add(logs as u64, Ordering::Relaxed);
    }

    /// Counts request logs dropped (queue full or storage failed).
    pub fn analytics_dropped(&self, logs: usize) {
        self.analytics_dropped.fetch_add(logs as u64, Ordering::Relaxed);
    }

    /// Counts one stream event sent.
    pub fn sse_event(&self) {
        self.sse_events_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a stream subscriber until the guard is dropped (the client went away).
    pub fn subscribe(self: &std::sync::Arc<Self>) -> SubscriberGuard {
        self.sse_subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(std::sync::Arc::clone(self))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests_total: self.requests_total.load(Ordering::Relaxed),
            errors_total: self.errors_total.load(Ordering::Relaxed),
            metrics_received_total: self.metrics_received_total.load(Ordering::Relaxed),
            sse_events_sent: self.sse_events_sent.load(Ordering::Relaxed),
            sse_subscribers: self.sse_subscribers.load(Ordering::Relaxed),
            mqtt_messages_received: self.mqtt_messages_received.load(Ordering::Relaxed),
            mqtt_messages_rejected: self.mqtt_messages_rejected.load(Ordering::Relaxed),
            analytics_logged: self.analytics_logged.load(Ordering::Relaxed),
            analytics_dropped: self.analytics_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Counts a stream subscriber while it lives.
#[derive(Debug)]
pub struct SubscriberGuard(std::sync::Arc<Stats>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.sse_subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
