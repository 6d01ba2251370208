//! The HTTP operations, one file per resource, and what every handler shares ([`AppState`]).
//! Handlers are thin: authenticate, hand the body to a `homepot-core` adapter, call the
//! engine, shape the answer. Request bodies as documented sit together in `documented.rs`.

mod alerts;
mod analytics;
mod containers;
mod devices;
mod documented;
mod export;
mod health;
mod keys;
mod live;
mod metrics;
mod monitoring;
mod prometheus;
mod query;
mod service;
mod session;
mod simulator;
mod stream;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use homepot_core::ErrorKind;
use homepot_engine::{Homepot, IdempotencyKey, Principal};
use poem_openapi::Tags;

use crate::auth::{ApiKeyAuth, MetricsAuth};
use crate::error::ApiError;

pub(crate) use self::alerts::AlertsApi;
pub(crate) use self::analytics::AnalyticsApi;
pub(crate) use self::containers::ContainersApi;
pub(crate) use self::devices::DevicesApi;
pub(crate) use self::export::ExportApi;
pub(crate) use self::health::HealthApi;
pub(crate) use self::keys::KeysApi;
pub(crate) use self::live::LiveApi;
pub(crate) use self::metrics::MetricsApi;
pub(crate) use self::monitoring::MonitoringApi;
pub(crate) use self::prometheus::PrometheusApi;
pub(crate) use self::query::QueryApi;
pub(crate) use self::service::ServiceApi;
pub(crate) use self::session::SessionApi;
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
    /// Range queries over the rollups of every numeric series.
    Query,
    /// Alert rules, alerts, silences, receivers and notifications.
    Alerts,
    /// Development helpers, enabled with `--simulator`.
    Simulator,
    /// Liveness and service information.
    Service,
}

/// What every handler shares: the engine, and the settings that belong to HTTP.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) homepot: Homepot,
    /// Serve the simulator endpoint.
    pub(crate) simulator: bool,
    /// Serve the metrics endpoints without a key (lab use).
    pub(crate) open_metrics: bool,
    /// How often the stream sends an event.
    pub(crate) stream_interval: std::time::Duration,
    /// Signed-in browsers.
    pub(crate) sessions: Arc<crate::session::Sessions>,
}

impl AppState {
    /// The holder of the presented key.
    pub(crate) async fn authenticate(&self, auth: &ApiKeyAuth) -> Result<Principal, ApiError> {
        Ok(self.homepot.authenticate(Some(&auth.presented()), false).await?)
    }

    /// The holder of the presented key on a metrics route, where open-metrics mode admits
    /// requests without one.
    pub(crate) async fn authenticate_metrics(&self, auth: &MetricsAuth) -> Result<Principal, ApiError> {
        Ok(self.homepot.authenticate(auth.presented().as_deref(), self.open_metrics).await?)
    }
}

/// An ingest request's optional `Idempotency-Key` header.
pub(crate) type IdempotencyHeader = poem_openapi::param::Header<Option<String>>;

/// The scope of a device's idempotency keys: the same whichever key or route it uses.
pub(crate) fn device_scope(device: &str) -> String {
    format!("device:{device}")
}

/// The request's idempotency key in `scope`, if it sent one.
pub(crate) fn scoped_key(header: IdempotencyHeader, scope: String) -> Result<Option<IdempotencyKey>, ApiError> {
    Ok(header.0.map(|raw| IdempotencyKey::new(scope, &raw)).transpose()?)
}

/// The original APIs' timestamp format: `2025-11-19T10:00:00.000Z`.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Repeated `tag=key:value` query parameters as tag pairs.
pub(crate) fn parse_tags(raw: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    pairs("tag", raw)
}

/// Repeated `label=key:value` query parameters as label pairs.
pub(crate) fn parse_labels(raw: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    pairs("label", raw)
}

fn pairs(parameter: &str, raw: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    raw.iter()
        .map(|pair| match pair.split_once(':') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(ApiError::invalid_field(
                "query",
                parameter,
                homepot_core::ErrorKind::BadFormat,
                format!("{parameter}s are key:value"),
            )),
        })
        .collect()
}

/// `from`/`to` as RFC 3339 or Unix seconds.
pub(crate) fn instant(parameter: &str, raw: Option<&str>, default: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    let parsed = homepot_core::validation::parse_instant(raw);
    parsed.ok_or_else(|| {
        ApiError::invalid_field("query", parameter, ErrorKind::BadFormat, "expected RFC 3339 or Unix seconds")
    })
}
