//! The analytics endpoints: four collection endpoints and four queries.
//!
//! Who may call what:
//! - user activity and errors: any valid key; a device key's errors are about its own device;
//! - device state changes and job outcomes: admin keys, or a device key for its own device;
//! - the queries: admin keys only.
//!
//! The caller is recorded as the fingerprint of its key (`key:` + 16 hex digits).

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::ErrorKind;
use homepot_core::analytics::{
    EndpointPerformance, ErrorTrend, JobStatusCount, JobSuccessRate, StateChange, summarize_jobs,
};
use homepot_core::ingest::analytics_json;
use homepot_core::rollup::Tier;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::documented::{ErrorLogRequest, JobOutcomeRequest, StateChangeRequest, UserActivityRequest};
use super::{ApiTags, AppState, rfc3339};
use homepot_engine::Principal;

use crate::auth::ApiKeyAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Analytics collection and queries.
#[derive(Debug, Default)]
pub(crate) struct AnalyticsApi;

/// Most state changes returned by one history query.
const HISTORY_LIMIT: usize = 1_000;

/// `{"success": true, "message": ..., "id": ...}`: the record is stored.
#[derive(Debug, Object)]
struct Logged {
    /// Always true.
    success: bool,
    /// What was logged.
    message: String,
    /// The stored record's id.
    id: i64,
}

#[derive(Debug, ApiResponse)]
enum LoggedResponse {
    /// Stored.
    #[oai(status = 201)]
    Created(Json<Logged>),
}

fn logged(message: &str, id: homepot_storage::RecordId) -> LoggedResponse {
    LoggedResponse::Created(Json(Logged { success: true, message: message.to_owned(), id: id.0 }))
}

