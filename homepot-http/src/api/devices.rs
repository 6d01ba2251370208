//! The device registry: register a device (with its first key), list, read one with its
//! newest check and state, remove one with its keys and checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use homepot_core::ingest::device_json::parse_new_device;
use homepot_core::{Device, ErrorKind};
use homepot_storage::fleet::{FleetCursor, FleetDevice, FleetQuery, FleetSortKey};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::documented::RegisterDeviceRequest;
use super::health::HealthCheckView;
use super::{ApiTags, AppState, parse_labels, rfc3339};
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
    /// Its latest stored health check in brief, in listings; absent before its first check.
    #[oai(skip_serializing_if_is_none)]
    latest: Option<LatestView>,
}

/// A device's latest stored health check, in brief.
#[derive(Debug, Object)]
struct LatestView {
    /// When it was accepted (RFC 3339, UTC).
    checked_at: String,
    /// Overall health.
    is_healthy: bool,
    /// Response time in ms.
    response_time_ms: i64,
    /// CPU use, 0-100, when reported.
    cpu_percent: Option<f64>,
    /// Memory use, 0-100, when reported.
    memory_percent: Option<f64>,
    /// Disk use, 0-100, when reported.
    disk_percent: Option<f64>,
}

impl From<FleetDevice> for DeviceView {
    fn from(fleet: FleetDevice) -> Self {
        let mut view = DeviceView::from(fleet.device);
        if let Some((state, since)) = fleet.state {
            view.state = Some(state);
            view.state_since = Some(rfc3339(since));
        }
        view.latest = fleet.latest.map(|l| LatestView {
            checked_at: rfc3339(l.checked_at),
            is_healthy: l.is_healthy,
            response_time_ms: l.response_time_ms,
            cpu_percent: l.cpu_percent,
            memory_percent: l.memory_percent,
            disk_percent: l.disk_percent,
        });
        view
    }
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
            latest: None,
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

/// A page of the fleet.
#[derive(Debug, Object)]
struct DeviceList {
    /// The devices, in the requested order.
    devices: Vec<DeviceView>,
    /// How many on this page.
    count: usize,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[oai(skip_serializing_if_is_none)]
    next_cursor: Option<String>,
}

/// A fleet cursor as handed out: the page's order, so it cannot be reused with another.
#[derive(serde::Serialize, serde::Deserialize)]
struct CursorToken {
    sort: String,
    descending: bool,
    #[serde(flatten)]
    after: FleetCursor,
}

fn encode_cursor(query: &FleetQuery, after: FleetCursor) -> String {
    let token = CursorToken { sort: query.sort.as_str().to_owned(), descending: query.descending, after };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_cursor(raw: &str, sort: FleetSortKey, descending: bool) -> Result<FleetCursor, ApiError> {
    let invalid = |message: &str| ApiError::invalid_field("query", "cursor", ErrorKind::BadFormat, message.to_owned());
    let token: CursorToken = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("not a cursor this server handed out"))?;
    if token.sort != sort.as_str() || token.descending != descending || !sort.accepts(&token.after.value) {
        return Err(invalid("the cursor belongs to another sort order"));
    }
    Ok(token.after)
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

    /// The fleet: registered devices with their latest stored check (`latest`) and state, a
    /// page at a time. `q` searches ids and names (ASCII case-insensitive); `state`,
    /// `healthy` and repeated `label=key:value` filter; `sort` names `device_id` (default),
    /// `name`, `created_at`, `checked_at`, `is_healthy`, `response_time_ms`, `cpu_percent`,
    /// `memory_percent` or `disk_percent`, with `-` for descending (absent values come last
    /// either way); `next_cursor` continues the same order. Needs an admin or read key.
    #[oai(path = "/api/v1/devices", method = "get", tag = "ApiTags::Devices")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Text the device id or name contains.
        #[oai(validator(max_length = 128))]
        q: Query<Option<String>>,
        /// Current state: `online`, `unhealthy`, `offline` or one a client posted.
        #[oai(name = "state", validator(max_length = 64))]
        current_state: Query<Option<String>>,
        /// Whether the latest check was healthy.
        healthy: Query<Option<bool>>,
        /// A required label as `key:value`; repeat for more.
        label: Query<Vec<String>>,
        /// Sort key, `-` first for descending.
        sort: Query<Option<String>>,
        /// Devices per page (1-1000, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<DeviceList>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let raw_sort = sort.0.unwrap_or_else(|| "device_id".to_owned());
        let (descending, key) = match raw_sort.strip_prefix('-') {
            Some(key) => (true, key),
            None => (false, raw_sort.as_str()),
        };
        let sort = FleetSortKey::parse(key).ok_or_else(|| {
            ApiError::invalid_field("query", "sort", ErrorKind::BadFormat, "not a sortable field".to_owned())
        })?;
        let after = cursor.0.as_deref().map(|raw| decode_cursor(raw, sort, descending)).transpose()?;
        let query = FleetQuery {
            text: q.0.filter(|q| !q.is_empty()),
            state: current_state.0,
            healthy: healthy.0,
            labels: parse_labels(&label.0)?,
            sort,
            descending,
            limit: limit.0.unwrap_or(100) as usize,
            after,
        };
        let page = state.homepot.fleet(&query).await?;
        let next_cursor = page.next.map(|after| encode_cursor(&query, after));
        let devices: Vec<DeviceView> = page.devices.into_iter().map(DeviceView::from).collect();
        Ok(Json(DeviceList { count: devices.len(), devices, next_cursor }))
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
