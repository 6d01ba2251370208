//! The device metrics simulator endpoint, for development: it registers the device if needed
//! and records a realistic health check. Off unless the server runs with `--simulator`.

use std::sync::Arc;

use homepot_core::simulate::{random_suffix, simulated_report};
use homepot_core::{DeviceId, HealthCheck, NewDevice};
use homepot_engine::EngineError;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::documented::HealthCheckRequest;
use super::{ApiTags, AppState, rfc3339};
use crate::error::ApiError;

/// The device metrics simulator (device health API), for development only.
#[derive(Debug, Default)]
pub(crate) struct SimulatorApi;

/// A simulated health check that was stored.
#[derive(Debug, Object)]
struct SimulatedMetrics {
    /// `Simulated metrics submitted successfully`.
    message: String,
    /// The simulated device.
    device_id: String,
    /// Identifier of the stored check; for a filtered check, of the last stored one.
    health_check_id: i64,
    /// `false` when the SmartDataFilter found nothing new to store.
    stored: bool,
    /// When it was accepted (RFC 3339, UTC).
    timestamp: String,
    /// The generated report.
    metrics: HealthCheckRequest,
}

#[OpenApi]
impl SimulatorApi {
    /// Generate and store realistic metrics for a device, registering it when it does not
    /// exist. Needs no key; answers 404 unless the server runs with `--simulator`.
    #[oai(path = "/api/v1/simulator/device-metrics", method = "post", tag = "ApiTags::Simulator")]
    async fn device_metrics(
        &self,
        state: Data<&Arc<AppState>>,
        /// Device to simulate (default: `simulator-pos-` and a random suffix).
        #[oai(validator(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
        device_id: Query<Option<String>>,
        /// Health status to simulate (default true).
        is_healthy: Query<Option<bool>>,
    ) -> Result<Json<SimulatedMetrics>, ApiError> {
        if !state.simulator {
            return Err(ApiError::not_found("Not Found"));
        }
        let raw_id = device_id.0.unwrap_or_else(|| format!("simulator-pos-{}", random_suffix(&mut rand::rng(), 6)));
        let device = DeviceId::parse(&raw_id).map_err(|e| ApiError::invalid("query", e.prefixed("device_id")))?;
        match state.homepot.register_device(&NewDevice::with_id(device.clone())).await {
            Ok(_) | Err(EngineError::Conflict(_)) => {}
            Err(other) => return Err(other.into()),
        }
        let report = simulated_report(&mut rand::rng(), is_healthy.0.unwrap_or(true));
        let metrics = HealthCheckRequest::from(&report);
        let check = HealthCheck::validate(report).map_err(|e| ApiError::invalid("body", e))?;
        let (write, accepted_at) = state.homepot.record_health(device, check, None).await?;
        let (health_check_id, stored) = write.answer();
        Ok(Json(SimulatedMetrics {
            message: "Simulated metrics submitted successfully".to_owned(),
            device_id: raw_id,
            health_check_id,
            stored,
            timestamp: rfc3339(accepted_at),
            metrics,
        }))
    }
}
