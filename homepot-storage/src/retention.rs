//! Retention: deleting old analytics records, raw health checks and points, and rollup
//! buckets in bounded batches, shared by the server's hourly job and `homepot retention run`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::rollup::Tier;

use crate::{AnalyticsStore, StorageError, Store};

/// Repeats a purge call until it deletes nothing; the total it deleted. (A macro: async
/// closures would make the callers' futures not `Send`.)
macro_rules! drain {
    ($purge:expr) => {{
        let mut total = 0;
        loop {
            let deleted = $purge.await?;
            total += deleted;
            if deleted == 0 {
                break total;
            }
        }
    }};
}

/// Rows deleted per table and statement.
pub const PURGE_BATCH: u64 = 10_000;

/// Deletes every analytics record older than `before`, [`PURGE_BATCH`] rows per table at a
/// time, and returns how many it deleted.
///
/// # Errors
/// The first backend failure; what was deleted before it stays deleted.
pub async fn purge_before<S: AnalyticsStore + ?Sized>(store: &S, before: DateTime<Utc>) -> Result<u64, StorageError> {
    Ok(drain!(store.purge_analytics(before, PURGE_BATCH)))
}

/// How long raw rows and each rollup tier are kept; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Raw health checks and metric points.
    pub raw: Option<Duration>,
    /// 1-minute buckets.
    pub minute: Option<Duration>,
    /// 1-hour buckets.
    pub hour: Option<Duration>,
    /// 1-day buckets.
    pub day: Option<Duration>,
}

const DAY: u64 = 24 * 3600;

impl Default for RetentionPolicy {
    /// 30 days raw, 90 days of minutes, two years of hours, days forever.
    fn default() -> Self {
        Self {
            raw: Some(Duration::from_secs(30 * DAY)),
            minute: Some(Duration::from_secs(90 * DAY)),
            hour: Some(Duration::from_secs(730 * DAY)),
            day: None,
        }
    }
}

impl RetentionPolicy {
    /// Everything kept forever.
    pub const KEEP_ALL: Self = Self { raw: None, minute: None, hour: None, day: None };

    /// How long `tier` is kept.
    pub fn tier(&self, tier: Tier) -> Option<Duration> {
        match tier {
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
            Tier::Day => self.day,
        }
    }

    /// The oldest bucket start (Unix seconds) `tier` still holds at `now`; `None`: all.
    pub fn kept_since(&self, tier: Tier, now: DateTime<Utc>) -> Option<i64> {
        self.tier(tier).map(|keep| (now - TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX)).timestamp())
    }

    /// Checks that each coarser level is kept at least as long as the finer one, so no
    /// history is deleted while a finer level still needs a coarser one to stand for it.
    ///
    /// # Errors
    /// Which pair is out of order.
    pub fn check(&self) -> Result<(), String> {
        let forever = |d: Option<Duration>| d.unwrap_or(Duration::MAX);
        let levels = [("raw", self.raw), ("1m", self.minute), ("1h", self.hour), ("1d", self.day)];
        for pair in levels.windows(2) {
            let ((finer, a), (coarser, b)) = (pair[0], pair[1]);
            if forever(a) > forever(b) {
                return Err(format!("{coarser} rollups must be kept at least as long as {finer} data"));
            }
        }
        Ok(())
    }
}

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Raw health checks.
    pub health: u64,
    /// Raw metric points.
    pub points: u64,
    /// Rollup buckets of every tier.
    pub rollups: u64,
}

/// Deletes raw rows and rollup buckets past `policy` at `now`, [`PURGE_BATCH`] rows at a
/// time. Raw rows go only where 1-minute rollups cover them, from the oldest 1-minute bucket
/// on: older ones were stored before rollups existed (or were deleted long ago) and stay.
/// Rollups are purged after the raw rows, so the oldest bucket is read before it can move.
///
/// # Errors
/// The first backend failure; what was deleted before it stays deleted.
pub async fn purge_expired<S: Store + ?Sized>(
    store: &S,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<Purged, StorageError> {
    let mut purged = Purged::default();
    if let (Some(keep), Some(covered_s)) = (policy.raw, store.oldest_bucket(Tier::Minute).await?) {
        let cutoff = now - TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
        if let Some(from) = DateTime::from_timestamp(covered_s, 0).filter(|from| *from < cutoff) {
            purged.health += drain!(store.purge_health(from, cutoff, PURGE_BATCH));
            let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MIN);
            purged.points += drain!(store.purge_points(ns(from), ns(cutoff), PURGE_BATCH));
        }
    }
    for tier in Tier::ALL {
        if let Some(before_s) = policy.kept_since(tier, now) {
            purged.rollups += drain!(store.purge_rollups(tier, before_s, PURGE_BATCH));
        }
    }
    Ok(purged)
}
