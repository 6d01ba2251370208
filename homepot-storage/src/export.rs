//! What an export reads: every row of one table in a time range, in pages ordered by time
//! and then row id, each resuming after the last row the previous one scanned. Readers hold
//! one page at a time however long the export, and rows written meanwhile behind the cursor
//! are not read twice.

use chrono::{DateTime, Utc};
use homepot_core::Point;
use homepot_core::analytics::{ErrorLog, JobOutcome, RequestLog, StateChange, UserActivity};
use homepot_core::rollup::{Aggregate, Tier};

use crate::{SeriesKey, StoredHealthCheck};

/// A table to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// Raw health checks.
    Health,
    /// Raw metric points (every ingest format's).
    Metrics,
    /// Rollup buckets of one tier.
    Rollups,
    /// The API request log.
    RequestLogs,
    /// Device state changes.
    StateChanges,
    /// Job outcomes.
    JobOutcomes,
    /// Error logs.
    ErrorLogs,
    /// User activity.
    UserActivity,
}

impl ExportKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 8] = [
        Self::Health,
        Self::Metrics,
        Self::Rollups,
        Self::RequestLogs,
        Self::StateChanges,
        Self::JobOutcomes,
        Self::ErrorLogs,
        Self::UserActivity,
    ];

    /// Its name in `kind=`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::Rollups => "rollups",
            Self::RequestLogs => "request_logs",
            Self::StateChanges => "state_changes",
            Self::JobOutcomes => "job_outcomes",
            Self::ErrorLogs => "error_logs",
            Self::UserActivity => "user_activity",
        }
    }

    /// The kind named `raw`.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == raw)
    }

    /// Whether its rows belong to a device, so `device_id` can narrow it. Metric points and
    /// rollups belong to the device their `device_id` tag names.
    #[must_use]
    pub fn has_device(self) -> bool {
        !matches!(self, Self::RequestLogs | Self::UserActivity)
    }

    /// Whether its rows have a metric name, so `name` can narrow it.
    #[must_use]
    pub fn has_name(self) -> bool {
        matches!(self, Self::Metrics | Self::Rollups)
    }
}

/// Which rows an export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// The table.
    pub kind: ExportKind,
    /// Rows at or after this instant (a rollup bucket's start).
    pub from: DateTime<Utc>,
    /// Rows before this instant.
    pub to: DateTime<Utc>,
    /// Only this device's rows, where [`ExportKind::has_device`].
    pub device: Option<String>,
    /// Only this metric's rows, where [`ExportKind::has_name`].
    pub name: Option<String>,
    /// The rollup tier read by [`ExportKind::Rollups`].
    pub tier: Tier,
}

impl ExportQuery {
    /// `[from, to)` in nanoseconds since the epoch, saturated at the ends of `i64`.
    #[must_use]
    pub fn range_ns(&self) -> (i64, i64) {
        (nanos(self.from), nanos(self.to))
    }

    /// Where a page after `after` starts: the later of `from` and the cursor's time. Readers
    /// bound their index range with it (rows at that instant with an id at or below the
    /// cursor's are still to be skipped); a cursor only in an OR would have every page scan
    /// from `from` again.
    #[must_use]
    pub fn resume_from(&self, after: Option<ExportCursor>) -> DateTime<Utc> {
        after.map_or(self.from, |a| DateTime::from_timestamp_nanos(a.at_ns).max(self.from))
    }

    /// Whether tags (of a point or rollup series) belong to the device asked for, if any.
    #[must_use]
    pub fn device_tag_matches(&self, tags: &[(String, String)]) -> bool {
        self.device.as_deref().is_none_or(|device| tags.iter().any(|(k, v)| k == "device_id" && v == device))
    }
}

/// `at` in nanoseconds since the epoch, saturated at the ends of `i64`.
#[must_use]
pub fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// Where a page ends: the time (nanoseconds since the epoch) and id of the last row scanned.
/// A rollup bucket's id is its series id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExportCursor {
    /// Its time in nanoseconds since the epoch.
    pub at_ns: i64,
    /// Its row id.
    pub id: i64,
}

/// One exported row.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRecord {
    /// A health check.
    Health(StoredHealthCheck),
    /// A metric point.
    Metric(Point),
    /// A rollup bucket.
    Rollup {
        /// Its series.
        series: SeriesKey,
        /// Its tier.
        tier: Tier,
        /// Its start in Unix seconds.
        start: i64,
        /// Its figures.
        aggregate: Aggregate,
    },
    /// A request log entry.
    RequestLog(RequestLog),
    /// A state change.
    StateChange(StateChange),
    /// A job outcome.
    JobOutcome(JobOutcome),
    /// An error log entry.
    ErrorLog(ErrorLog),
    /// A user activity record.
    UserActivity(UserActivity),
}

/// One page of an export.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportPage {
    /// The matching rows, oldest first.
    pub rows: Vec<ExportRecord>,
    /// Where the next page starts; `None` when the range is exhausted. A backend that
    /// filters after reading may return fewer rows than asked, even none, with a cursor.
    pub next: Option<ExportCursor>,
}