/// One endpoint's performance.
#[derive(Debug, Object)]
struct EndpointMetrics {
    /// Route template, e.g. `/api/v1/devices/{device_id}`.
    endpoint: String,
    /// HTTP method.
    method: String,
    /// Requests in the window.
    request_count: u64,
    /// Mean response time, ms (2 decimals).
    avg_response_time_ms: f64,
    /// Fastest, ms.
    min_response_time_ms: f64,
    /// Slowest, ms.
    max_response_time_ms: f64,
    /// 95th percentile, ms: an observed latency at most 9 % above the exact percentile.
    p95_response_time_ms: f64,
    /// Answered with 4xx or 5xx.
    error_count: u64,
    /// Answered with 5xx.
    server_error_count: u64,
    /// `error_count / request_count` in percent (2 decimals).
    error_rate_percent: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl From<EndpointPerformance> for EndpointMetrics {
    fn from(p: EndpointPerformance) -> Self {
        Self {
            error_rate_percent: round2(p.error_count as f64 * 100.0 / p.request_count.max(1) as f64),
            endpoint: p.endpoint,
            method: p.method,
            request_count: p.request_count,
            avg_response_time_ms: round2(p.avg_response_time_ms),
            min_response_time_ms: round2(p.min_response_time_ms),
            max_response_time_ms: round2(p.max_response_time_ms),
            p95_response_time_ms: round2(p.p95_response_time_ms),
            error_count: p.error_count,
            server_error_count: p.server_error_count,
        }
    }
}

/// `GET /api/v1/metrics/api-performance`.
#[derive(Debug, Object)]
struct ApiPerformance {
    /// Always true.
    success: bool,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// One entry per endpoint and method, busiest first.
    metrics: Vec<EndpointMetrics>,
}

/// Outcomes of one job type and status.
#[derive(Debug, Object)]
struct JobOutcomeCount {
    /// Job type.
    job_type: String,
    /// Outcome.
    status: String,
    /// How many.
    count: u64,
    /// Mean duration of those that reported one, ms (2 decimals); null when none did.
    #[oai(nullable)]
    avg_duration_ms: Option<f64>,
}

impl From<JobStatusCount> for JobOutcomeCount {
    fn from(c: JobStatusCount) -> Self {
        Self { job_type: c.job_type, status: c.status, count: c.count, avg_duration_ms: c.avg_duration_ms.map(round2) }
    }
}

/// Success rate of one job type.
#[derive(Debug, Object)]
struct JobSuccess {
    /// Job type.
    job_type: String,
    /// Outcomes in the window.
    total: u64,
    /// Of which `success`.
    succeeded: u64,
    /// `succeeded / total` in percent (2 decimals).
    success_rate_percent: f64,
}

impl From<JobSuccessRate> for JobSuccess {
    fn from(r: JobSuccessRate) -> Self {
        Self {
            job_type: r.job_type,
            total: r.total,
            succeeded: r.succeeded,
            success_rate_percent: round2(r.success_rate_percent),
        }
    }
}

/// `GET /api/v1/metrics/job-outcomes`.
#[derive(Debug, Object)]
struct JobOutcomes {
    /// Always true.
    success: bool,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// Counts per job type and status.
    outcomes: Vec<JobOutcomeCount>,
    /// Success rate per job type.
    success_rates: Vec<JobSuccess>,
}

/// Errors of one category and severity.
#[derive(Debug, Object)]
struct ErrorCount {
    /// The bucket's start (RFC 3339, UTC), when counted per `bucket`.
    #[oai(skip_serializing_if_is_none)]
    bucket_start: Option<String>,
    /// Category.
    category: String,
    /// Severity.
    severity: String,
    /// How many.
    count: u64,
}

impl From<ErrorTrend> for ErrorCount {
    fn from(t: ErrorTrend) -> Self {
        Self {
            bucket_start: t.bucket.and_then(|s| chrono::DateTime::from_timestamp(s, 0)).map(rfc3339),
            category: t.category,
            severity: t.severity,
            count: t.count,
        }
    }
}

/// `GET /api/v1/metrics/error-trends`.
#[derive(Debug, Object)]
struct ErrorTrends {
    /// Always true.
    success: bool,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// Counts per category and severity.
    errors: Vec<ErrorCount>,
}

/// One state change.
#[derive(Debug, Object)]
pub(crate) struct StateChangeView {
    /// When (RFC 3339, UTC).
    timestamp: String,
    /// State before (null when unknown).
    #[oai(nullable)]
    previous_state: Option<String>,
    /// State after.
    new_state: String,
    /// Who or what changed it: `system` for changes homepot detected, else as posted.
    changed_by: String,
    /// Who recorded it: `system`, or the fingerprint (`key:…`) of the key that posted it;
    /// null for changes recorded before this was tracked.
    #[oai(nullable)]
    recorded_by: Option<String>,
    /// Why (null when not given).
    #[oai(nullable)]
    reason: Option<String>,
    /// Details, as stored.
    metadata: BTreeMap<String, Value>,
}

impl From<StateChange> for StateChangeView {
    fn from(c: StateChange) -> Self {
        Self {
            timestamp: rfc3339(c.timestamp),
            previous_state: c.previous_state,
            new_state: c.new_state,
            changed_by: c.changed_by,
            recorded_by: c.recorded_by,
            reason: c.reason,
            metadata: c.metadata.into_iter().collect(),
        }
    }
}

/// `GET /api/v1/metrics/device-state-history/{device_id}`.
#[derive(Debug, Object)]
struct StateHistory {
    /// Always true.
    success: bool,
    /// The device.
    device_id: String,
    /// The window, in hours before now.
    time_range_hours: u32,
    /// Newest first, at most 1,000.
    history: Vec<StateChangeView>,
}

/// The device a device key reports about: the named one must be its own; none means itself.
fn own_device(principal: &Principal, named: Option<String>) -> Result<Option<String>, ApiError> {
    match (principal, named) {
        (Principal::Device(own), None) => Ok(Some(own.to_string())),
        (Principal::Device(_), Some(named)) => {
            principal.require_writer_for(&named)?;
            Ok(Some(named))
        }
        (_, named) => Ok(named),
    }
}

#[OpenApi]
impl AnalyticsApi {
    /// Log a frontend user's activity. Any valid key; the user is the key's fingerprint.
    #[oai(path = "/api/v1/analytics/user-activity", method = "post", tag = "ApiTags::Analytics")]
    async fn user_activity(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<UserActivityRequest>,
    ) -> Result<LoggedResponse, ApiError> {
        state.homepot.require_analytics()?;
        state.authenticate(&auth).await?;
        let activity = analytics_json::parse_user_activity(&body.bytes, &auth.fingerprint(), state.homepot.now())
            .map_err(|e| ApiError::invalid("body", e))?;
        let id = state.homepot.record_user_activity(activity).await?;
        Ok(logged("Activity logged", id))
    }

    /// Log an error from a frontend or a backend. Any valid key; a device key may report
    /// only about its own device.
    #[oai(path = "/api/v1/analytics/error", method = "post", tag = "ApiTags::Analytics")]
    async fn error(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<ErrorLogRequest>,
    ) -> Result<LoggedResponse, ApiError> {
        state.homepot.require_analytics()?;
        let principal = state.authenticate(&auth).await?;
        let mut error = analytics_json::parse_error_log(&body.bytes, state.homepot.now())
            .map_err(|e| ApiError::invalid("body", e))?;
        error.device_id = own_device(&principal, error.device_id.take())?;
        let id = state.homepot.record_error_log(error).await?;
        Ok(logged("Error logged", id))
    }

    /// Log a device state change. Admin keys, or a device's own key.
    #[oai(path = "/api/v1/analytics/device-state-change", method = "post", tag = "ApiTags::Analytics")]
    async fn device_state_change(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<StateChangeRequest>,
    ) -> Result<LoggedResponse, ApiError> {
        state.homepot.require_analytics()?;
        let principal = state.authenticate(&auth).await?;
        let change = analytics_json::parse_state_change(&body.bytes, &auth.fingerprint(), state.homepot.now())
            .map_err(|e| ApiError::invalid("body", e))?;
        principal.require_writer_for(&change.device_id)?;
        let id = state.homepot.record_state_change(change).await?;
        Ok(logged("State change logged", id))
    }

