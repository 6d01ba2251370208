//! Export pages: keyset reads ordered by (time, id) over each table's time index, each
//! starting its index range at the cursor (`ExportQuery::resume_from`), so every page costs
//! the same however deep into the export it is. Health checks and rollup buckets
//! are joined to their device and series in SQL; tag filters on points and rollups run here,
//! as `points_since`'s do, because JSON operators differ per backend.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::DeviceId;
use homepot_core::analytics::{ErrorLog, JobOutcome, JobStatus, RequestLog, Severity, UserActivity};
use homepot_storage::export::{ExportCursor, ExportKind, ExportPage, ExportQuery, ExportRecord, nanos};
use homepot_storage::{ExportStore, SeriesKey, StorageError};
use sea_orm::sea_query::{Alias, Expr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::SeaOrmStore;
use crate::analytics::{to_map, to_state_change};
use crate::entity::{api_request_log, device_state_change, error_log, job_outcome, metric_point, user_activity};
use crate::error::db_error;
use crate::health::health_from;
use crate::metrics::to_point;
use crate::rollups::{aggregate_from, tier_seconds};
use crate::sql::numbered;

fn corrupt(what: &str) -> StorageError {
    StorageError::backend(format!("exported row is corrupt: {what}"))
}

fn limit_of(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX)
}

/// The page of `scanned` rows (with their cursors) when `limit` were asked for: a full page
/// may have more after it.
fn page(scanned: Vec<(ExportCursor, Option<ExportRecord>)>, limit: usize) -> ExportPage {
    let next = if scanned.len() >= limit { scanned.last().map(|(cursor, _)| *cursor) } else { None };
    ExportPage { rows: scanned.into_iter().filter_map(|(_, record)| record).collect(), next }
}

fn cursor(at: DateTime<Utc>, id: i64) -> ExportCursor {
    ExportCursor { at_ns: nanos(at), id }
}

