//! Gateway node resources: a node's CPU, memory, network and flash snapshot with its
//! labels, the JSON adapter that validates it, and the cluster summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::device::DeviceId;
use crate::metric::{FieldValue, MetricType, Point};

/// CPU of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuResources {
    /// Current frequency in MHz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_mhz: Option<f64>,
    /// Utilisation, 0–100.
    pub usage_percent: f64,
    /// Temperature in °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
}

/// RAM or flash of a node: used + free = total (within 1 %).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageResources {
    /// Total bytes.
    pub total_bytes: i64,
    /// Free bytes.
    pub free_bytes: i64,
    /// Used bytes.
    pub used_bytes: i64,
    /// Utilisation, 0–100.
    pub usage_percent: f64,
}

/// Network counters and Wi-Fi signal of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkResources {
    /// Bytes sent since boot.
    pub bytes_sent: i64,
    /// Bytes received since boot.
    pub bytes_received: i64,
    /// Packets sent since boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_sent: Option<i64>,
    /// Packets received since boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_received: Option<i64>,
    /// Wi-Fi signal strength in dBm (-120 to 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rssi_dbm: Option<f64>,
    /// Wi-Fi signal quality, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_quality_percent: Option<f64>,
}

/// One node's validated resource snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// Unix seconds when the node took it (the server's time if absent).
    pub timestamp: i64,
    /// The node's IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<String>,
    /// The node's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// CPU.
    pub cpu: CpuResources,
    /// RAM.
    pub memory: StorageResources,
    /// Network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkResources>,
    /// Flash storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash: Option<StorageResources>,
    /// Labels such as firmware `version`, `env`, `zone`.
    pub labels: BTreeMap<String, String>,
}

impl NodeReport {
    /// The report as metric points (`node_cpu`, `node_memory`, `node_network`, `node_flash`)
    /// tagged with the node's labels and `node_id`, for the live view and metric history.
    pub fn points(&self, node: &DeviceId, time_ns: i64) -> Vec<Point> {
        let mut tags: Vec<(String, String)> = self.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        tags.retain(|(k, _)| k != "node_id");
        tags.push(("node_id".to_owned(), node.as_str().to_owned()));
        let float = |name: &str, v: Option<f64>| v.map(|v| (name.to_owned(), FieldValue::Float(v)));
        let int = |name: &str, v: Option<i64>| v.map(|v| (name.to_owned(), FieldValue::Integer(v)));
        let text = |name: &str, v: &Option<String>| v.clone().map(|v| (name.to_owned(), FieldValue::String(v)));
        let storage = |s: &StorageResources| {
            vec![
                int("total_bytes", Some(s.total_bytes)),
                int("free_bytes", Some(s.free_bytes)),
                int("used_bytes", Some(s.used_bytes)),
                float("usage_percent", Some(s.usage_percent)),
            ]
        };
        let mut groups = vec![
            (
                "node_cpu",
                vec![
                    float("frequency_mhz", self.cpu.frequency_mhz),
                    float("usage_percent", Some(self.cpu.usage_percent)),
                    float("temperature_c", self.cpu.temperature_c),
                    // Kept so that the report can be rebuilt from history (`from_points`).
                    text("node_ip", &self.node_ip),
                    text("hostname", &self.hostname),
                ],
            ),
            ("node_memory", storage(&self.memory)),
        ];
        if let Some(n) = &self.network {
            groups.push((
                "node_network",
                vec![
                    int("bytes_sent", Some(n.bytes_sent)),
                    int("bytes_received", Some(n.bytes_received)),
                    int("packets_sent", n.packets_sent),
                    int("packets_received", n.packets_received),
                    float("rssi_dbm", n.rssi_dbm),
                    float("signal_quality_percent", n.signal_quality_percent),
                ],
            ));
        }
        if let Some(f) = &self.flash {
            groups.push(("node_flash", storage(f)));
        }
        groups
            .into_iter()
            .filter_map(|(name, fields)| {
                let fields: Vec<_> = fields.into_iter().flatten().collect();
                Point::new(name.to_owned(), tags.clone(), fields, time_ns, MetricType::Gauge).ok()
            })
            .collect()
    }
}

/// The node names [`NodeReport::points`] writes.
pub const NODE_POINT_NAMES: [&str; 4] = ["node_cpu", "node_memory", "node_network", "node_flash"];

