//! Device health checks (the device health API): submit one, read a device's history.

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::DeviceId;
use homepot_core::ingest::health_json::parse_health_check;
use homepot_storage::StoredHealthCheck;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::documented::HealthCheckRequest;
use super::{ApiTags, AppState, IdempotencyHeader, device_scope, rfc3339, scoped_key};
use crate::auth::ApiKeyAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

#[derive(Debug, Default)]
pub(crate) struct HealthApi;

/// The answer to an accepted health check: it is durable when this is sent.
#[derive(Debug, Object)]
pub(crate) struct HealthCheckAccepted {
    /// `Health check recorded successfully`.
    pub(crate) message: String,
    /// The reporting device.
    pub(crate) device_id: String,
    /// Identifier of the stored check; for a filtered check, of the last stored one.
    pub(crate) health_check_id: i64,
    /// When the server accepted it (RFC 3339, UTC).
    pub(crate) timestamp: String,
    /// `false` when the SmartDataFilter found nothing new to store.
    pub(crate) stored: bool,
}

/// A stored health check (the original API's `health_checks` row).
#[derive(Debug, Object)]
pub(crate) struct HealthCheckView {
    /// Identifier.
    id: i64,
    /// The reporting device.
    device_id: String,
    /// Overall health.
    is_healthy: bool,
    /// Response time in ms.
    response_time_ms: i64,
    /// Status code of the device's own check.
    status_code: i64,
    /// Health check endpoint path.
    #[oai(skip_serializing_if_is_none)]
    endpoint: Option<String>,
    /// `response_data` with the `system`, `app_metrics` and `network` groups.
    response_data: BTreeMap<String, Value>,
    /// Error description.
    #[oai(skip_serializing_if_is_none)]
    error_message: Option<String>,
    /// When it was accepted (RFC 3339, UTC).
    checked_at: String,
}

impl From<StoredHealthCheck> for HealthCheckView {
    fn from(h: StoredHealthCheck) -> Self {
        Self {
            id: h.id.0,
            device_id: h.device_id.to_string(),
            is_healthy: h.is_healthy,
            response_time_ms: h.response_time_ms,
            status_code: h.status_code,
            endpoint: h.endpoint,
            response_data: h.response_data.into_iter().collect(),
            error_message: h.error_message,
            checked_at: rfc3339(h.checked_at),
        }
    }
}

/// A device's recent health checks.
#[derive(Debug, Object)]
struct HealthHistory {
    /// The device.
    device_id: String,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// How many checks follow.
    count: usize,
    /// Newest first.
    health_checks: Vec<HealthCheckView>,
}

#[OpenApi]
impl HealthApi {
    /// Submit a health check with optional system, application and network metrics. Answered
    /// once the check is durable. Needs the device's own key or an admin key.
    #[oai(path = "/api/v1/devices/:device_id/health", method = "post", tag = "ApiTags::Health")]
    async fn submit_health(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier, e.g. `pos-terminal-001` (case-sensitive).
        device_id: Path<String>,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
        body: JsonBody<HealthCheckRequest>,
    ) -> Result<Json<HealthCheckAccepted>, ApiError> {
        state.authenticate(&auth).await?.require_writer_for(&device_id)?;
        let check = parse_health_check(&body.bytes).map_err(|e| ApiError::invalid("body", e))?;
        let device = DeviceId::parse(&device_id).map_err(|_| ApiError::device_not_found(&device_id))?;
        let key = scoped_key(idempotency_key, device_scope(device.as_str()))?;
        let (write, accepted_at) = state.homepot.record_health(device, check, key.as_ref()).await?;
        let (health_check_id, stored) = write.answer();
        Ok(Json(HealthCheckAccepted {
            message: "Health check recorded successfully".to_owned(),
            device_id: device_id.0,
            health_check_id,
            timestamp: rfc3339(accepted_at),
            stored,
        }))
    }

    /// A device's health checks of the last `hours`, newest first. Needs an admin or read key.
    #[oai(path = "/api/v1/devices/:device_id/health", method = "get", tag = "ApiTags::Health")]
    async fn health_history(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
        /// Window in hours before now (1-720, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "720")))]
        hours: Query<Option<u32>>,
        /// Most checks returned (1-10000, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<Option<u32>>,
    ) -> Result<Json<HealthHistory>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let device = state.homepot.registered_device(&device_id).await?;
        let hours = hours.0.unwrap_or(24);
        let checks = state.homepot.health_history(&device, hours, limit.0.unwrap_or(100) as usize).await?;
        Ok(Json(HealthHistory {
            device_id: device_id.0,
            time_range_hours: hours,
            count: checks.len(),
            health_checks: checks.into_iter().map(HealthCheckView::from).collect(),
        }))
    }
}
