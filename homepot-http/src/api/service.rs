//! The service's own endpoints: liveness (`/health`), detailed health (`/api/health`) and
//! counters (`/api/v1/stats`). No key needed.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, AppState};

/// Liveness operations.
#[derive(Debug, Default)]
pub(crate) struct ServiceApi;

/// Which dependencies answer.
#[derive(Debug, Object)]
struct DependencyChecks {
    /// The storage backend answers.
    store: bool,
}

/// `GET /health` (the metrics service's basic health).
#[derive(Debug, Object)]
struct ServiceHealth {
    /// `healthy` or `unhealthy`.
    status: String,
    /// Which instance answered (`--instance-id`), when several share one database.
    instance_id: String,
    /// homepot's version.
    version: String,
    /// Seconds since the server started.
    uptime_seconds: f64,
    /// Dependency checks.
    checks: DependencyChecks,
}

/// The live metrics store, in `GET /api/health`.
#[derive(Debug, Object)]
struct MetricsStoreHealth {
    /// Live series.
    total_metrics: usize,
    /// Distinct live metric names.
    metric_names: Vec<String>,
    /// Seconds a series stays live without updates.
    retention_seconds: i64,
    /// Most live series.
    max_metrics: usize,
}

/// `GET /api/health` (the metrics service's detailed health).
#[derive(Debug, Object)]
struct DetailedHealth {
    #[oai(flatten)]
    basic: ServiceHealth,
    /// The live metrics store.
    metrics_store: MetricsStoreHealth,
    /// Clients connected to `/metrics/stream`.
    sse_subscribers: usize,
}

#[derive(Debug, ApiResponse)]
enum DetailedHealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Healthy(Json<DetailedHealth>),
    /// A dependency does not answer.
    #[oai(status = 503)]
    Unhealthy(Json<DetailedHealth>),
}

/// `GET /api/v1/stats`.
#[derive(Debug, Object)]
struct ServiceStats {
    /// Requests answered.
    requests_total: u64,
    /// Requests answered with a status of 400 or more.
    errors_total: u64,
    /// Metric points stored.
    metrics_received_total: u64,
    /// Stream events sent.
    sse_events_sent: u64,
    /// Container metrics messages received over MQTT.
    mqtt_messages_received: u64,
    /// Of those, dropped as malformed or for an unknown device.
    mqtt_messages_rejected: u64,
    /// API requests logged for analytics.
    analytics_requests_logged: u64,
    /// Request logs dropped because their queue was full or storage failed (the requests
    /// themselves were served).
    analytics_requests_dropped: u64,
    /// Seconds since the server started.
    uptime_seconds: f64,
    /// Remote write forwarding, per target; empty when it is off.
    forwarding: Vec<ForwardingStats>,
}

/// What forwarding has done for one target since the server started (pending: now).
#[derive(Debug, Object)]
struct ForwardingStats {
    /// The target's URL, credentials left out.
    target: String,
    /// Batches the target accepted.
    sent: u64,
    /// Batches it refused (a 4xx other than 429), dropped.
    rejected: u64,
    /// Batches dropped unsent: the queue's byte cap, or a corrupt record.
    dropped: u64,
    /// Queued bytes not yet sent.
    pending_bytes: u64,
}

/// `url` without the `user:password@` of basic auth: the stats need no key.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

#[derive(Debug, ApiResponse)]
enum ServiceHealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Healthy(Json<ServiceHealth>),
    /// A dependency does not answer.
    #[oai(status = 503)]
    Unhealthy(Json<ServiceHealth>),
}

#[OpenApi]
impl ServiceApi {
    /// Basic health: status, version, uptime and a storage check. No API key needed.
    #[oai(path = "/health", method = "get", tag = "ApiTags::Service")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> ServiceHealthResponse {
        let body = basic_health(&state).await;
        if body.checks.store {
            ServiceHealthResponse::Healthy(Json(body))
        } else {
            ServiceHealthResponse::Unhealthy(Json(body))
        }
    }

    /// Detailed health: the basic checks, the live metrics store and stream subscribers. No
    /// API key needed.
    #[oai(path = "/api/health", method = "get", tag = "ApiTags::Service")]
    async fn detailed_health(&self, state: Data<&Arc<AppState>>) -> DetailedHealthResponse {
        let basic = basic_health(&state).await;
        let metrics_store = {
            let live = state.homepot.live();
            MetricsStoreHealth {
                total_metrics: live.len(),
                metric_names: live.names(),
                retention_seconds: live.limits().retention_ns / 1_000_000_000,
                max_metrics: live.limits().max_series,
            }
        };
        let healthy = basic.checks.store;
        let body =
            DetailedHealth { basic, metrics_store, sse_subscribers: state.homepot.stats().snapshot().sse_subscribers };
        if healthy {
            DetailedHealthResponse::Healthy(Json(body))
        } else {
            DetailedHealthResponse::Unhealthy(Json(body))
        }
    }

    /// Service counters since start. No API key needed.
    #[oai(path = "/api/v1/stats", method = "get", tag = "ApiTags::Service")]
    async fn stats(&self, state: Data<&Arc<AppState>>) -> Json<ServiceStats> {
        let stats = state.homepot.stats().snapshot();
        Json(ServiceStats {
            requests_total: stats.requests_total,
            errors_total: stats.errors_total,
            metrics_received_total: stats.metrics_received_total,
            sse_events_sent: stats.sse_events_sent,
            mqtt_messages_received: stats.mqtt_messages_received,
            mqtt_messages_rejected: stats.mqtt_messages_rejected,
            analytics_requests_logged: stats.analytics_logged,
            analytics_requests_dropped: stats.analytics_dropped,
            uptime_seconds: uptime(&state),
            forwarding: state
                .homepot
                .forward_status()
                .into_iter()
                .map(|f| ForwardingStats {
                    target: without_credentials(&f.url),
                    sent: f.sent,
                    rejected: f.rejected,
                    dropped: f.dropped,
                    pending_bytes: f.pending_bytes,
                })
                .collect(),
        })
    }
}

fn uptime(state: &AppState) -> f64 {
    let seconds = state.homepot.uptime().num_milliseconds() as f64 / 1_000.0;
    (seconds * 10.0).round() / 10.0
}

async fn basic_health(state: &AppState) -> ServiceHealth {
    let store = state.homepot.storage_healthy().await;
    ServiceHealth {
        status: if store { "healthy" } else { "unhealthy" }.to_owned(),
        instance_id: state.homepot.settings().instance_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: uptime(state),
        checks: DependencyChecks { store },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn target_credentials_are_left_out() {
        use super::without_credentials as strip;
        assert_eq!(strip("https://user:pa@ss@vm:8428/api/v1/write"), "https://vm:8428/api/v1/write");
        assert_eq!(strip("http://vm:8428/api/v1/write?a=b@c"), "http://vm:8428/api/v1/write?a=b@c");
        assert_eq!(strip("http://vm:8428"), "http://vm:8428");
    }
}