impl SeaOrmStore {
    /// One page of an analytics table through its entity; a device filters on its
    /// `device_id` column where the table has one.
    async fn entity_page<E>(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
        key: impl Fn(&E::Model) -> (DateTime<Utc>, i64),
        record: impl Fn(E::Model) -> Result<ExportRecord, StorageError>,
    ) -> Result<ExportPage, StorageError>
    where
        E: EntityTrait,
    {
        let time = || Expr::col(Alias::new("timestamp"));
        let id = || Expr::col(Alias::new("id"));
        let mut select = E::find().filter(time().gte(query.resume_from(after))).filter(time().lt(query.to));
        if let Some(device) = query.device.as_ref().filter(|_| query.kind.has_device()) {
            select = select.filter(Expr::col(Alias::new("device_id")).eq(device.as_str()));
        }
        if let Some(after) = after {
            let at = DateTime::from_timestamp_nanos(after.at_ns);
            select = select.filter(Condition::any().add(time().gt(at)).add(id().gt(after.id)));
        }
        let rows = select.order_by_asc(time()).order_by_asc(id()).limit(limit_of(limit)).all(&self.db).await;
        let scanned = rows
            .map_err(db_error)?
            .into_iter()
            .map(|model| {
                let (at, id) = key(&model);
                Ok((cursor(at, id), Some(record(model)?)))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(page(scanned, limit))
    }

    async fn health_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        let backend = self.db.get_database_backend();
        let response_data =
            if backend == DbBackend::Postgres { "h.response_data::text AS response_data" } else { "h.response_data" };
        let mut sql = format!(
            "SELECT h.id, d.device_id AS device, h.is_healthy, h.response_time_ms, h.status_code, h.endpoint, \
             {response_data}, h.error_message, h.checked_at FROM health_checks h JOIN devices d ON d.id = h.device_id \
             WHERE h.checked_at >= ? AND h.checked_at < ?"
        );
        let mut values: Vec<sea_orm::Value> = vec![query.resume_from(after).into(), query.to.into()];
        if let Some(device) = &query.device {
            sql.push_str(" AND d.device_id = ?");
            values.push(device.as_str().into());
        }
        if let Some(after) = after {
            let at = DateTime::from_timestamp_nanos(after.at_ns);
            sql.push_str(" AND (h.checked_at > ? OR h.id > ?)");
            values.extend([at.into(), after.id.into()]);
        }
        sql.push_str(" ORDER BY h.checked_at, h.id LIMIT ?");
        values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let statement = Statement::from_sql_and_values(backend, numbered(backend, &sql), values);
        let rows = self.db.query_all(statement).await.map_err(db_error)?;
        let scanned = rows
            .iter()
            .map(|row| {
                let device: String = row.try_get("", "device")?;
                let device = DeviceId::parse(&device).map_err(|_| DbErr::Custom(format!("device id {device:?}")))?;
                let check = health_from(row, device)?;
                Ok((cursor(check.checked_at, check.id.0), Some(ExportRecord::Health(check))))
            })
            .collect::<Result<Vec<_>, DbErr>>()
            .map_err(db_error)?;
        Ok(page(scanned, limit))
    }

    async fn metrics_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        use metric_point::Column::{Id, Name, TimeNs};
        let (from_ns, to_ns) = (nanos(query.resume_from(after)), nanos(query.to));
        let mut select = metric_point::Entity::find().filter(TimeNs.gte(from_ns)).filter(TimeNs.lt(to_ns));
        if let Some(name) = &query.name {
            select = select.filter(Name.eq(name.as_str()));
        }
        if let Some(after) = after {
            select = select.filter(Condition::any().add(TimeNs.gt(after.at_ns)).add(Id.gt(after.id)));
        }
        let rows = select.order_by_asc(TimeNs).order_by_asc(Id).limit(limit_of(limit)).all(&self.db).await;
        let scanned = rows
            .map_err(db_error)?
            .into_iter()
            .map(|model| {
                let at = ExportCursor { at_ns: model.time_ns, id: model.id };
                let point = to_point(model)?;
                let wanted = query.device_tag_matches(point.tags());
                Ok((at, wanted.then_some(ExportRecord::Metric(point))))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(page(scanned, limit))
    }

    async fn rollups_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        let backend = self.db.get_database_backend();
        let mut sql = "SELECT b.series_id, b.bucket_start, b.sample_count, b.value_sum, b.value_min, b.value_max, \
             b.value_last, b.last_ns, s.name, s.tags, s.field FROM rollup_buckets b \
             JOIN rollup_series s ON s.id = b.series_id \
             WHERE b.tier = ? AND b.bucket_start >= ? AND b.bucket_start < ?"
            .to_owned();
        // A bucket is exported when its start is in [from, to): both in whole seconds, rounded up.
        let seconds = |at: DateTime<Utc>| at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
        let (from_s, to_s) = (seconds(query.resume_from(after)), seconds(query.to));
        let mut values: Vec<sea_orm::Value> = vec![tier_seconds(query.tier).into(), from_s.into(), to_s.into()];
        if let Some(name) = &query.name {
            sql.push_str(" AND s.name = ?");
            values.push(name.as_str().into());
        }
        if let Some(after) = after {
            let start = after.at_ns.div_euclid(1_000_000_000);
            sql.push_str(" AND (b.bucket_start > ? OR b.series_id > ?)");
            values.extend([start.into(), after.id.into()]);
        }
        sql.push_str(" ORDER BY b.bucket_start, b.series_id LIMIT ?");
        values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let statement = Statement::from_sql_and_values(backend, numbered(backend, &sql), values);
        let rows = self.db.query_all(statement).await.map_err(db_error)?;
        let mut scanned = Vec::with_capacity(rows.len());
        for row in &rows {
            let series_id: i64 = row.try_get("", "series_id").map_err(db_error)?;
            let start: i64 = row.try_get("", "bucket_start").map_err(db_error)?;
            let tags: String = row.try_get("", "tags").map_err(db_error)?;
            let tags: Vec<(String, String)> = serde_json::from_str::<BTreeMap<String, String>>(&tags)
                .map_err(|_| corrupt("rollup series tags"))?
                .into_iter()
                .collect();
            let at = ExportCursor { at_ns: start.saturating_mul(1_000_000_000), id: series_id };
            let record = query.device_tag_matches(&tags).then(|| -> Result<ExportRecord, StorageError> {
                Ok(ExportRecord::Rollup {
                    series: SeriesKey {
                        name: row.try_get("", "name").map_err(db_error)?,
                        tags,
                        field: row.try_get("", "field").map_err(db_error)?,
                    },
                    tier: query.tier,
                    start,
                    aggregate: aggregate_from(row)?,
                })
            });
            scanned.push((at, record.transpose()?));
        }
        Ok(page(scanned, limit))
    }
}

/// A page of an analytics table: every one has `id` and `timestamp` columns.
macro_rules! analytics_page {
    ($store:expr, $entity:ident, $query:expr, $after:expr, $limit:expr, $record:expr) => {
        $store.entity_page::<$entity::Entity>($query, $after, $limit, |m| (m.timestamp, m.id), $record).await
    };
}

#[async_trait]
impl ExportStore for SeaOrmStore {
    async fn export_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        if limit == 0 || query.from >= query.to {
            return Ok(ExportPage::default());
        }
        match query.kind {
            ExportKind::Health => self.health_page(query, after, limit).await,
            ExportKind::Metrics => self.metrics_page(query, after, limit).await,
            ExportKind::Rollups => self.rollups_page(query, after, limit).await,
            ExportKind::RequestLogs => {
                analytics_page!(self, api_request_log, query, after, limit, |m| Ok(ExportRecord::RequestLog(
                    to_request_log(m)
                )))
            }
            ExportKind::StateChanges => {
                analytics_page!(self, device_state_change, query, after, limit, |m| Ok(ExportRecord::StateChange(
                    to_state_change(m)
                )))
            }
            ExportKind::JobOutcomes => {
                analytics_page!(self, job_outcome, query, after, limit, |m| to_job_outcome(m)
                    .map(ExportRecord::JobOutcome))
            }
            ExportKind::ErrorLogs => {
                analytics_page!(self, error_log, query, after, limit, |m| to_error_log(m).map(ExportRecord::ErrorLog))
            }
            ExportKind::UserActivity => {
                analytics_page!(self, user_activity, query, after, limit, |m| Ok(ExportRecord::UserActivity(
                    to_user_activity(m)
                )))
            }
        }
    }
}

