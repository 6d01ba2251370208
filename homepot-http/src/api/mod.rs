//! The HTTP operations, grouped by resource. Handlers are thin: authenticate, hand the body
//! to a `homepot-core` adapter, call the pipeline or the store, shape the answer.

mod analytics;
mod containers;
mod devices;
mod health;
mod keys;
mod live;
mod metrics;
mod monitoring;
mod service;
mod simulator;
mod stream;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use homepot_core::live::LiveStore;
use homepot_storage::Store;
use poem_openapi::Tags;

use crate::auth::Authenticator;
use crate::error::ApiError;
use crate::pipeline::Pipeline;
use crate::stats::Stats;

pub(crate) use self::analytics::AnalyticsApi;
pub(crate) use self::containers::ContainersApi;
pub(crate) use self::devices::DevicesApi;
pub(crate) use self::health::HealthApi;
pub(crate) use self::keys::KeysApi;
pub(crate) use self::live::LiveApi;
pub(crate) use self::metrics::MetricsApi;
pub(crate) use self::monitoring::{MonitoringApi, NodeSnapshots};
pub(crate) use self::service::ServiceApi;
pub(crate) use self::simulator::SimulatorApi;
pub(crate) use self::stream::StreamApi;

#[derive(Debug, Tags)]
enum ApiTags {
    /// Device registry (admin).
    Devices,
    /// API key rotation and revocation (admin).
    Keys,
    /// Device health checks (device health API).
    Health,
    /// Metrics ingest and history (metrics service).
    Metrics,
    /// The live metrics view: JSON, Prometheus (metrics service).
    Live,
    /// Gateway node resources (gateway resource monitoring).
    Monitoring,
    /// Container metrics messages (Ditto/Hono edge devices).
    Containers,
    /// Analytics collection and queries.
    Analytics,
    /// Development helpers, enabled with `--simulator`.
    Simulator,
    /// Liveness and service information.
    Service,
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auth: Authenticator,
    pub(crate) pipeline: Pipeline,
    /// The latest value of every metric series; the writer updates it after each commit.
    pub(crate) live: Arc<RwLock<LiveStore>>,
    /// Service counters.
    pub(crate) stats: Arc<Stats>,
    /// How often the stream sends an event.
    pub(crate) stream_interval: std::time::Duration,
    /// Each gateway node's newest resource report.
    pub(crate) nodes: NodeSnapshots,
    /// A node silent this long is stale.
    pub(crate) node_stale_after: chrono::TimeDelta,
    /// Alert thresholds for node events.
    pub(crate) thresholds: homepot_core::node::Thresholds,
    /// Node events for `/ws` subscribers (bounded: slow ones lag, nothing queues up).
    pub(crate) node_events: tokio::sync::broadcast::Sender<homepot_core::node::NodeEvent>,
    pub(crate) started: Instant,
    pub(crate) simulator: bool,
    /// Whether the analytics collection endpoints accept records (`ANALYTICS_ENABLED`).
    pub(crate) analytics_enabled: bool,
    /// Each reporting device's state.
    pub(crate) states: Arc<crate::device_state::DeviceStates>,
    /// The MQTT bridge, when one runs.
    pub(crate) mqtt: Option<Arc<crate::mqtt::MqttBridge>>,
    /// Devices known to send container data, so that each is recorded once per run.
    pub(crate) container_reporters: std::sync::Mutex<std::collections::HashSet<homepot_core::DeviceId>>,
}

impl AppState {
    /// The registered device named in a path or body, or the original API's 404.
    pub(crate) async fn registered_device(&self, device_id: &str) -> Result<homepot_core::DeviceId, ApiError> {
        let id = homepot_core::DeviceId::parse(device_id).map_err(|_| ApiError::device_not_found(device_id))?;
        match self.store.device(&id).await? {
            Some(_) => Ok(id),
            None => Err(ApiError::device_not_found(device_id)),
        }
    }
}

impl AppState {
    /// Records, once per run, that `device` sends container data: the bridge asks such
    /// devices again after every reconnect (`--mqtt-request-all`).
    pub(crate) async fn note_container_reporter(&self, device: &homepot_core::DeviceId) {
        let reporters = || self.container_reporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reporters().insert(device.clone()) {
            return;
        }
        if let Err(error) = self.store.mark_container_reporter(device, now()).await {
            tracing::warn!(%error, %device, "could not record a device as sending container data");
            reporters().remove(device);
        }
    }
}

/// Now, at the microsecond precision every backend keeps, so what is answered equals what
/// is read back.
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now)
}

/// The original APIs' timestamp format: `2025-11-19T10:00:00.000Z`.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
