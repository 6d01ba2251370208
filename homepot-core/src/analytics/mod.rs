//! Analytics: the five records — request logs, device state changes, job outcomes,
//! error logs and user activity — the aggregations behind the query endpoints, and the
//! device state machine. The collection endpoints' JSON adapters are in
//! [`crate::ingest::analytics_json`].
//!
//! Records carry the time and the caller's identity as given by the server; nothing here
//! reads the clock.

mod state;
mod summary;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use state::{DeviceState, Transition, on_health, on_silence};
pub use summary::{
    EndpointLatency, EndpointPerformance, ErrorTrend, JobStatusCount, JobSuccessRate, LATENCY_BUCKETS_PER_DOUBLING,
    LatencyHistogram, bucket_upper_ms, hour_of, hourly_rollups, latency_bucket, summarize_jobs, summarize_performance,
};

/// Longest endpoint (route template) kept in a request log.
pub const MAX_ENDPOINT_LEN: usize = 255;
/// Longest error message kept in a request log; longer ones are cut.
pub const MAX_LOGGED_ERROR_LEN: usize = 1_000;

/// One API request, as the request-logging middleware saw it (the analytics design's `APIRequestLog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLog {
    /// When the request arrived.
    pub timestamp: DateTime<Utc>,
    /// The matched route template (`/api/v1/devices/{device_id}`), never the raw path, so
    /// logs group by operation and unbounded paths cannot grow the table's cardinality.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Response status.
    pub status_code: u16,
    /// Time to the response head, in ms.
    pub response_time_ms: f64,
    /// Fingerprint of the presented API key (`key:` + 16 hex digits of its hash), if any.
    pub user_id: Option<String>,
    /// Client address.
    pub ip_address: Option<String>,
    /// The `User-Agent` header, cut to 500 characters.
    pub user_agent: Option<String>,
    /// The error detail of a 4xx/5xx answer, cut to [`MAX_LOGGED_ERROR_LEN`].
    pub error_message: Option<String>,
    /// Request body size, when declared.
    pub request_size_bytes: Option<i64>,
    /// Response body size, when known.
    pub response_size_bytes: Option<i64>,
}

impl RequestLog {
    /// The latency bucket stored beside the log so percentiles aggregate in the database.
    pub fn latency_bucket(&self) -> i32 {
        latency_bucket(self.response_time_ms)
    }
}

/// A device state change (the analytics design's `DeviceStateHistory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// When it changed.
    pub timestamp: DateTime<Utc>,
    /// The device.
    pub device_id: String,
    /// The state before, when known.
    pub previous_state: Option<String>,
    /// The state after: `online`, `unhealthy`, `offline`, or a client's own state.
    pub new_state: String,
    /// Who or what changed it, as reported: `system` for changes homepot detects, or what a
    /// client posted (the reporting key's fingerprint when it posted none).
    pub changed_by: String,
    /// Who recorded it: `system`, or the fingerprint of the key that posted it. `None` for
    /// records kept before this was tracked.
    pub recorded_by: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Free-form details, stored intact.
    pub metadata: Map<String, Value>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// It did what it was for.
    Success,
    /// It failed.
    Failed,
    /// It ran out of time.
    Timeout,
    /// It was cancelled.
    Cancelled,
}

impl JobStatus {
    /// Every status, in the order they are documented.
    pub const ALL: [JobStatus; 4] = [JobStatus::Success, JobStatus::Failed, JobStatus::Timeout, JobStatus::Cancelled];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Success => "success",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The result of one job run (the analytics design's `JobOutcome`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// When it was reported.
    pub timestamp: DateTime<Utc>,
    /// The job's identifier.
    pub job_id: String,
    /// What kind of job, e.g. `device_restart`.
    pub job_type: String,
    /// The device it ran on.
    pub device_id: Option<String>,
    /// How it ended.
    pub status: JobStatus,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// Machine-readable error.
    pub error_code: Option<String>,
    /// Human-readable error.
    pub error_message: Option<String>,
    /// Retries before this outcome.
    pub retry_count: i64,
    /// Who started it.
    pub initiated_by: Option<String>,
    /// Free-form details, stored intact.
    pub metadata: Map<String, Value>,
}

/// How bad an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Service is down or data is at risk.
    Critical,
    /// An operation failed.
    Error,
    /// Something is off but worked.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 4] = [Severity::Critical, Severity::Error, Severity::Warning, Severity::Info];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// Parses a wire name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A categorised error (the analytics design's `ErrorLog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorLog {
    /// When it was reported.
    pub timestamp: DateTime<Utc>,
    /// Where it arose: `api`, `database`, `external_service`, `validation`, `frontend`...
    pub category: String,
    /// How bad it is.
    pub severity: Severity,
    /// Machine-readable code.
    pub error_code: Option<String>,
    /// What happened.
    pub error_message: String,
    /// Stack trace.
    pub stack_trace: Option<String>,
    /// The endpoint involved.
    pub endpoint: Option<String>,
    /// The user involved.
    pub user_id: Option<String>,
    /// The device involved.
    pub device_id: Option<String>,
    /// Free-form context, stored intact.
    pub context: Map<String, Value>,
    /// Whether it has been dealt with.
    pub resolved: bool,
}

/// One user action in a frontend (the analytics design's `UserActivity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserActivity {
    /// When it was reported.
    pub timestamp: DateTime<Utc>,
    /// Who: the fingerprint of the key the frontend used.
    pub user_id: String,
    /// The frontend session.
    pub session_id: Option<String>,
    /// `page_view`, `click`, `search`, `interaction`...
    pub activity_type: String,
    /// The page.
    pub page_url: Option<String>,
    /// The element acted on.
    pub element_id: Option<String>,
    /// What was searched for.
    pub search_query: Option<String>,
    /// Time spent, in ms.
    pub duration_ms: Option<i64>,
    /// Free-form details, stored intact.
    pub metadata: Map<String, Value>,
}
