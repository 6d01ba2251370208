//! Container metrics of edge devices (Ditto/Hono messages): data messages in, the latest
//! snapshot per originator out, and metrics requests sent to a device over the MQTT bridge.

use std::sync::Arc;

use homepot_core::container::device_of_thing;
use homepot_core::ingest::container_json::{parse_data_message, parse_request_command};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::documented::ContainerRequestBody;
use super::{ApiTags, AppState, IdempotencyHeader, device_scope, scoped_key};
use crate::auth::{ApiKeyAuth, MetricsAuth};
use crate::body::JsonBody;
use crate::error::ApiError;

/// Container metrics (Ditto/Hono edge devices).
#[derive(Debug, Default)]
pub(crate) struct ContainersApi;

/// The answer to a data message: everything counted is durable.
#[derive(Debug, Object)]
struct ContainerMetricsAccepted {
    /// Measurements stored.
    accepted: usize,
    /// `Accepted N measurements`.
    message: String,
    /// The device the message's thing belongs to.
    device_id: String,
}

/// One measurement.
#[derive(Debug, Object)]
struct Measurement {
    /// e.g. `cpu.utilization`.
    id: String,
    /// The measured value.
    value: f64,
}

/// The latest snapshot of one originator.
#[derive(Debug, Object)]
struct OriginatorView {
    /// `SYSTEM` or `Container:<name>`.
    originator: String,
    /// The reporting device.
    #[oai(skip_serializing_if_is_none)]
    device_id: Option<String>,
    /// When the device published it, Unix ms.
    timestamp: i64,
    /// Latest value of each measurement.
    measurements: Vec<Measurement>,
}

/// A device's refusal of a metrics request.
#[derive(Debug, Object)]
struct DeviceRefusal {
    /// What happened.
    detail: String,
    /// The status the device answered with.
    device_status: u16,
    /// The device's answer, as it sent it.
    device_response: Value,
}

/// What became of a metrics request.
#[derive(Debug, ApiResponse)]
enum RequestAnswer {
    /// The device accepted the request (it answered 204).
    #[oai(status = 204)]
    Accepted,
    /// The device refused: its own status (4XX) and answer.
    #[oai(status_range = "4XX")]
    RefusedByRequest(StatusCode, Json<DeviceRefusal>),
    /// The device failed: its own status (5XX, or 502 for a status that is no error) and answer.
    #[oai(status_range = "5XX")]
    FailedOnDevice(StatusCode, Json<DeviceRefusal>),
}

/// `{"snapshots": [...]}`.
#[derive(Debug, Object)]
struct ContainerSnapshots {
    /// One per originator (and device), ordered.
    snapshots: Vec<OriginatorView>,
}

#[OpenApi]
impl ContainersApi {
    /// Ingest a container metrics data message (Ditto JSON) as the body. The device its topic
    /// names (`<ns>/<name>:edge:containers`) must be registered; its own key or an admin key.
    /// Each originator's measurements become a `container` point tagged with `originator` and
    /// `device_id`; unknown measurement ids are kept.
    #[oai(path = "/api/v1/containers/metrics", method = "post", tag = "ApiTags::Containers")]
    async fn ingest(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
        body: JsonBody<std::collections::BTreeMap<String, Value>>,
    ) -> Result<Json<ContainerMetricsAccepted>, ApiError> {
        let principal = state.authenticate_metrics(&auth).await?;
        let data = parse_data_message(&body.bytes, None, state.homepot.now().timestamp_millis())
            .map_err(|e| ApiError::invalid("body", e))?;
        let Some(device) = device_of_thing(&data.thing_id) else {
            return Err(ApiError::device_not_found(&data.thing_id));
        };
        principal.require_writer_for(device.as_str())?;
        let device = state.homepot.registered_device(device.as_str()).await?;
        let key = scoped_key(idempotency_key, device_scope(device.as_str()))?;
        let accepted = state.homepot.record_container_data(&auth.owner(), &device, &data, key.as_ref()).await?;
        Ok(Json(ContainerMetricsAccepted {
            accepted,
            message: format!("Accepted {accepted} measurement{}", if accepted == 1 { "" } else { "s" }),
            device_id: device.to_string(),
        }))
    }

    /// Ask a device to report container metrics: the MQTT bridge publishes a request message
    /// to `command//<device_id>:edge:containers/req/<id>/request` and waits for the device's
    /// answer. 204 when the device accepts; the device's own status and answer when it
    /// refuses; 504 when it does not answer within the request timeout; 503 when no bridge
    /// runs. Admin keys only.
    #[oai(path = "/api/v1/containers/requests", method = "post", tag = "ApiTags::Containers")]
    async fn request(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<ContainerRequestBody>,
    ) -> Result<RequestAnswer, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let command = parse_request_command(&body.bytes).map_err(|e| ApiError::invalid("body", e))?;
        let answer = state.homepot.request_container_metrics(&command).await?;
        if (200..300).contains(&answer.status) {
            return Ok(RequestAnswer::Accepted);
        }
        let refusal = DeviceRefusal {
            detail: format!("Device '{}' refused the request with {}", command.device_id, answer.status),
            device_status: answer.status,
            device_response: answer.payload,
        };
        Ok(match StatusCode::from_u16(answer.status) {
            Ok(status) if status.is_client_error() => RequestAnswer::RefusedByRequest(status, Json(refusal)),
            Ok(status) if status.is_server_error() => RequestAnswer::FailedOnDevice(status, Json(refusal)),
            _ => RequestAnswer::FailedOnDevice(StatusCode::BAD_GATEWAY, Json(refusal)),
        })
    }

    /// The latest snapshot per originator, optionally of one originator. Needs an admin or
    /// read key.
    #[oai(path = "/api/v1/containers/metrics", method = "get", tag = "ApiTags::Containers")]
    async fn latest(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Only this originator, e.g. `Container:test`.
        originator: Query<Option<String>>,
    ) -> Result<Json<ContainerSnapshots>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let live = state.homepot.live();
        let tag = |tags: &[(Arc<str>, Arc<str>)], key: &str| {
            tags.iter().find(|(k, _)| **k == *key).map(|(_, v)| v.to_string())
        };
        let snapshots = live
            .series(Some("container"))
            .into_iter()
            .filter_map(|(key, series)| {
                let name = tag(&key.tags, "originator")?;
                if originator.0.as_ref().is_some_and(|wanted| *wanted != name) {
                    return None;
                }
                Some(OriginatorView {
                    originator: name,
                    device_id: tag(&key.tags, "device_id"),
                    timestamp: series.timestamp_ns.div_euclid(1_000_000),
                    measurements: series
                        .fields
                        .iter()
                        .filter_map(|(id, v)| v.as_f64().map(|value| Measurement { id: id.to_string(), value }))
                        .collect(),
                })
            })
            .collect();
        Ok(Json(ContainerSnapshots { snapshots }))
    }
}
