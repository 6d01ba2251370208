use std::sync::Arc;

use homepot_core::container::{MetricsData, device_of_thing};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::{ApiTags, AppState, now};
use crate::auth::MetricsAuth;
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
        body: JsonBody<std::collections::BTreeMap<String, Value>>,
    ) -> Result<Json<ContainerMetricsAccepted>, ApiError> {
        let principal = state.auth.authenticate_metrics(&auth).await?;
        let data = MetricsData::parse(&body.bytes, None, now().timestamp_millis())
            .map_err(|e| ApiError::invalid("body", e))?;
        let Some(device) = device_of_thing(&data.thing_id) else {
            return Err(ApiError::device_not_found(&data.thing_id));
        };
        principal.require_writer_for(device.as_str())?;
        if state.store.device(&device).await?.is_none() {
            return Err(ApiError::device_not_found(device.as_str()));
        }
        let accepted = data.snapshot.iter().map(|s| s.measurements.len()).sum();
        state.pipeline.write_points(&auth.owner(), data.points()).await?;
        Ok(Json(ContainerMetricsAccepted {
            accepted,
            message: format!("Accepted {accepted} measurement{}", if accepted == 1 { "" } else { "s" }),
            device_id: device.to_string(),
        }))
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
        state.auth.authenticate_metrics(&auth).await?.require_reader()?;
        let live = state.live_now();
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
