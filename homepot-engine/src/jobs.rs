//! Background jobs: announcing silent gateway nodes, sharing device sightings and marking
//! silent devices offline, merging gathered rollups into storage, forgetting keys revoked by
//! other processes, deleting what is past its retention, evaluating alert rules and
//! delivering their notifications. They hold no
//! unwritten data (the rollups they flush stay gathered until stored, and shutdown flushes
//! them once more), so shutdown simply stops them.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use homepot_storage::retention::{purge_before, purge_expired};
use tokio::task::JoinHandle;

use crate::Homepot;
use crate::rollups::Flush;

/// How often to look for silence that lasts `window`: four times per window, so it is
/// noticed within a quarter of it, but no more than every 10 ms and at least every 5 s.
pub(crate) fn sweep_period(window: TimeDelta) -> Duration {
    (window / 4).to_std().unwrap_or(Duration::from_secs(1)).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

pub(crate) fn spawn(homepot: &Homepot) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(sweep_nodes(homepot.clone())),
        tokio::spawn(sweep_devices(homepot.clone())),
        tokio::spawn(flush_rollups(homepot.clone())),
        tokio::spawn(retention(homepot.clone())),
        tokio::spawn(evaluate_alerts(homepot.clone())),
        tokio::spawn(watch_key_revocations(homepot.clone())),
        tokio::spawn(crate::alerting::deliver_forever(
            Arc::clone(&homepot.inner.alerting),
            Arc::clone(&homepot.inner.notifier),
            Arc::clone(&homepot.inner.clock),
            homepot.lease(crate::lease::ALERT_DELIVERY),
        )),
    ]
}

async fn evaluate_alerts(homepot: Homepot) {
    let interval = homepot.settings().alerting.evaluation_interval.max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = homepot.evaluate_alerts().await {
            tracing::warn!(%error, "alert evaluation failed; next cycle retries");
        }
    }
}

async fn watch_key_revocations(homepot: Homepot) {
    let mut ticks = tokio::time::interval(homepot.settings().key_revision_poll.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = homepot.inner.auth.watch_revocations().await {
            tracing::warn!(%error, "key revision not read; remembered keys kept until the next poll");
        }
    }
}

async fn flush_rollups(homepot: Homepot) {
    let mut ticks = tokio::time::interval(homepot.settings().rollup_flush_interval.max(Duration::from_millis(10)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let settled = Flush::Settled(homepot.now().timestamp());
        homepot.inner.rollups.flush(homepot.inner.store.as_ref(), settled).await;
    }
}

async fn sweep_nodes(homepot: Homepot) {
    let mut ticks = tokio::time::interval(sweep_period(homepot.inner.nodes.stale_after()));
    loop {
        ticks.tick().await;
        homepot.inner.nodes.sweep(homepot.now());
    }
}

async fn sweep_devices(homepot: Homepot) {
    let states = &homepot.inner.states;
    let lease = homepot.lease(crate::lease::DEVICE_SWEEP);
    let mut ticks = tokio::time::interval(states.tick_period());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        states.tick(homepot.now(), &lease).await;
    }
}

/// Deletes what is past its retention, now and every retention interval: analytics (when
/// enabled and limited), idempotency receipts past their window, raw health checks and
/// points, and rollup buckets.
async fn retention(homepot: Homepot) {
    let settings = homepot.settings();
    let mut ticks = tokio::time::interval(settings.analytics.retention_interval.max(Duration::from_secs(1)));
    let analytics = settings.analytics.retention.filter(|_| settings.analytics.enabled);
    // Held for a whole interval and renewed each round: so the round runs once per interval
    // across instances (whose ticks fall at different times), and a dead holder's work passes
    // to another instance within one interval.
    let lease = homepot.lease_for(crate::lease::RETENTION, settings.analytics.retention_interval);
    loop {
        ticks.tick().await;
        // One instance deletes; the others would only repeat its deletes.
        if !lease.hold().await {
            continue;
        }
        let now = homepot.now();
        if let Some(age) = analytics.and_then(|a| TimeDelta::from_std(a).ok()) {
            let cutoff = now - age;
            match purge_before(&*homepot.inner.store, cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, %cutoff, "analytics retention"),
                Err(error) => tracing::warn!(%error, "analytics retention failed; next run retries"),
            }
        }
        let cutoff = homepot.inner.receipts.cutoff(now);
        let mut forgotten = 0;
        loop {
            match homepot.inner.store.purge_receipts(cutoff, 10_000).await {
                Ok(0) => break,
                Ok(deleted) => forgotten += deleted,
                Err(error) => {
                    tracing::warn!(%error, "idempotency receipts not purged; next run retries");
                    break;
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(forgotten, %cutoff, "idempotency receipts past their window");
        }
        // Raw rows go only once their rollups are stored: store what has gathered first.
        if !homepot.inner.rollups.flush(homepot.inner.store.as_ref(), Flush::Settled(now.timestamp())).await {
            continue;
        }
        match purge_expired(&*homepot.inner.store, &settings.retention, now).await {
            Ok(purged) if purged == Default::default() => {}
            Ok(purged) => {
                tracing::info!(health = purged.health, points = purged.points, rollups = purged.rollups, "retention")
            }
            Err(error) => tracing::warn!(%error, "retention failed; next run retries"),
        }
    }
}
