//! Gateway nodes: each node's newest report, the events a report causes (join, label change,
//! threshold crossed or cleared, stale), and the cluster view with its summary. Reports are
//! also stored as metric points; this is what the resources view and the event stream read.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::node::{ClusterSummary, NodeEvent, NodeReport, Thresholds, report_events, summarize};
use tokio::sync::broadcast;

/// A node's newest report, when it arrived, and whether it has been announced stale.
#[derive(Debug)]
struct NodeState {
    report: NodeReport,
    seen: DateTime<Utc>,
    stale: bool,
}

/// One node in the cluster view.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// The node's device id.
    pub node_id: String,
    /// Its newest report.
    pub report: NodeReport,
    /// When that report arrived.
    pub last_seen: DateTime<Utc>,
    /// Silent for longer than the stale interval.
    pub stale: bool,
}

/// The cluster as `/api/monitoring/resources` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// Every selected node, ordered by id.
    pub nodes: Vec<NodeView>,
    /// Figures over the nodes that are not stale.
    pub summary: ClusterSummary,
    /// Selected nodes left out of the summary because they are stale.
    pub stale_nodes: usize,
}

/// Each node's newest report, and the channel its events go out on.
#[derive(Debug)]
pub(crate) struct Nodes {
    states: RwLock<HashMap<String, NodeState>>,
    events: broadcast::Sender<NodeEvent>,
    thresholds: Thresholds,
    stale_after: TimeDelta,
}

impl Nodes {
    pub(crate) fn new(thresholds: Thresholds, stale_after: TimeDelta) -> Self {
        // Bounded: slow subscribers lag and are told so; nothing queues up for them.
        Self { states: RwLock::default(), events: broadcast::channel(1_024).0, thresholds, stale_after }
    }

    pub(crate) fn stale_after(&self) -> TimeDelta {
        self.stale_after
    }

    /// Events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn announce(&self, events: Vec<NodeEvent>) {
        for event in events {
            // No subscriber is fine: events are for whoever watches now.
            let _ = self.events.send(event);
        }
    }

    /// Records a report and announces the events it causes.
    pub(crate) fn record(&self, node: &str, report: NodeReport, seen: DateTime<Utc>) {
        let events = {
            let mut nodes = self.states.write().unwrap_or_else(PoisonError::into_inner);
            // A node back from being stale joins again, with fresh threshold state.
            let previous = nodes.get(node).filter(|s| !s.stale).map(|s| &s.report);
            let events = report_events(node, previous, &report, &self.thresholds);
            nodes.insert(node.to_owned(), NodeState { report, seen, stale: false });
            events
        };
        self.announce(events);
    }

    /// Puts back a node rebuilt from stored history at start. A node already reporting keeps
    /// its newer report.
    pub(crate) fn restore(&self, node: String, report: NodeReport, seen: DateTime<Utc>, stale: bool) {
        let mut nodes = self.states.write().unwrap_or_else(PoisonError::into_inner);
        nodes.entry(node).or_insert(NodeState { report, seen, stale });
    }

    /// Marks nodes silent for longer than the stale interval as stale, and announces each.
    pub(crate) fn sweep(&self, now: DateTime<Utc>) {
        let cutoff = now - self.stale_after;
        let events = {
            let mut nodes = self.states.write().unwrap_or_else(PoisonError::into_inner);
            let mut events = Vec::new();
            for (id, state) in nodes.iter_mut() {
                if !state.stale && state.seen < cutoff {
                    state.stale = true;
                    events.push(NodeEvent::NodeStale { node_id: id.clone() });
                }
            }
            events
        };
        self.announce(events);
    }

    /// The nodes whose labels include every `(key, value)` of `filters`, and the summary of
    /// those not stale at `now`.
    pub(crate) fn cluster(&self, filters: &[(String, String)], now: DateTime<Utc>) -> ClusterView {
        let stale_before = now - self.stale_after;
        let nodes = self.states.read().unwrap_or_else(PoisonError::into_inner);
        let mut selected: Vec<NodeView> = nodes
            .iter()
            .filter(|(_, s)| filters.iter().all(|(k, v)| s.report.labels.get(k) == Some(v)))
            .map(|(id, s)| NodeView {
                node_id: id.clone(),
                report: s.report.clone(),
                last_seen: s.seen,
                stale: s.seen < stale_before,
            })
            .collect();
        selected.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let summary = summarize(selected.iter().filter(|n| !n.stale).map(|n| &n.report));
        let stale_nodes = selected.iter().filter(|n| n.stale).count();
        ClusterView { nodes: selected, summary, stale_nodes }
    }
}
