use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use homepot_core::DeviceId;
use homepot_core::node::{NodeReport, parse_node_report, summarize};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::{ApiTags, AppState, now, rfc3339};
use crate::auth::MetricsAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Gateway resource monitoring (seed 03).
#[derive(Debug)]
pub(crate) struct MonitoringApi;

/// Each node's newest report and when it arrived. Reports are also stored as metric points;
/// this is the view `/api/monitoring/resources` reads.
#[derive(Debug, Default)]
pub(crate) struct NodeSnapshots(RwLock<HashMap<String, (NodeReport, DateTime<Utc>)>>);

/// The answer to a node report.
#[derive(Debug, Object)]
struct NodeReportAccepted {
    /// `Node resources recorded successfully`.
    message: String,
    /// The node.
    node_id: String,
    /// When the server accepted the report (RFC 3339, UTC).
    timestamp: String,
}

/// Cluster-wide figures over the nodes that are not stale.
#[derive(Debug, Object)]
struct ClusterSummaryBody {
    /// Nodes summarised (not stale).
    total_nodes: usize,
    /// Mean CPU use.
    avg_cpu_usage_percent: f64,
    /// Mean memory use.
    avg_memory_usage_percent: f64,
    /// Mean flash use over nodes that report flash.
    avg_flash_usage_percent: f64,
    /// Bytes sent by those nodes.
    total_bytes_sent: i64,
    /// Bytes received by those nodes.
    total_bytes_received: i64,
    /// Nodes left out because they have not reported within the stale interval.
    stale_nodes: usize,
}

/// `GET /api/monitoring/resources` (seed 03).
#[derive(Debug, Object)]
struct ClusterResources {
    /// When this view was made (RFC 3339, UTC).
    timestamp: String,
    /// Each node's newest report (seed 03's node object) with `node_id`, `last_seen` and
    /// `stale`, ordered by node id.
    nodes: Vec<Value>,
    /// Cluster-wide figures.
    summary: ClusterSummaryBody,
}

#[OpenApi]
impl MonitoringApi {
    /// A node reports its CPU, memory, network and flash with its labels. The node must be a
    /// registered device; its own key or an admin key. The report is stored as metric points
    /// (`node_cpu`, `node_memory`, ... tagged with `node_id` and the labels).
    #[oai(path = "/api/monitoring/nodes/:node_id/resources", method = "post", tag = "ApiTags::Monitoring")]
    async fn report(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// The node's device id.
        node_id: Path<String>,
        body: JsonBody<Value>,
    ) -> Result<Json<NodeReportAccepted>, ApiError> {
        state.auth.authenticate_metrics(&auth).await?.require_writer_for(&node_id)?;
        let accepted_at = now();
        let report =
            parse_node_report(&body.bytes, accepted_at.timestamp()).map_err(|e| ApiError::invalid("body", e))?;
        let node = DeviceId::parse(&node_id).map_err(|_| ApiError::device_not_found(&node_id))?;
        if state.store.device(&node).await?.is_none() {
            return Err(ApiError::device_not_found(&node_id));
        }
        // The server's clock places the points: node clocks (ESP32 and the like) drift.
        let points = report.points(&node, accepted_at.timestamp_nanos_opt().unwrap_or_default());
        state.pipeline.write_points(points).await?;
        state.nodes.0.write().unwrap_or_else(PoisonError::into_inner).insert(node_id.0.clone(), (report, accepted_at));
        Ok(Json(NodeReportAccepted {
            message: "Node resources recorded successfully".to_owned(),
            node_id: node_id.0,
            timestamp: rfc3339(accepted_at),
        }))
    }

    /// Every node's newest report and the cluster summary. Any query parameter filters by
    /// label (`?zone=zone-1&env=production`). Nodes silent for longer than the stale interval
    /// are listed with `stale: true` and left out of the summary. Needs an admin or read key.
    #[oai(path = "/api/monitoring/resources", method = "get", tag = "ApiTags::Monitoring")]
    async fn resources(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        query: poem::web::Query<Vec<(String, String)>>,
    ) -> Result<Json<ClusterResources>, ApiError> {
        state.auth.authenticate_metrics(&auth).await?.require_reader()?;
        // Every parameter is a label filter, except the key itself when sent as `p`.
        let filters: Vec<(String, String)> = query.0.into_iter().filter(|(k, _)| k != "p").collect();
        let at = now();
        let stale_before = at - state.node_stale_after;
        let snapshots = state.nodes.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut selected: Vec<(&String, &NodeReport, DateTime<Utc>)> = snapshots
            .iter()
            .filter(|(_, (report, _))| filters.iter().all(|(k, v)| report.labels.get(k) == Some(v)))
            .map(|(id, (report, seen))| (id, report, *seen))
            .collect();
        selected.sort_by(|a, b| a.0.cmp(b.0));
        let fresh: Vec<&NodeReport> =
            selected.iter().filter(|(_, _, seen)| *seen >= stale_before).map(|(_, r, _)| *r).collect();
        let summary = summarize(fresh.iter().copied());
        let nodes = selected
            .iter()
            .map(|(id, report, seen)| {
                let mut node = serde_json::to_value(report).unwrap_or_default();
                if let Value::Object(map) = &mut node {
                    map.insert("node_id".into(), Value::from(id.as_str()));
                    map.insert("last_seen".into(), Value::from(rfc3339(*seen)));
                    map.insert("stale".into(), Value::from(*seen < stale_before));
                }
                node
            })
            .collect();
        Ok(Json(ClusterResources {
            timestamp: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            nodes,
            summary: ClusterSummaryBody {
                total_nodes: summary.total_nodes,
                avg_cpu_usage_percent: summary.avg_cpu_usage_percent,
                avg_memory_usage_percent: summary.avg_memory_usage_percent,
                avg_flash_usage_percent: summary.avg_flash_usage_percent,
                total_bytes_sent: summary.total_bytes_sent,
                total_bytes_received: summary.total_bytes_received,
                stale_nodes: selected.len() - fresh.len(),
            },
        }))
    }
}
