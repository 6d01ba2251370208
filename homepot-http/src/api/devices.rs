//! The device registry: register a device (with its first key), list, read one with its
//! newest check and state, remove one with its keys and checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::Device;
use homepot_core::ingest::device_json::parse_new_device;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::documented::RegisterDeviceRequest;
use super::health::HealthCheckView;
use super::{ApiTags, AppState, rfc3339};
use crate::auth::ApiKeyAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Device registry operations.
#[derive(Debug, Default)]
pub(crate) struct DevicesApi;

/// A registered device.
#[derive(Debug, Object)]
struct DeviceView {
    /// Identifier.
    device_id: String,
    /// Human-readable name.
    #[oai(skip_serializing_if_is_none)]
    name: Option<String>,
    /// Kind of device.
    #[oai(skip_serializing_if_is_none)]
    device_type: Option<String>,
    /// Labels.
    labels: BTreeMap<String, String>,
    /// When it was registered (RFC 3339, UTC).
    created_at: String,
    /// Its newest health check, on single-device reads.
    #[oai(skip_serializing_if_is_none)]
    latest_health: Option<HealthCheckView>,
    /// `online`, `unhealthy`, `offline` (or a state a client posted), on single-device
    /// reads; absent before its first health check.
    #[oai(skip_serializing_if_is_none)]
    state: Option<String>,
    /// When it entered that state (RFC 3339, UTC).
    #[oai(skip_serializing_if_is_none)]
    state_since: Option<String>,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            device_id: d.id.to_string(),
            name: d.name,
            device_type: d.device_type,
            labels: d.labels.as_map().clone(),
            created_at: rfc3339(d.created_at),
            latest_health: None,
            state: None,
            state_since: None,
        }
    }
}

/// A newly registered device with its API key.
#[derive(Debug, Object)]
struct RegisteredDevice {
    /// The device.
    #[oai(flatten)]
    device: DeviceView,
    /// The device's API key. Shown only in this response: store it on the device.
    api_key: String,
}

/// Every registered device.
#[derive(Debug, Object)]
struct DeviceList {
    /// Devices ordered by id.
    devices: Vec<DeviceView>,
    /// How many.
    count: usize,
}

#[derive(Debug, ApiResponse)]
enum RegisterResponse {
    /// Registered.
    #[oai(status = 201)]
    Created(Json<RegisteredDevice>),
}

#[derive(Debug, ApiResponse)]
enum RemoveResponse {
    /// Removed, with its keys and health checks.
    #[oai(status = 204)]
    Removed,
}

#[OpenApi]
impl DevicesApi {
    /// Register a device. The answer carries the device's API key, shown only this once.
    /// Needs an admin key.
    #[oai(path = "/api/v1/devices", method = "post", tag = "ApiTags::Devices")]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<RegisterDeviceRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let new = parse_new_device(&body.bytes).map_err(|e| ApiError::invalid("body", e))?;
        let (device, key) = state.homepot.register_device(&new).await?;
        Ok(RegisterResponse::Created(Json(RegisteredDevice {
            device: device.into(),
            api_key: key.expose().to_owned(),
        })))
    }

    /// Every registered device. Needs an admin or read key.
    #[oai(path = "/api/v1/devices", method = "get", tag = "ApiTags::Devices")]
    async fn list(&self, state: Data<&Arc<AppState>>, auth: ApiKeyAuth) -> Result<Json<DeviceList>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let devices: Vec<DeviceView> = state.homepot.devices().await?.into_iter().map(DeviceView::from).collect();
        Ok(Json(DeviceList { count: devices.len(), devices }))
    }

    /// One device with its newest health check. Needs an admin or read key.
    #[oai(path = "/api/v1/devices/:device_id", method = "get", tag = "ApiTags::Devices")]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
    ) -> Result<Json<DeviceView>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let detail = state.homepot.device_detail(&device_id).await?;
        let mut view = DeviceView::from(detail.device);
        view.latest_health = detail.latest_health.map(HealthCheckView::from);
        if let Some((current, since)) = detail.state {
            view.state = Some(current);
            view.state_since = Some(rfc3339(since));
        }
        Ok(Json(view))
    }

    /// Remove a device with its keys and health checks. Needs an admin key.
    #[oai(path = "/api/v1/devices/:device_id", method = "delete", tag = "ApiTags::Devices")]
    async fn remove(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
    ) -> Result<RemoveResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        state.homepot.remove_device(&device_id).await?;
        Ok(RemoveResponse::Removed)
    }
}