    /// Log a job's outcome. Admin keys, or a device key for a job on its own device.
    #[oai(path = "/api/v1/analytics/job-outcome", method = "post", tag = "ApiTags::Analytics")]
    async fn job_outcome(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: JsonBody<JobOutcomeRequest>,
    ) -> Result<LoggedResponse, ApiError> {
        state.homepot.require_analytics()?;
        let principal = state.authenticate(&auth).await?;
        principal.require_some_writer()?;
        let mut outcome = analytics_json::parse_job_outcome(&body.bytes, state.homepot.now())
            .map_err(|e| ApiError::invalid("body", e))?;
        outcome.device_id = own_device(&principal, outcome.device_id.take())?;
        let id = state.homepot.record_job_outcome(outcome).await?;
        Ok(logged("Job outcome logged", id))
    }

    /// Request counts, response times (mean, extremes, p95) and error counts per route
    /// template and method over the last `hours`. Admin keys only.
    #[oai(path = "/api/v1/metrics/api-performance", method = "get", tag = "ApiTags::Analytics")]
    async fn api_performance(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Window in hours before now (1-168, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "168")))]
        hours: Query<Option<u32>>,
        /// Only this route template, e.g. `/api/v1/devices/{device_id}`.
        endpoint: Query<Option<String>>,
    ) -> Result<Json<ApiPerformance>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let hours = hours.0.unwrap_or(24);
        let performance = state.homepot.api_performance(hours, endpoint.0.as_deref()).await?;
        let metrics = performance.into_iter().map(EndpointMetrics::from).collect();
        Ok(Json(ApiPerformance { success: true, time_range_hours: hours, metrics }))
    }

    /// Job outcome counts and mean durations per job type and status, and success rates per
    /// job type, over the last `hours`. Admin keys only.
    #[oai(path = "/api/v1/metrics/job-outcomes", method = "get", tag = "ApiTags::Analytics")]
    async fn job_outcomes(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Window in hours before now (1-168, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "168")))]
        hours: Query<Option<u32>>,
        /// Only this job type.
        job_type: Query<Option<String>>,
    ) -> Result<Json<JobOutcomes>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let hours = hours.0.unwrap_or(24);
        let counts = state.homepot.job_outcomes(hours, job_type.0.as_deref()).await?;
        let success_rates = summarize_jobs(&counts).into_iter().map(JobSuccess::from).collect();
        let outcomes = counts.into_iter().map(JobOutcomeCount::from).collect();
        Ok(Json(JobOutcomes { success: true, time_range_hours: hours, outcomes, success_rates }))
    }

    /// Error counts per category and severity over the last `hours`; with `bucket` (`1m`,
    /// `1h` or `1d`), per bucket too, each with its `bucket_start`. Admin keys only.
    #[oai(path = "/api/v1/metrics/error-trends", method = "get", tag = "ApiTags::Analytics")]
    async fn error_trends(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Window in hours before now (1-168, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "168")))]
        hours: Query<Option<u32>>,
        /// Only this category.
        category: Query<Option<String>>,
        /// Count per bucket of this width: `1m`, `1h` or `1d`.
        bucket: Query<Option<String>>,
    ) -> Result<Json<ErrorTrends>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let hours = hours.0.unwrap_or(24);
        let bucket = bucket
            .0
            .map(|raw| {
                Tier::parse(&raw).ok_or_else(|| {
                    ApiError::invalid_field(
                        "query",
                        "bucket",
                        ErrorKind::BadFormat,
                        "bucket is 1m, 1h or 1d".to_owned(),
                    )
                })
            })
            .transpose()?;
        let trends = state.homepot.error_trends(hours, category.0.as_deref(), bucket).await?;
        Ok(Json(ErrorTrends {
            success: true,
            time_range_hours: hours,
            errors: trends.into_iter().map(ErrorCount::from).collect(),
        }))
    }

    /// A device's state changes over the last `hours`, newest first. Admin keys only.
    #[oai(path = "/api/v1/metrics/device-state-history/:device_id", method = "get", tag = "ApiTags::Analytics")]
    async fn device_state_history(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Device identifier.
        device_id: Path<String>,
        /// Window in hours before now (1-720, default 24).
        #[oai(validator(minimum(value = "1"), maximum(value = "720")))]
        hours: Query<Option<u32>>,
    ) -> Result<Json<StateHistory>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let hours = hours.0.unwrap_or(24);
        let history = state.homepot.state_history(&device_id, hours, HISTORY_LIMIT).await?;
        Ok(Json(StateHistory {
            success: true,
            device_id: device_id.0,
            time_range_hours: hours,
            history: history.into_iter().map(StateChangeView::from).collect(),
        }))
    }
}