impl NodeReport {
    /// Rebuilds a node's report from its newest stored points (what [`NodeReport::points`]
    /// wrote), for the views that must survive a restart. Returns the node, the report and
    /// the newest point's time (ns); `None` when `node_cpu` or `node_memory` is missing. The
    /// report's `timestamp` becomes that time: the node's own clock reading is not stored.
    pub fn from_points<'a>(points: impl IntoIterator<Item = &'a Point>) -> Option<(DeviceId, Self, i64)> {
        let mut groups: BTreeMap<&str, &Point> = BTreeMap::new();
        for point in points {
            groups.insert(point.name(), point);
        }
        let cpu = groups.get("node_cpu")?;
        let node = cpu.tags().iter().find(|(k, _)| k == "node_id").and_then(|(_, v)| DeviceId::parse(v).ok())?;
        let labels: BTreeMap<String, String> =
            cpu.tags().iter().filter(|(k, _)| k != "node_id").map(|(k, v)| (k.clone(), v.clone())).collect();
        let field = |point: &Point, name: &str| point.fields().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let float = |point: &Point, name: &str| field(point, name).and_then(|v| v.as_f64());
        let int = |point: &Point, name: &str| match field(point, name) {
            Some(FieldValue::Integer(v)) => Some(v),
            other => other.and_then(|v| v.as_f64()).map(|v| v as i64),
        };
        let text = |point: &Point, name: &str| match field(point, name) {
            Some(FieldValue::String(v)) => Some(v),
            _ => None,
        };
        let storage = |point: &Point| {
            Some(StorageResources {
                total_bytes: int(point, "total_bytes")?,
                free_bytes: int(point, "free_bytes")?,
                used_bytes: int(point, "used_bytes")?,
                usage_percent: float(point, "usage_percent")?,
            })
        };
        let memory = storage(groups.get("node_memory")?)?;
        let flash = groups.get("node_flash").and_then(|p| storage(p));
        let network = groups.get("node_network").and_then(|p| {
            Some(NetworkResources {
                bytes_sent: int(p, "bytes_sent")?,
                bytes_received: int(p, "bytes_received")?,
                packets_sent: int(p, "packets_sent"),
                packets_received: int(p, "packets_received"),
                rssi_dbm: float(p, "rssi_dbm"),
                signal_quality_percent: float(p, "signal_quality_percent"),
            })
        });
        let time_ns = groups.values().map(|p| p.timestamp_ns()).max().unwrap_or_default();
        let report = NodeReport {
            timestamp: time_ns.div_euclid(1_000_000_000),
            node_ip: text(cpu, "node_ip"),
            hostname: text(cpu, "hostname"),
            cpu: CpuResources {
                frequency_mhz: float(cpu, "frequency_mhz"),
                usage_percent: float(cpu, "usage_percent")?,
                temperature_c: float(cpu, "temperature_c"),
            },
            memory,
            network,
            flash,
            labels,
        };
        Some((node, report, time_ns))
    }
}

/// Alert thresholds for node events (the gateway monitoring API's use cases).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU use above this is an alert (default 80 %).
    pub cpu_percent: f64,
    /// Memory use above this is an alert (default 90 %).
    pub memory_percent: f64,
    /// Flash use above this is an alert (default 95 %).
    pub flash_percent: f64,
    /// Wi-Fi signal quality below this is an alert (default 30 %).
    pub signal_quality_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { cpu_percent: 80.0, memory_percent: 90.0, flash_percent: 95.0, signal_quality_percent: 30.0 }
    }
}

/// Something a watcher of the cluster wants to hear about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A node reported for the first time, or again after being stale.
    NodeJoined {
        /// The node.
        node_id: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
    },
    /// A node has not reported within the stale interval.
    NodeStale {
        /// The node.
        node_id: String,
    },
    /// A node's labels changed (e.g. a firmware rollout changed `version`).
    LabelsChanged {
        /// The node.
        node_id: String,
        /// Labels before.
        previous: BTreeMap<String, String>,
        /// Labels now.
        labels: BTreeMap<String, String>,
    },
    /// A resource crossed its alert threshold.
    ThresholdCrossed {
        /// The node.
        node_id: String,
        /// `cpu_percent`, `memory_percent`, `flash_percent` or `signal_quality_percent`.
        metric: String,
        /// The value now.
        value: f64,
        /// The threshold.
        threshold: f64,
    },
    /// A resource is back within its threshold.
    ThresholdCleared {
        /// The node.
        node_id: String,
        /// The metric.
        metric: String,
        /// The value now.
        value: f64,
        /// The threshold.
        threshold: f64,
    },
}

