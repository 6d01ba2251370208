//! Device states (online / unhealthy / offline) as health checks and silences move them,
//! recorded in the device state history with `changed_by: "system"`, once each, however
//! many instances share the database and whichever of them a device's checks reach.
//!
//! Each instance remembers the devices reporting to it: their state and when it last saw
//! them. A transition is stored by compare-and-set (`PresenceStore::apply_transitions`): of
//! two instances that see the same one, one stores it and the other re-reads the state. Every
//! tick (a quarter of the silence window, at most 5 s) each instance publishes its sightings
//! (`mark_seen`), learns the states others changed since its last tick, and forgets devices
//! silent here for two windows. The instance holding the `device-sweep` lease then marks offline
//! the devices that no instance saw for the window plus one tick (the tick covers sightings
//! not yet published). After a start no device is marked offline for one window: while no
//! instance ran, devices had nobody to report to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::DeviceId;
use homepot_core::analytics::{StateChange, Transition, on_health, on_silence};
use homepot_storage::{StorageError, Store};
use serde_json::Map;

use crate::lease::Lease;
use crate::pipeline::Pipeline;

/// Devices marked offline per sweep at most; the rest wait for the next tick.
const SWEEP_BATCH: usize = 10_000;
/// How far back each tick re-reads state changes beyond the previous tick: a transition is
/// stamped with its check's time but commits later, when the writer gets to it.
const REFRESH_OVERLAP: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug)]
struct Tracked {
    /// `None` for a device with no recorded state yet.
    state: Option<String>,
    last_seen: DateTime<Utc>,
    /// Whether `last_seen` is in storage for the other instances.
    published: bool,
}

/// The current state of every device reporting to this instance.
#[derive(Debug)]
pub(crate) struct DeviceStates {
    store: Arc<dyn Store>,
    /// Transitions are written through the write path, like every other record.
    pipeline: Pipeline,
    allowed_silence: TimeDelta,
    tick: Duration,
    started: DateTime<Utc>,
    devices: Mutex<HashMap<String, Tracked>>,
    /// When the states were last read back from storage.
    refreshed: Mutex<DateTime<Utc>>,
}

impl DeviceStates {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        pipeline: Pipeline,
        allowed_silence: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        let allowed_silence = TimeDelta::from_std(allowed_silence).unwrap_or(TimeDelta::MAX);
        Self {
            store,
            pipeline,
            tick: crate::jobs::sweep_period(allowed_silence),
            allowed_silence,
            started: now,
            devices: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(now),
        }
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How often [`DeviceStates::tick`] should run.
    pub(crate) fn tick_period(&self) -> Duration {
        self.tick
    }

    async fn stored_state(&self, device: &str) -> Result<Option<String>, StorageError> {
        Ok(self.store.state_history(device, DateTime::<Utc>::UNIX_EPOCH, 1).await?.pop().map(|c| c.new_state))
    }

    /// A health check arrived from `device` at `at`.
    pub(crate) async fn observe_health(&self, device: &str, is_healthy: bool, error: Option<&str>, at: DateTime<Utc>) {
        let known = self.devices().contains_key(device);
        // First contact since start (or since it fell silent here): its recorded state.
        let recorded = if known {
            None
        } else {
            match self.stored_state(device).await {
                Ok(state) => state,
                Err(error) => {
                    tracing::warn!(%error, device, "device state not read; state change not recorded");
                    return;
                }
            }
        };
        let transition = {
            let mut devices = self.devices();
            let entry = devices.entry(device.to_owned()).or_insert_with(|| Tracked {
                state: recorded,
                last_seen: at,
                published: false,
            });
            entry.last_seen = entry.last_seen.max(at);
            entry.published = false;
            let transition = on_health(entry.state.as_deref(), is_healthy, error);
            if let Some(t) = &transition {
                entry.state = Some(t.new.as_str().to_owned());
            }
            transition
        };
        let Some(transition) = transition else { return };
        if self.record(device, transition, at).await {
            return;
        }
        // Another instance, or a client, changed the state first: decide again from it.
        let retry = match self.stored_state(device).await {
            Ok(state) => {
                let transition = on_health(state.as_deref(), is_healthy, error);
                if let Some(entry) = self.devices().get_mut(device) {
                    entry.state = transition.as_ref().map(|t| t.new.as_str().to_owned()).or(state);
                }
                transition
            }
            Err(error) => {
                tracing::warn!(%error, device, "device state not read; state change not recorded");
                None
            }
        };
        if let Some(transition) = retry
            && !self.record(device, transition, at).await
        {
            // Changed under us twice: the next check starts from what is stored.
            self.devices().remove(device);
        }
    }

