//! The fleet query: every device with its latest health figures and state, filtered, sorted
//! on any of them and paged by a keyset cursor. The order is defined here, once: backends
//! that sort in SQL must give the same order (the conformance kit checks it).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use homepot_core::{Device, DeviceId};
use serde::{Deserialize, Serialize};

/// What a fleet page is sorted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FleetSortKey {
    /// The device id (the default).
    DeviceId,
    /// The device's name.
    Name,
    /// When it was registered.
    CreatedAt,
    /// When its latest stored check was accepted.
    CheckedAt,
    /// Whether its latest check was healthy.
    IsHealthy,
    /// The latest check's response time.
    ResponseTimeMs,
    /// The latest check's CPU use.
    CpuPercent,
    /// The latest check's memory use.
    MemoryPercent,
    /// The latest check's disk use.
    DiskPercent,
}

impl FleetSortKey {
    /// Every key, as documented.
    pub const ALL: [FleetSortKey; 9] = [
        FleetSortKey::DeviceId,
        FleetSortKey::Name,
        FleetSortKey::CreatedAt,
        FleetSortKey::CheckedAt,
        FleetSortKey::IsHealthy,
        FleetSortKey::ResponseTimeMs,
        FleetSortKey::CpuPercent,
        FleetSortKey::MemoryPercent,
        FleetSortKey::DiskPercent,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetSortKey::DeviceId => "device_id",
            FleetSortKey::Name => "name",
            FleetSortKey::CreatedAt => "created_at",
            FleetSortKey::CheckedAt => "checked_at",
            FleetSortKey::IsHealthy => "is_healthy",
            FleetSortKey::ResponseTimeMs => "response_time_ms",
            FleetSortKey::CpuPercent => "cpu_percent",
            FleetSortKey::MemoryPercent => "memory_percent",
            FleetSortKey::DiskPercent => "disk_percent",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Whether `value` can be this key's value: a cursor from a client must not smuggle in
    /// another type.
    pub fn accepts(self, value: &SortValue) -> bool {
        matches!(
            (self, value),
            (FleetSortKey::DeviceId, SortValue::Text(_))
                | (FleetSortKey::Name, SortValue::Text(_) | SortValue::Null)
                | (FleetSortKey::CreatedAt, SortValue::Time(_))
                | (FleetSortKey::CheckedAt, SortValue::Time(_) | SortValue::Null)
                | (FleetSortKey::IsHealthy, SortValue::Bool(_) | SortValue::Null)
                | (FleetSortKey::ResponseTimeMs, SortValue::Int(_) | SortValue::Null)
                | (
                    FleetSortKey::CpuPercent | FleetSortKey::MemoryPercent | FleetSortKey::DiskPercent,
                    SortValue::Float(_) | SortValue::Null
                )
        )
    }
}

/// A value sorted on. Absent values (`Null`) sort last in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortValue {
    /// No value: no check yet, or a figure it did not report.
    Null,
    /// A boolean (false before true).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text, compared byte by byte.
    Text(String),
    /// An instant.
    Time(DateTime<Utc>),
}