/// Which alerts a report raises: (metric, value, threshold) for every breached one.
fn breaches(report: &NodeReport, t: &Thresholds) -> Vec<(&'static str, f64, f64)> {
    let mut found = Vec::new();
    let mut check = |metric, value: Option<f64>, threshold: f64, above: bool| {
        if let Some(v) = value
            && ((above && v > threshold) || (!above && v < threshold))
        {
            found.push((metric, v, threshold));
        }
    };
    check("cpu_percent", Some(report.cpu.usage_percent), t.cpu_percent, true);
    check("memory_percent", Some(report.memory.usage_percent), t.memory_percent, true);
    check("flash_percent", report.flash.as_ref().map(|f| f.usage_percent), t.flash_percent, true);
    check(
        "signal_quality_percent",
        report.network.as_ref().and_then(|n| n.signal_quality_percent),
        t.signal_quality_percent,
        false,
    );
    found
}

/// The events a new report causes, given the node's previous report (`None` when it is new or
/// was stale).
pub fn report_events(
    node: &str,
    previous: Option<&NodeReport>,
    current: &NodeReport,
    t: &Thresholds,
) -> Vec<NodeEvent> {
    let mut events = Vec::new();
    match previous {
        None => events.push(NodeEvent::NodeJoined { node_id: node.to_owned(), labels: current.labels.clone() }),
        Some(before) if before.labels != current.labels => events.push(NodeEvent::LabelsChanged {
            node_id: node.to_owned(),
            previous: before.labels.clone(),
            labels: current.labels.clone(),
        }),
        Some(_) => {}
    }
    let was = previous.map(|p| breaches(p, t)).unwrap_or_default();
    let now = breaches(current, t);
    for (metric, value, threshold) in &now {
        if !was.iter().any(|(m, _, _)| m == metric) {
            events.push(NodeEvent::ThresholdCrossed {
                node_id: node.to_owned(),
                metric: (*metric).to_owned(),
                value: *value,
                threshold: *threshold,
            });
        }
    }
    for (metric, _, threshold) in &was {
        if !now.iter().any(|(m, _, _)| m == metric) {
            let value = match *metric {
                "cpu_percent" => Some(current.cpu.usage_percent),
                "memory_percent" => Some(current.memory.usage_percent),
                "flash_percent" => current.flash.as_ref().map(|f| f.usage_percent),
                _ => current.network.as_ref().and_then(|n| n.signal_quality_percent),
            };
            // A metric no longer reported cannot be said to have recovered.
            if let Some(value) = value {
                events.push(NodeEvent::ThresholdCleared {
                    node_id: node.to_owned(),
                    metric: (*metric).to_owned(),
                    value,
                    threshold: *threshold,
                });
            }
        }
    }
    events
}

/// Cluster-wide figures (the gateway monitoring API's `summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    /// Nodes summarised.
    pub total_nodes: usize,
    /// Mean CPU use, one decimal.
    pub avg_cpu_usage_percent: f64,
    /// Mean memory use, one decimal.
    pub avg_memory_usage_percent: f64,
    /// Mean flash use over nodes that report flash, one decimal.
    pub avg_flash_usage_percent: f64,
    /// Bytes sent by all nodes.
    pub total_bytes_sent: i64,
    /// Bytes received by all nodes.
    pub total_bytes_received: i64,
}