    /// A client posted a state change for `device`: later transitions start from it.
    pub(crate) fn observe_posted(&self, device: &str, new_state: &str) {
        if let Some(entry) = self.devices().get_mut(device) {
            entry.state = Some(new_state.to_owned());
        }
    }

    /// Shares this instance's sightings, learns the states other instances changed, forgets
    /// devices silent here, and, holding `lease`, marks silent devices offline.
    pub(crate) async fn tick(&self, now: DateTime<Utc>, lease: &Lease) {
        self.publish().await;
        self.refresh(now).await;
        // Kept for two windows: a device whose checks alternate between instances comes back
        // here before it is forgotten, and its state need not be read again.
        let kept = self.allowed_silence * 2;
        self.devices().retain(|_, tracked| !tracked.published || now - tracked.last_seen < kept);
        // Sightings from before this start are stale, and a fresh instance leaves the sweep
        // to one that has run for a window.
        if now - self.started < self.allowed_silence || !lease.hold().await {
            return;
        }
        let tick = TimeDelta::from_std(self.tick).unwrap_or(TimeDelta::MAX);
        let silent = match self.store.silent_devices(now - self.allowed_silence - tick, SWEEP_BATCH).await {
            Ok(silent) => silent,
            Err(error) => {
                tracing::warn!(%error, "silent devices not read; the next tick retries");
                return;
            }
        };
        for device in silent {
            let Some(transition) = on_silence(Some(&device.state), now - device.last_seen, self.allowed_silence) else {
                continue;
            };
            if self.record(device.device_id.as_str(), transition, now).await {
                self.devices().remove(device.device_id.as_str());
            }
        }
    }

    async fn publish(&self) {
        let seen: Vec<(DeviceId, DateTime<Utc>)> = self
            .devices()
            .iter()
            .filter(|(_, tracked)| !tracked.published)
            .filter_map(|(device, tracked)| Some((DeviceId::parse(device).ok()?, tracked.last_seen)))
            .collect();
        if seen.is_empty() {
            return;
        }
        match self.store.mark_seen(&seen).await {
            Ok(()) => {
                let mut devices = self.devices();
                for (device, at) in &seen {
                    // Unless seen again since.
                    if let Some(tracked) = devices.get_mut(device.as_str()).filter(|t| t.last_seen == *at) {
                        tracked.published = true;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, devices = seen.len(), "sightings not shared; the next tick retries"),
        }
    }

    async fn refresh(&self, now: DateTime<Utc>) {
        let since = *self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) - REFRESH_OVERLAP;
        match self.store.states_since(since).await {
            Ok(states) => {
                let mut devices = self.devices();
                for (device, state) in states {
                    if let Some(tracked) = devices.get_mut(device.as_str()) {
                        tracked.state = Some(state);
                    }
                }
                *self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
            }
            Err(error) => tracing::warn!(%error, "device states not read back; the next tick retries"),
        }
    }

    /// Stores a transition unless the device's stored state is no longer the one it starts
    /// from; whether it was stored (a failure to store counts as stored: it is not retried).
    async fn record(&self, device: &str, transition: Transition, at: DateTime<Utc>) -> bool {
        let change = StateChange {
            timestamp: at,
            device_id: device.to_owned(),
            previous_state: transition.previous,
            new_state: transition.new.as_str().to_owned(),
            changed_by: "system".to_owned(),
            recorded_by: Some("system".to_owned()),
            reason: Some(transition.reason),
            metadata: Map::new(),
        };
        // Waited for: the check that caused it is answered only once the history shows it, so
        // a client reading the history right after reporting sees the transition. Transitions
        // are rare, so this second commit costs ingest nothing measurable.
        let state = change.new_state.clone();
        match self.pipeline.write_transition(change).await {
            Ok(Some(_)) => {
                tracing::info!(device, %state, "device state changed");
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, device, "device state change not recorded");
                true
            }
        }
    }
}
