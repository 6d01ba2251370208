//! Device states (online / unhealthy / offline) as health checks and silences move them,
//! recorded in the device state history with `changed_by: "system"`.
//!
//! Only devices whose state can still change by silence are held in memory: a device that
//! goes offline is forgotten until it reports again, so the map is bounded by the devices
//! currently reporting. After a restart the map is rebuilt from each device's latest
//! recorded state, and every device gets a full silence window before it is marked offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::analytics::{DeviceState, StateChange, Transition, on_health, on_silence};
use homepot_storage::{StorageError, Store};
use serde_json::Map;

use crate::pipeline::{AnalyticsRecord, Pipeline};

#[derive(Debug)]
struct Tracked {
    /// `None` for a device with no recorded state yet.
    state: Option<String>,
    last_seen: DateTime<Utc>,
}

/// The current state of every reporting device.
#[derive(Debug)]
pub(crate) struct DeviceStates {
    store: Arc<dyn Store>,
    /// Transitions are written through the write path, like every other record.
    pipeline: Pipeline,
    allowed_silence: TimeDelta,
    devices: Mutex<HashMap<String, Tracked>>,
}

impl DeviceStates {
    /// Rebuilds the states from storage; a device not yet offline counts as seen `now`.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        pipeline: Pipeline,
        allowed_silence: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, StorageError> {
        let devices = store
            .latest_states()
            .await?
            .into_iter()
            .filter(|c| c.new_state != DeviceState::Offline.as_str())
            .map(|c| (c.device_id, Tracked { state: Some(c.new_state), last_seen: now }))
            .collect();
        Ok(Self {
            store,
            pipeline,
            allowed_silence: TimeDelta::from_std(allowed_silence).unwrap_or(TimeDelta::MAX),
            devices: Mutex::new(devices),
        })
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.devices.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The silence after which a device is offline.
    pub(crate) fn allowed_silence(&self) -> TimeDelta {
        self.allowed_silence
    }

    /// A health check arrived from `device` at `at`.
    pub(crate) async fn observe_health(&self, device: &str, is_healthy: bool, error: Option<&str>, at: DateTime<Utc>) {
        let known = self.devices().contains_key(device);
        // First contact since start (or since it went offline): its last recorded state.
        let recorded = if known {
            None
        } else {
            match self.store.state_history(device, DateTime::<Utc>::UNIX_EPOCH, 1).await {
                Ok(mut latest) => latest.pop().map(|c| c.new_state),
                Err(error) => {
                    tracing::warn!(%error, device, "device state not read; state change not recorded");
                    return;
                }
            }
        };
        let transition = {
            let mut devices = self.devices();
            let entry = devices.entry(device.to_owned()).or_insert_with(|| Tracked { state: recorded, last_seen: at });
            entry.last_seen = entry.last_seen.max(at);
            let transition = on_health(entry.state.as_deref(), is_healthy, error);
            if let Some(t) = &transition {
                entry.state = Some(t.new.as_str().to_owned());
            }
            transition
        };
        if let Some(transition) = transition {
            self.record(device, transition, at).await;
        }
    }

    /// A client posted a state change for `device`: later transitions start from it.
    pub(crate) fn observe_posted(&self, device: &str, new_state: &str) {
        if let Some(entry) = self.devices().get_mut(device) {
            entry.state = Some(new_state.to_owned());
        }
    }

    /// Marks devices silent for longer than allowed as offline, and forgets them.
    pub(crate) async fn sweep(&self, now: DateTime<Utc>) {
        let gone: Vec<(String, Transition)> = {
            let mut devices = self.devices();
            let mut gone = Vec::new();
            devices.retain(|device, tracked| {
                match on_silence(tracked.state.as_deref(), now - tracked.last_seen, self.allowed_silence) {
                    Some(transition) => {
                        gone.push((device.clone(), transition));
                        false
                    }
                    None => true,
                }
            });
            gone
        };
        for (device, transition) in gone {
            self.record(&device, transition, now).await;
        }
    }

    async fn record(&self, device: &str, transition: Transition, at: DateTime<Utc>) {
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
        match self.pipeline.write_own_record(AnalyticsRecord::StateChange(change)).await {
            Ok(_) => tracing::info!(device, %state, "device state changed"),
            Err(error) => tracing::warn!(%error, device, "device state change not recorded"),
        }
    }
}
