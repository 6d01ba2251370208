//! Gateway resource monitoring: node reports in, the cluster view and its live events out.

use std::sync::Arc;

use chrono::SecondsFormat;
use homepot_core::ingest::node_json::parse_node_report;
use homepot_core::node::NodeEvent;
use poem::web::Data;
use poem::web::websocket::{BoxWebSocketUpgraded, Message, WebSocket};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{ApiTags, AppState, IdempotencyHeader, device_scope, rfc3339, scoped_key};
use crate::auth::MetricsAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Gateway resource monitoring.
#[derive(Debug, Default)]
pub(crate) struct MonitoringApi;

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

/// `GET /api/monitoring/resources` (gateway resource monitoring).
#[derive(Debug, Object)]
struct ClusterResources {
    /// When this view was made (RFC 3339, UTC).
    timestamp: String,
    /// Each node's newest report (the gateway monitoring API's node object) with `node_id`, `last_seen` and
    /// `stale`, ordered by node id.
    nodes: Vec<Value>,
    /// Cluster-wide figures.
    summary: ClusterSummaryBody,
}

#[OpenApi]
impl MonitoringApi {
    /// Live cluster events over WebSocket: a node joins or goes stale, its labels (firmware)
    /// change, or a resource crosses or clears its threshold (CPU > 80 %, memory > 90 %,
    /// flash > 95 %, signal quality < 30 % by default); and every alert change
    /// (`{"type": "alert_firing", "alert": {...}}`). Needs an admin or read key.
    #[oai(path = "/ws", method = "get", tag = "ApiTags::Monitoring")]
    async fn events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        websocket: WebSocket,
    ) -> Result<BoxWebSocketUpgraded, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let events = state.homepot.node_events();
        let alerts = state.homepot.alert_updates();
        Ok(websocket.on_upgrade(move |socket| serve_events(socket, events, alerts)).boxed())
    }

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
        /// Names the request so that a retry is answered as the first and stores nothing.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyHeader,
        body: JsonBody<std::collections::BTreeMap<String, Value>>,
    ) -> Result<Json<NodeReportAccepted>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_writer_for(&node_id)?;
        let report = parse_node_report(&body.bytes, state.homepot.now().timestamp())
            .map_err(|e| ApiError::invalid("body", e))?;
        let node = state.homepot.registered_device(&node_id).await?;
        let key = scoped_key(idempotency_key, device_scope(node.as_str()))?;
        let accepted_at = state.homepot.record_node_report(&auth.owner(), &node, report, key.as_ref()).await?;
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
        state.authenticate_metrics(&auth).await?.require_reader()?;
        // Every parameter is a label filter, except the key itself when sent as `p`.
        let filters: Vec<(String, String)> = query.0.into_iter().filter(|(k, _)| k != "p").collect();
        let cluster = state.homepot.cluster(&filters);
        let nodes = cluster
            .nodes
            .iter()
            .map(|node| {
                let mut view = serde_json::to_value(&node.report).unwrap_or_default();
                if let Value::Object(map) = &mut view {
                    map.insert("node_id".into(), Value::from(node.node_id.as_str()));
                    map.insert("last_seen".into(), Value::from(rfc3339(node.last_seen)));
                    map.insert("stale".into(), Value::from(node.stale));
                }
                view
            })
            .collect();
        let summary = cluster.summary;
        Ok(Json(ClusterResources {
            timestamp: state.homepot.now().to_rfc3339_opts(SecondsFormat::Secs, true),
            nodes,
            summary: ClusterSummaryBody {
                total_nodes: summary.total_nodes,
                avg_cpu_usage_percent: summary.avg_cpu_usage_percent,
                avg_memory_usage_percent: summary.avg_memory_usage_percent,
                avg_flash_usage_percent: summary.avg_flash_usage_percent,
                total_bytes_sent: summary.total_bytes_sent,
                total_bytes_received: summary.total_bytes_received,
                stale_nodes: cluster.stale_nodes,
            },
        }))
    }
}

/// Live cluster events as JSON text frames: `node_joined`, `node_stale`, `labels_changed`,
/// `threshold_crossed`, `threshold_cleared`, and alert changes (`alert_pending`,
/// `alert_firing`, `alert_acknowledged`, `alert_resolved`). Needs an admin or read key (from a
/// browser, the dashboard's session cookie). A client too slow for the event rate misses events
/// (told by a `lagged` event) instead of making the server queue them.
async fn serve_events(
    socket: poem::web::websocket::WebSocketStream,
    mut events: broadcast::Receiver<NodeEvent>,
    mut alerts: broadcast::Receiver<homepot_engine::AlertUpdate>,
) {
    use futures_util::{SinkExt, StreamExt};
    let lagged = |missed| format!(r#"{{"type":"lagged","missed":{missed}}}"#);
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            event = events.recv() => {
                let text = match event {
                    Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                    Err(broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
            update = alerts.recv() => {
                let text = match update {
                    Ok(update) => super::alerts::update_json(&update).to_string(),
                    Err(broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