impl SortValue {
    /// Compares two present values of the same key; `None` when either is `Null`.
    fn compare(&self, other: &SortValue) -> Option<Ordering> {
        match (self, other) {
            (SortValue::Bool(a), SortValue::Bool(b)) => Some(a.cmp(b)),
            (SortValue::Int(a), SortValue::Int(b)) => Some(a.cmp(b)),
            (SortValue::Float(a), SortValue::Float(b)) => Some(a.total_cmp(b)),
            (SortValue::Text(a), SortValue::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (SortValue::Time(a), SortValue::Time(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// Where the next page starts: after the device with this id and sort value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetCursor {
    /// The last device's sort value.
    pub value: SortValue,
    /// The last device's id.
    pub device_id: DeviceId,
}

/// A fleet query.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetQuery {
    /// Case-insensitive (ASCII) text that the device id or the name contains.
    pub text: Option<String>,
    /// The current state (`online`, `unhealthy`, `offline` or a posted one).
    pub state: Option<String>,
    /// Whether the latest check was healthy; devices without a check never match.
    pub healthy: Option<bool>,
    /// Labels every device must carry.
    pub labels: Vec<(String, String)>,
    /// What to sort on; ties are broken by device id, ascending.
    pub sort: FleetSortKey,
    /// Largest first (absent values still last).
    pub descending: bool,
    /// Most devices per page.
    pub limit: usize,
    /// Continue after this device.
    pub after: Option<FleetCursor>,
}

impl Default for FleetQuery {
    fn default() -> Self {
        Self {
            text: None,
            state: None,
            healthy: None,
            labels: Vec::new(),
            sort: FleetSortKey::DeviceId,
            descending: false,
            limit: 100,
            after: None,
        }
    }
}

/// A device's latest stored health check, in brief.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestHealth {
    /// When it was accepted.
    pub checked_at: DateTime<Utc>,
    /// Overall health.
    pub is_healthy: bool,
    /// Response time in ms.
    pub response_time_ms: i64,
    /// CPU use, when reported.
    pub cpu_percent: Option<f64>,
    /// Memory use, when reported.
    pub memory_percent: Option<f64>,
    /// Disk use, when reported.
    pub disk_percent: Option<f64>,
}

/// One device of a fleet page.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDevice {
    /// The device.
    pub device: Device,
    /// Its latest stored health check.
    pub latest: Option<LatestHealth>,
    /// Its current state and since when.
    pub state: Option<(String, DateTime<Utc>)>,
}

impl FleetDevice {
    /// The value `key` sorts this device on.
    pub fn sort_value(&self, key: FleetSortKey) -> SortValue {
        let latest = self.latest.as_ref();
        let float = |f: fn(&LatestHealth) -> Option<f64>| latest.and_then(f).map_or(SortValue::Null, SortValue::Float);
        match key {
            FleetSortKey::DeviceId => SortValue::Text(self.device.id.to_string()),
            FleetSortKey::Name => self.device.name.clone().map_or(SortValue::Null, SortValue::Text),
            FleetSortKey::CreatedAt => SortValue::Time(self.device.created_at),
            FleetSortKey::CheckedAt => latest.map_or(SortValue::Null, |l| SortValue::Time(l.checked_at)),
            FleetSortKey::IsHealthy => latest.map_or(SortValue::Null, |l| SortValue::Bool(l.is_healthy)),
            FleetSortKey::ResponseTimeMs => latest.map_or(SortValue::Null, |l| SortValue::Int(l.response_time_ms)),
            FleetSortKey::CpuPercent => float(|l| l.cpu_percent),
            FleetSortKey::MemoryPercent => float(|l| l.memory_percent),
            FleetSortKey::DiskPercent => float(|l| l.disk_percent),
        }
    }

    /// Whether the device passes the query's filters (not its cursor).
    pub fn matches(&self, query: &FleetQuery) -> bool {
        let text = query.text.as_ref().is_none_or(|text| {
            let text = text.to_ascii_lowercase();
            self.device.id.as_str().to_ascii_lowercase().contains(&text)
                || self.device.name.as_ref().is_some_and(|n| n.to_ascii_lowercase().contains(&text))
        });
        let state = query.state.as_ref().is_none_or(|s| self.state.as_ref().is_some_and(|(current, _)| current == s));
        let healthy = query.healthy.is_none_or(|h| self.latest.as_ref().is_some_and(|l| l.is_healthy == h));
        let labels = query.labels.iter().all(|(k, v)| self.device.labels.as_map().get(k) == Some(v));
        text && state && healthy && labels
    }
}

/// The order of a fleet page: by `(value, device id)`, values ascending or descending,
/// absent values last either way, ids always ascending.
pub fn fleet_order(a: (&SortValue, &str), b: (&SortValue, &str), descending: bool) -> Ordering {
    let by_value = match (a.0, b.0) {
        (SortValue::Null, SortValue::Null) => Ordering::Equal,
        (SortValue::Null, _) => Ordering::Greater,
        (_, SortValue::Null) => Ordering::Less,
        (x, y) => {
            let ordering = x.compare(y).unwrap_or(Ordering::Equal);
            if descending { ordering.reverse() } else { ordering }
        }
    };
    by_value.then_with(|| a.1.cmp(b.1))
}

/// A page of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPage {
    /// The devices, in the query's order.
    pub devices: Vec<FleetDevice>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<FleetCursor>,
}

impl FleetPage {
    /// A page from `devices` (sorted, filtered, past the cursor), of at most `limit`.
    pub fn from_sorted(mut devices: Vec<FleetDevice>, query: &FleetQuery) -> Self {
        let more = devices.len() > query.limit;
        devices.truncate(query.limit);
        let next = more
            .then(|| devices.last())
            .flatten()
            .map(|last| FleetCursor { value: last.sort_value(query.sort), device_id: last.device.id.clone() });
        Self { devices, next }
    }
}
