use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, AppState};

/// Liveness operations.
#[derive(Debug)]
pub(crate) struct ServiceApi;

/// Which dependencies answer.
#[derive(Debug, Object)]
struct DependencyChecks {
    /// The storage backend answers.
    store: bool,
}

/// `GET /health` (seed 04's basic health).
#[derive(Debug, Object)]
struct ServiceHealth {
    /// `healthy` or `unhealthy`.
    status: String,
    /// homepot's version.
    version: String,
    /// Seconds since the server started.
    uptime_seconds: f64,
    /// Dependency checks.
    checks: DependencyChecks,
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
        let store = match state.store.ping().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "storage check failed");
                false
            }
        };
        let body = ServiceHealth {
            status: if store { "healthy" } else { "unhealthy" }.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: (state.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            checks: DependencyChecks { store },
        };
        if store { ServiceHealthResponse::Healthy(Json(body)) } else { ServiceHealthResponse::Unhealthy(Json(body)) }
    }
}
