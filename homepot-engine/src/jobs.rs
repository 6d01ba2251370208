//! Background jobs: announcing silent gateway nodes, marking silent devices offline, and
//! deleting analytics past their retention. They hold no unwritten data, so shutdown simply
//! stops them.

use std::time::Duration;

use chrono::TimeDelta;
use homepot_storage::retention::purge_before;
use tokio::task::JoinHandle;

use crate::Homepot;

/// How often to look for silence that lasts `window`: four times per window, so it is
/// noticed within a quarter of it, but no more than every 10 ms and at least every 5 s.
fn sweep_period(window: TimeDelta) -> Duration {
    (window / 4).to_std().unwrap_or(Duration::from_secs(1)).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

pub(crate) fn spawn(homepot: &Homepot) -> Vec<JoinHandle<()>> {
    let mut jobs = vec![tokio::spawn(sweep_nodes(homepot.clone())), tokio::spawn(sweep_devices(homepot.clone()))];
    if let (true, Some(retention)) = (homepot.analytics_enabled(), homepot.settings().analytics.retention) {
        jobs.push(tokio::spawn(analytics_retention(homepot.clone(), retention)));
    }
    jobs
}

async fn sweep_nodes(homepot: Homepot) {
    let mut ticks = tokio::time::interval(sweep_period(homepot.inner.nodes.stale_after()));
    loop {
        ticks.tick().await;
        homepot.inner.nodes.sweep(homepot.now());
    }
}

async fn sweep_devices(homepot: Homepot) {
    let mut ticks = tokio::time::interval(sweep_period(homepot.inner.states.allowed_silence()));
    loop {
        ticks.tick().await;
        homepot.inner.states.sweep(homepot.now()).await;
    }
}

/// Deletes analytics older than `retention` now and every retention interval.
async fn analytics_retention(homepot: Homepot, retention: Duration) {
    let interval = homepot.settings().analytics.retention_interval;
    let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
    let Ok(age) = TimeDelta::from_std(retention) else { return };
    loop {
        ticks.tick().await;
        let cutoff = homepot.now() - age;
        match purge_before(&*homepot.inner.store, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, %cutoff, "analytics retention"),
            Err(error) => tracing::warn!(%error, "analytics retention failed; next run retries"),
        }
    }
}
