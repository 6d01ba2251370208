use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use homepot_core::DeviceId;
use homepot_core::ingest::node_json::parse_node_report;
use homepot_core::node::{NodeEvent, NodeReport, Thresholds, report_events, summarize};
use poem::web::Data;
use poem::web::websocket::{BoxWebSocketUpgraded, Message, WebSocket};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{ApiTags, AppState, now, rfc3339};
use crate::auth::MetricsAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Gateway resource monitoring.
#[derive(Debug, Default)]
pub(crate) struct MonitoringApi;

/// A node's newest report, when it arrived, and whether it has been announced stale.
#[derive(Debug)]
pub(crate) struct NodeState {
    report: NodeReport,
    seen: DateTime<Utc>,
    stale: bool,
}

/// Each node's newest report. Reports are also stored as metric points; this is the view
/// `/api/monitoring/resources` and the `/ws` events read.
#[derive(Debug, Default)]
pub(crate) struct NodeSnapshots(RwLock<HashMap<String, NodeState>>);

impl NodeSnapshots {
    /// Records a report and returns the events it causes.
    fn record(&self, node: &str, report: NodeReport, seen: DateTime<Utc>, thresholds: &Thresholds) -> Vec<NodeEvent> {
        let mut nodes = self.0.write().unwrap_or_else(PoisonError::into_inner);
        // A node back from being stale joins again, with fresh threshold state.
        let previous = nodes.get(node).filter(|s| !s.stale).map(|s| &s.report);
        let events = report_events(node, previous, &report, thresholds);
        nodes.insert(node.to_owned(), NodeState { report, seen, stale: false });
        events
    }

    /// Puts back a node rebuilt from stored history at start. A node already reporting keeps
    /// its newer report.
    pub(crate) fn restore(&self, node: String, report: NodeReport, seen: DateTime<Utc>, stale: bool) {
        let mut nodes = self.0.write().unwrap_or_else(PoisonError::into_inner);
        nodes.entry(node).or_insert(NodeState { report, seen, stale });
    }

    /// Marks nodes silent since before `cutoff` as stale; returns an event for each newly stale
    /// one.
    pub(crate) fn sweep(&self, cutoff: DateTime<Utc>) -> Vec<NodeEvent> {
        let mut nodes = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        for (id, state) in nodes.iter_mut() {
            if !state.stale && state.seen < cutoff {
                state.stale = true;
                events.push(NodeEvent::NodeStale { node_id: id.clone() });
            }
        }
        events
    }
}

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
    /// flash > 95 %, signal quality < 30 % by default). Needs an admin or read key.
    #[oai(path = "/ws", method = "get", tag = "ApiTags::Monitoring")]
    async fn events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        websocket: WebSocket,
    ) -> Result<BoxWebSocketUpgraded, ApiError> {
        state.auth.authenticate_metrics(&auth).await?.require_reader()?;
        let events = state.node_events.subscribe();
        Ok(websocket.on_upgrade(move |socket| serve_events(socket, events)).boxed())
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
        body: JsonBody<std::collections::BTreeMap<String, Value>>,
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
        state.pipeline.write_points(&auth.owner(), points).await?;
        for event in state.nodes.record(&node_id, report, accepted_at, &state.thresholds) {
            // No subscriber is fine: events are for whoever watches now.
            let _ = state.node_events.send(event);
        }
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
            .filter(|(_, s)| filters.iter().all(|(k, v)| s.report.labels.get(k) == Some(v)))
            .map(|(id, s)| (id, &s.report, s.seen))
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

/// Live cluster events as JSON text frames: `node_joined`, `node_stale`, `labels_changed`,
/// `threshold_crossed`, `threshold_cleared`. Needs an admin or read key (`?p=KEY` from a
/// browser). A client too slow for the event rate misses events (told by a `lagged` event)
/// instead of making the server queue them.
async fn serve_events(socket: poem::web::websocket::WebSocketStream, mut events: broadcast::Receiver<NodeEvent>) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            event = events.recv() => {
                let text = match event {
                    Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
                    Err(broadcast::error::RecvError::Lagged(missed)) => format!(r#"{{"type":"lagged","missed":{missed}}}"#),
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
