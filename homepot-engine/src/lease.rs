//! Work that one instance at a time must do when several share a database: retention, the
//! sweep that marks silent devices offline, and the delivery of alert notifications. Such a
//! job asks its [`Lease`] before each round; the holder renews it round after round, and when
//! it dies the lease runs out and another instance takes the work over within the lease's
//! time. A single instance always holds it.
//!
//! Instances compare their own clocks with the lease's end, so their clocks must agree to
//! well within the lease time (NTP does). A round that outlasts the lease may overlap with
//! the next holder's first: the rounds guarded here are idempotent or bounded well below it.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use homepot_storage::Store;

use crate::clock::Clock;

/// The leases of the singleton jobs: retention, the device sweep, the alert outbox's delivery.
pub(crate) const SINGLETONS: [&str; 3] = [RETENTION, DEVICE_SWEEP, ALERT_DELIVERY];
pub(crate) const RETENTION: &str = "retention";
pub(crate) const DEVICE_SWEEP: &str = "device-sweep";
pub(crate) const ALERT_DELIVERY: &str = "alert-delivery";

/// A named lease held under this instance's id.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    name: &'static str,
    holder: Arc<str>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl: TimeDelta,
}

impl Lease {
    pub(crate) fn new(
        name: &'static str,
        holder: &str,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::seconds(15));
        Self { name, holder: Arc::from(holder), store, clock, ttl }
    }

    /// Whether this instance holds the lease now, taking or renewing it. A storage failure
    /// counts as not held: the work waits a round rather than risk running twice.
    pub(crate) async fn hold(&self) -> bool {
        let now = self.clock.now();
        match self.store.acquire_lease(self.name, &self.holder, now, now + self.ttl).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, lease = self.name, "lease not renewed; its work waits for the next round");
                false
            }
        }
    }

    /// Hands the lease over at once (at shutdown), rather than after it runs out.
    pub(crate) async fn release(&self) {
        if let Err(error) = self.store.release_lease(self.name, &self.holder).await {
            tracing::warn!(%error, lease = self.name, "lease not released; it runs out instead");
        }
    }
}