/// Summarises `reports`; averages are 0 when there is nothing to average.
pub fn summarize<'a>(reports: impl IntoIterator<Item = &'a NodeReport>) -> ClusterSummary {
    let mean = |sum: f64, n: usize| if n == 0 { 0.0 } else { (sum / n as f64 * 10.0).round() / 10.0 };
    let (mut n, mut cpu, mut memory, mut flash, mut flash_n, mut sent, mut received) =
        (0, 0.0, 0.0, 0.0, 0, 0i64, 0i64);
    for r in reports {
        n += 1;
        cpu += r.cpu.usage_percent;
        memory += r.memory.usage_percent;
        if let Some(f) = &r.flash {
            flash += f.usage_percent;
            flash_n += 1;
        }
        if let Some(net) = &r.network {
            sent = sent.saturating_add(net.bytes_sent);
            received = received.saturating_add(net.bytes_received);
        }
    }
    ClusterSummary {
        total_nodes: n,
        avg_cpu_usage_percent: mean(cpu, n),
        avg_memory_usage_percent: mean(memory, n),
        avg_flash_usage_percent: mean(flash, flash_n),
        total_bytes_sent: sent,
        total_bytes_received: received,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingest::node_json::parse_node_report;
    use serde_json::{Value, json};

    pub(crate) fn sample_node() -> Value {
        json!({
            "timestamp": 1729763445, "node_ip": "192.168.1.100", "hostname": "spore-node-1",
            "cpu": {"frequency_mhz": 160, "usage_percent": 42.5, "temperature_c": 58.3},
            "memory": {"total_bytes": 98304, "free_bytes": 45632, "used_bytes": 52672, "usage_percent": 53.6},
            "network": {"bytes_sent": 3245678, "bytes_received": 5678901, "packets_sent": 32456, "packets_received": 56789,
                        "rssi_dbm": -65, "signal_quality_percent": 75.5},
            "flash": {"total_bytes": 4194304, "used_bytes": 2097152, "free_bytes": 2097152, "usage_percent": 50.0},
            "labels": {"version": "1.0.0", "stable": "true", "env": "production", "zone": "zone-1", "type": "spore-node"}
        })
    }

    #[test]
    fn the_sample_node_is_valid_and_becomes_labelled_points() {
        let report = parse_node_report(sample_node().to_string().as_bytes(), 0).unwrap();
        assert_eq!(report.labels["zone"], "zone-1");
        let points = report.points(&DeviceId::parse("spore-node-1").unwrap(), 5);
        let names: Vec<&str> = points.iter().map(Point::name).collect();
        assert_eq!(names, NODE_POINT_NAMES);
        assert!(points[0].tags().contains(&("node_id".to_owned(), "spore-node-1".to_owned())));
        assert!(points[0].tags().contains(&("version".to_owned(), "1.0.0".to_owned())));
    }

    #[test]
    fn the_summary_matches_its_nodes() {
        let a = parse_node_report(sample_node().to_string().as_bytes(), 0).unwrap();
        let mut second = sample_node();
        second["cpu"]["usage_percent"] = json!(20.0);
        second.as_object_mut().unwrap().remove("flash");
        let b = parse_node_report(second.to_string().as_bytes(), 0).unwrap();
        let summary = summarize([&a, &b]);
        assert_eq!(summary.total_nodes, 2);
        assert_eq!(summary.avg_cpu_usage_percent, 31.3);
        assert_eq!(summary.avg_flash_usage_percent, 50.0, "over nodes that report flash");
        assert_eq!(summary.total_bytes_sent, 2 * 3_245_678);
        assert_eq!(summarize([]).avg_cpu_usage_percent, 0.0);
    }

    #[test]
    fn events_follow_joins_labels_and_thresholds() {
        let t = Thresholds::default();
        let report = |cpu: f64, version: &str| {
            let mut doc = sample_node();
            doc["cpu"]["usage_percent"] = json!(cpu);
            doc["labels"]["version"] = json!(version);
            parse_node_report(doc.to_string().as_bytes(), 0).unwrap()
        };
        let kinds = |events: Vec<NodeEvent>| -> Vec<String> {
            events.iter().map(|e| serde_json::to_value(e).unwrap()["type"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(kinds(report_events("n", None, &report(40.0, "1.0.0"), &t)), ["node_joined"]);
        assert_eq!(
            kinds(report_events("n", Some(&report(40.0, "1.0.0")), &report(85.0, "1.1.0"), &t)),
            ["labels_changed", "threshold_crossed"]
        );
        assert!(
            report_events("n", Some(&report(85.0, "1.0.0")), &report(90.0, "1.0.0"), &t).is_empty(),
            "no repeat while breached"
        );
        let cleared = report_events("n", Some(&report(85.0, "1.0.0")), &report(50.0, "1.0.0"), &t);
        assert_eq!(
            serde_json::to_value(&cleared[0]).unwrap(),
            json!({"type": "threshold_cleared", "node_id": "n", "metric": "cpu_percent", "value": 50.0, "threshold": 80.0})
        );
    }
}