fn to_request_log(m: api_request_log::Model) -> RequestLog {
    RequestLog {
        timestamp: m.timestamp,
        endpoint: m.endpoint,
        method: m.method,
        status_code: u16::try_from(m.status_code).unwrap_or(0),
        response_time_ms: m.response_time_ms,
        user_id: m.user_id,
        ip_address: m.ip_address,
        user_agent: m.user_agent,
        error_message: m.error_message,
        request_size_bytes: m.request_size_bytes,
        response_size_bytes: m.response_size_bytes,
    }
}

fn to_job_outcome(m: job_outcome::Model) -> Result<JobOutcome, StorageError> {
    Ok(JobOutcome {
        timestamp: m.timestamp,
        job_id: m.job_id,
        job_type: m.job_type,
        device_id: m.device_id,
        status: JobStatus::parse(&m.status).ok_or_else(|| corrupt("job status"))?,
        duration_ms: m.duration_ms,
        error_code: m.error_code,
        error_message: m.error_message,
        retry_count: m.retry_count,
        initiated_by: m.initiated_by,
        metadata: to_map(m.extra_data),
    })
}

fn to_error_log(m: error_log::Model) -> Result<ErrorLog, StorageError> {
    Ok(ErrorLog {
        timestamp: m.timestamp,
        category: m.category,
        severity: Severity::parse(&m.severity).ok_or_else(|| corrupt("severity"))?,
        error_code: m.error_code,
        error_message: m.error_message,
        stack_trace: m.stack_trace,
        endpoint: m.endpoint,
        user_id: m.user_id,
        device_id: m.device_id,
        context: to_map(m.context),
        resolved: m.resolved,
    })
}

fn to_user_activity(m: user_activity::Model) -> UserActivity {
    UserActivity {
        timestamp: m.timestamp,
        user_id: m.user_id,
        session_id: m.session_id,
        activity_type: m.activity_type,
        page_url: m.page_url,
        element_id: m.element_id,
        search_query: m.search_query,
        duration_ms: m.duration_ms,
        metadata: to_map(m.extra_data),
    }
}
