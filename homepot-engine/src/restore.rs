//! Rebuilds the in-memory views from stored history at start: each gateway node's newest
//! report (`/api/monitoring/resources`, and the baseline of the `/ws` events) and the latest
//! container measurements (`GET /api/v1/containers/metrics`). Without this, a restart
//! blanked them until every node and device reported again.
//!
//! The SmartDataFilter stores an unchanged series only once per heartbeat interval, so the
//! newest stored sample can be that much older than the newest report. A node or series seen
//! within its usual window plus that interval is restored as just seen, and so gets a full
//! window to report again, as device states do after a restart. Older nodes come back stale,
//! with the time of their newest stored report.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::live::LiveStore;
use homepot_core::node::{NODE_POINT_NAMES, NodeReport};
use homepot_storage::{StorageError, Store};

use crate::clock::nanos;
use crate::nodes::Nodes;

/// How far back nodes are looked for: a node silent longer than this before a restart stays
/// out of the view until it reports again.
const NODE_LOOKBACK: TimeDelta = TimeDelta::hours(24);

/// What the rebuilt views need to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestoreWindows {
    /// A node silent this long is stale.
    pub(crate) node_stale_after: TimeDelta,
    /// A live series not updated this long leaves the live view.
    pub(crate) live_retention: TimeDelta,
    /// The filter's heartbeat interval, zero when every sample is stored.
    pub(crate) stored_every: TimeDelta,
}

/// Rebuilds both views; returns the nodes and container series restored.
pub(crate) async fn restore_views(
    store: &dyn Store,
    live: &RwLock<LiveStore>,
    nodes: &Nodes,
    windows: RestoreWindows,
    now: DateTime<Utc>,
) -> Result<(usize, usize), StorageError> {
    let live_window = windows.live_retention + windows.stored_every;
    let containers = store.latest_points(&["container"], nanos(now - live_window)).await?;
    live.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(None, &containers, nanos(now));

    let node_window = windows.node_stale_after + windows.stored_every;
    let points = store.latest_points(&NODE_POINT_NAMES, nanos(now - NODE_LOOKBACK.max(node_window))).await?;
    // A node whose labels changed has a series per label set: its newest report wins.
    let mut by_node: HashMap<String, Vec<&homepot_core::Point>> = HashMap::new();
    for point in &points {
        if let Some((_, node)) = point.tags().iter().find(|(k, _)| k == "node_id") {
            by_node.entry(node.clone()).or_default().push(point);
        }
    }
    let mut restored = 0;
    for (_, mut points) in by_node {
        points.sort_by_key(|p| std::cmp::Reverse(p.timestamp_ns()));
        let newest_labels = points[0].tags().to_vec();
        points.retain(|p| p.tags() == newest_labels.as_slice());
        let Some((node, report, time_ns)) = NodeReport::from_points(points) else { continue };
        let stored_at = DateTime::from_timestamp_nanos(time_ns);
        let recent = stored_at >= now - node_window;
        nodes.restore(node.to_string(), report, if recent { now } else { stored_at }, !recent);
        restored += 1;
    }
    Ok((restored, containers.len()))
}
