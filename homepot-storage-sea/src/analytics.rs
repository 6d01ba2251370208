//! The sea-orm implementation of [`AnalyticsStore`]: aggregations run as GROUP BY queries,
//! retention as bounded `DELETE ... WHERE id IN (SELECT ... LIMIT n)`.
//!
//! Request logs also feed hourly rollups (one row per hour, endpoint and method, with a
//! latency histogram) in the same transaction. A performance query reads the rollups of the
//! whole hours in its window and the raw logs of the one partial hour at its start, so its
//! cost follows hours × endpoints, not the number of requests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use chrono::TimeDelta;
use homepot_core::analytics::{
    EndpointLatency, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, LatencyHistogram, RequestLog, StateChange,
    UserActivity, hour_of, hourly_rollups,
};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sea_orm::{Condition, ConnectionTrait, DatabaseTransaction, DbBackend, Statement};
use serde_json::{Map, Value};

use crate::SeaOrmStore;
use crate::entity::{api_request_log, api_request_rollup, device_state_change, error_log, job_outcome, user_activity};
use crate::error::db_error;
use crate::sql::{INSERT_CHUNK, row_limit};
use homepot_storage::{AnalyticsStore, RecordId, StorageError};

fn object(map: &Map<String, Value>) -> Value {
    Value::Object(map.clone())
}

pub(crate) fn to_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(crate) fn to_state_change(m: device_state_change::Model) -> StateChange {
    StateChange {
        timestamp: m.timestamp,
        device_id: m.device_id,
        previous_state: m.previous_state,
        new_state: m.new_state,
        changed_by: m.changed_by.unwrap_or_default(),
        recorded_by: m.recorded_by,
        reason: m.reason,
        metadata: to_map(m.extra_data),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Rollup keys written per statement.
const ROLLUP_CHUNK: usize = 200;

/// `bucket,count,slowest_us;` per bucket. The slowest latency is kept to the microsecond,
/// as an integer, which parses several times faster than a float.
fn encode_histogram(histogram: &LatencyHistogram) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for (bucket, n, max_ms) in histogram.entries() {
        let _ = write!(text, "{bucket},{n},{};", (max_ms * 1_000.0).round() as i64);
    }
    text
}

fn decode_histogram(text: &str) -> Option<LatencyHistogram> {
    let mut histogram = LatencyHistogram::default();
    for entry in text.split(';').filter(|e| !e.is_empty()) {
        let mut fields = entry.splitn(3, ',');
        let bucket = fields.next()?.parse().ok()?;
        let n = fields.next()?.parse().ok()?;
        let max_us: i64 = fields.next()?.parse().ok()?;
        histogram.add(bucket, n, max_us as f64 / 1_000.0);
    }
    Some(histogram)
}

/// A rollup's columns, as a performance query reads them.
type RollupRow = (String, String, i64, f64, f64, f64, i64, i64, String);

fn from_rollup(row: RollupRow) -> Result<EndpointLatency, StorageError> {
    let (endpoint, method, n, sum_ms, min_ms, max_ms, errors, server_errors, histogram) = row;
    let histogram = decode_histogram(&histogram).ok_or_else(|| {
        StorageError::backend(format!("request rollup of {method} {endpoint} has a corrupt histogram"))
    })?;
    let mut latency = EndpointLatency::new(&endpoint, &method);
    if n > 0 {
        latency.count = count(n);
        latency.sum_ms = sum_ms;
        latency.min_ms = min_ms;
        latency.max_ms = max_ms;
        latency.errors = count(errors);
        latency.server_errors = count(server_errors);
        latency.histogram = histogram;
    }
    Ok(latency)
}

fn rollup_row(m: api_request_rollup::Model) -> RollupRow {
    (m.endpoint, m.method, m.request_count, m.sum_ms, m.min_ms, m.max_ms, m.errors, m.server_errors, m.histogram)
}

/// Adds a batch's hourly deltas to the rollups. Missing rows are created empty first (a
/// no-op when a concurrent writer made them), then every row is read locked (`FOR UPDATE`
/// on PostgreSQL; SQLite's transaction already holds the write lock), merged and written.
async fn add_to_rollups(
    txn: &DatabaseTransaction,
    deltas: &[(DateTime<Utc>, EndpointLatency)],
) -> Result<(), StorageError> {
    use api_request_rollup::{ActiveModel, Column as C, Entity};
    for chunk in deltas.chunks(ROLLUP_CHUNK) {
        let empty = chunk.iter().map(|(hour, l)| ActiveModel {
            hour: Set(*hour),
            endpoint: Set(l.endpoint.clone()),
            method: Set(l.method.clone()),
            request_count: Set(0),
            sum_ms: Set(0.0),
            min_ms: Set(0.0),
            max_ms: Set(0.0),
            errors: Set(0),
            server_errors: Set(0),
            histogram: Set(String::new()),
            ..Default::default()
        });
        Entity::insert_many(empty)
            .on_conflict(OnConflict::columns([C::Hour, C::Endpoint, C::Method]).do_nothing().to_owned())
            .do_nothing()
            .exec_without_returning(txn)
            .await
            .map_err(db_error)?;
        let keys = chunk.iter().fold(Condition::any(), |any, (hour, l)| {
            any.add(
                Condition::all()
                    .add(C::Hour.eq(*hour))
                    .add(C::Endpoint.eq(l.endpoint.as_str()))
                    .add(C::Method.eq(l.method.as_str())),
            )
        });
        let rows = Entity::find().filter(keys).lock_exclusive().all(txn).await.map_err(db_error)?;
        let mut rows: HashMap<(DateTime<Utc>, String, String), api_request_rollup::Model> =
            rows.into_iter().map(|r| ((r.hour, r.endpoint.clone(), r.method.clone()), r)).collect();
        for (hour, delta) in chunk {
            let row = rows
                .remove(&(*hour, delta.endpoint.clone(), delta.method.clone()))
                .ok_or_else(|| StorageError::backend("request rollup row vanished inside its transaction"))?;
            let id = row.id;
            let mut merged = from_rollup(rollup_row(row))?;
            merged.merge(delta);
            ActiveModel {
                id: Set(id),
                request_count: Set(signed(merged.count)),
                sum_ms: Set(merged.sum_ms),
                min_ms: Set(merged.min_ms),
                max_ms: Set(merged.max_ms),
                errors: Set(signed(merged.errors)),
                server_errors: Set(signed(merged.server_errors)),
                histogram: Set(encode_histogram(&merged.histogram)),
                ..Default::default()
            }
            .update(txn)
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
}

/// Stores one state change and its device's current state on `txn`.
async fn insert_state_change_in(txn: &sea_orm::DatabaseTransaction, c: &StateChange) -> Result<RecordId, StorageError> {
    // The change and the device's current state together, the insert first (a write, so
    // SQLite holds the lock before anything is read).
    let id = insert_history_row(txn, c).await?;
    let backend = txn.get_database_backend();
    let sql = crate::sql::numbered(
        backend,
        "INSERT INTO device_latest (device_id, state, state_since) SELECT id, ?, ? FROM devices \
             WHERE device_id = ? ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, \
             state_since = excluded.state_since \
             WHERE device_latest.state_since IS NULL OR excluded.state_since >= device_latest.state_since",
    );
    let values: Vec<sea_orm::Value> = vec![c.new_state.clone().into(), c.timestamp.into(), c.device_id.clone().into()];
    txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
    Ok(id)
}

/// Stores one state change in the history alone.
pub(crate) async fn insert_history_row(
    txn: &sea_orm::DatabaseTransaction,
    c: &StateChange,
) -> Result<RecordId, StorageError> {
    let row = device_state_change::ActiveModel {
        timestamp: Set(c.timestamp),
        device_id: Set(c.device_id.clone()),
        previous_state: Set(c.previous_state.clone()),
        new_state: Set(c.new_state.clone()),
        changed_by: Set(Some(c.changed_by.clone())),
        recorded_by: Set(c.recorded_by.clone()),
        reason: Set(c.reason.clone()),
        extra_data: Set(object(&c.metadata)),
        ..Default::default()
    };
    let id = device_state_change::Entity::insert(row).exec(txn).await.map_err(db_error)?.last_insert_id;
    Ok(RecordId(id))
}

#[async_trait]
impl AnalyticsStore for SeaOrmStore {
    async fn insert_request_logs(&self, batch: &[RequestLog]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        for chunk in batch.chunks(INSERT_CHUNK) {
            let rows = chunk.iter().map(|log| api_request_log::ActiveModel {
                timestamp: Set(log.timestamp),
                endpoint: Set(log.endpoint.clone()),
                method: Set(log.method.clone()),
                status_code: Set(i32::from(log.status_code)),
                response_time_ms: Set(log.response_time_ms),
                latency_bucket: Set(log.latency_bucket()),
                user_id: Set(log.user_id.clone()),
                ip_address: Set(log.ip_address.clone()),
                user_agent: Set(log.user_agent.clone()),
                error_message: Set(log.error_message.clone()),
                request_size_bytes: Set(log.request_size_bytes),
                response_size_bytes: Set(log.response_size_bytes),
                ..Default::default()
            });
            api_request_log::Entity::insert_many(rows).exec_without_returning(&txn).await.map_err(db_error)?;
        }
        add_to_rollups(&txn, &hourly_rollups(batch)).await?;
        txn.commit().await.map_err(db_error)
    }

    async fn insert_state_change(&self, c: &StateChange) -> Result<RecordId, StorageError> {
        Ok(self.insert_state_changes(std::slice::from_ref(c)).await?.pop().expect("one id per change"))
    }

    async fn insert_state_changes(&self, batch: &[StateChange]) -> Result<Vec<RecordId>, StorageError> {
        // One transaction for the batch: a commit (an fsync) per change made a fleet coming
        // online wait on each device's in turn.
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let mut ids = Vec::with_capacity(batch.len());
        for c in batch {
            ids.push(insert_state_change_in(&txn, c).await?);
        }
        txn.commit().await.map_err(db_error)?;
        Ok(ids)
    }

    async fn insert_job_outcome(&self, o: &JobOutcome) -> Result<RecordId, StorageError> {
        let row = job_outcome::ActiveModel {
            timestamp: Set(o.timestamp),
            job_id: Set(o.job_id.clone()),
            job_type: Set(o.job_type.clone()),
            device_id: Set(o.device_id.clone()),
            status: Set(o.status.as_str().to_owned()),
            duration_ms: Set(o.duration_ms),
            error_code: Set(o.error_code.clone()),
            error_message: Set(o.error_message.clone()),
            retry_count: Set(o.retry_count),
            initiated_by: Set(o.initiated_by.clone()),
            extra_data: Set(object(&o.metadata)),
            ..Default::default()
        };
        self.insert_one(row).await.map(RecordId).map_err(db_error)
    }

    async fn insert_error_log(&self, e: &ErrorLog) -> Result<RecordId, StorageError> {
        let row = error_log::ActiveModel {
            timestamp: Set(e.timestamp),
            category: Set(e.category.clone()),
            severity: Set(e.severity.as_str().to_owned()),
            error_code: Set(e.error_code.clone()),
            error_message: Set(e.error_message.clone()),
            stack_trace: Set(e.stack_trace.clone()),
            endpoint: Set(e.endpoint.clone()),
            user_id: Set(e.user_id.clone()),
            device_id: Set(e.device_id.clone()),
            context: Set(object(&e.context)),
            resolved: Set(e.resolved),
            resolved_at: Set(None),
            ..Default::default()
        };
        self.insert_one(row).await.map(RecordId).map_err(db_error)
    }

    async fn insert_user_activity(&self, a: &UserActivity) -> Result<RecordId, StorageError> {
        let row = user_activity::ActiveModel {
            timestamp: Set(a.timestamp),
            user_id: Set(a.user_id.clone()),
            session_id: Set(a.session_id.clone()),
            activity_type: Set(a.activity_type.clone()),
            page_url: Set(a.page_url.clone()),
            element_id: Set(a.element_id.clone()),
            search_query: Set(a.search_query.clone()),
            extra_data: Set(object(&a.metadata)),
            duration_ms: Set(a.duration_ms),
            ..Default::default()
        };
        self.insert_one(row).await.map(RecordId).map_err(db_error)
    }

    async fn request_latencies(
        &self,
        since: DateTime<Utc>,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointLatency>, StorageError> {
        // Whole hours come from the rollups; the partial hour before them from the raw logs.
        let whole_hours = if hour_of(since) == since { since } else { hour_of(since) + TimeDelta::hours(1) };
        let mut parts: HashMap<(String, String), EndpointLatency> = HashMap::new();
        if since < whole_hours {
            use api_request_log::{Column as C, Entity};
            let mut query = Entity::find()
                .select_only()
                .columns([C::Endpoint, C::Method, C::LatencyBucket])
                .column_as(Expr::cust("COUNT(*)"), "count")
                .column_as(Expr::cust("SUM(response_time_ms)"), "sum_ms")
                .column_as(Expr::cust("MIN(response_time_ms)"), "min_ms")
                .column_as(Expr::cust("MAX(response_time_ms)"), "max_ms")
                .column_as(Expr::cust("SUM(CASE WHEN status_code >= 400 THEN 1 ELSE 0 END)"), "errors")
                .column_as(Expr::cust("SUM(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END)"), "server_errors")
                .filter(C::Timestamp.gte(since))
                .filter(C::Timestamp.lt(whole_hours));
            if let Some(endpoint) = endpoint {
                query = query.filter(C::Endpoint.eq(endpoint));
            }
            let rows: Vec<(String, String, i32, i64, f64, f64, f64, i64, i64)> = query
                .group_by(C::Endpoint)
                .group_by(C::Method)
                .group_by(C::LatencyBucket)
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(db_error)?;
            for (endpoint, method, bucket, n, sum_ms, min_ms, max_ms, errors, server_errors) in rows {
                let mut part = EndpointLatency::new(&endpoint, &method);
                part.count = count(n);
                part.sum_ms = sum_ms;
                part.min_ms = min_ms;
                part.max_ms = max_ms;
                part.errors = count(errors);
                part.server_errors = count(server_errors);
                part.histogram.add(bucket, count(n), max_ms);
                parts.entry((endpoint, method)).or_insert_with_key(|(e, m)| EndpointLatency::new(e, m)).merge(&part);
            }
        }
        use api_request_rollup::{Column as C, Entity};
        let mut query = Entity::find()
            .select_only()
            .columns([
                C::Endpoint,
                C::Method,
                C::RequestCount,
                C::SumMs,
                C::MinMs,
                C::MaxMs,
                C::Errors,
                C::ServerErrors,
                C::Histogram,
            ])
            .filter(C::Hour.gte(whole_hours));
        if let Some(endpoint) = endpoint {
            query = query.filter(C::Endpoint.eq(endpoint));
        }
        let rows: Vec<RollupRow> = query.into_tuple().all(&self.db).await.map_err(db_error)?;
        let mut latencies: Vec<EndpointLatency> = parts.into_values().collect();
        latencies.reserve(rows.len());
        for row in rows {
            latencies.push(from_rollup(row)?);
        }
        Ok(latencies)
    }

    async fn job_status_counts(
        &self,
        since: DateTime<Utc>,
        job_type: Option<&str>,
    ) -> Result<Vec<JobStatusCount>, StorageError> {
        use job_outcome::{Column as C, Entity};
        let mut query = Entity::find()
            .select_only()
            .columns([C::JobType, C::Status])
            .column_as(Expr::cust("COUNT(*)"), "count")
            // PostgreSQL's AVG of an integer is NUMERIC; both backends agree on a double.
            .column_as(Expr::cust("CAST(AVG(duration_ms) AS DOUBLE PRECISION)"), "avg_duration_ms")
            .filter(C::Timestamp.gte(since));
        if let Some(job_type) = job_type {
            query = query.filter(C::JobType.eq(job_type));
        }
        let rows: Vec<(String, String, i64, Option<f64>)> = query
            .group_by(C::JobType)
            .group_by(C::Status)
            .order_by_asc(C::JobType)
            .order_by_asc(C::Status)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(job_type, status, n, avg_duration_ms)| JobStatusCount {
                job_type,
                status,
                count: count(n),
                avg_duration_ms,
            })
            .collect())
    }

    async fn error_trends(
        &self,
        since: DateTime<Utc>,
        category: Option<&str>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ErrorTrend>, StorageError> {
        use error_log::{Column as C, Entity};
        // The bucket width is a number, never client text, so it is written into the SQL.
        let width = bucket_s.unwrap_or(0).max(1);
        let bucket = match self.db.get_database_backend() {
            DbBackend::Postgres => format!("(FLOOR(EXTRACT(EPOCH FROM timestamp) / {width}) * {width})::BIGINT"),
            _ => format!("(CAST(strftime('%s', timestamp) AS INTEGER) / {width}) * {width}"),
        };
        let bucket = if bucket_s.is_some() { bucket } else { "CAST(0 AS BIGINT)".to_owned() };
        let mut query = Entity::find()
            .select_only()
            .column_as(Expr::cust(bucket.clone()), "bucket")
            .columns([C::Category, C::Severity])
            .column_as(Expr::cust("COUNT(*)"), "count")
            .filter(C::Timestamp.gte(since));
        if let Some(category) = category {
            query = query.filter(C::Category.eq(category));
        }
        if bucket_s.is_some() {
            query = query.group_by(Expr::cust(bucket.clone())).order_by_asc(Expr::cust(bucket));
        }
        let rows: Vec<(i64, String, String, i64)> = query
            .group_by(C::Category)
            .group_by(C::Severity)
            .order_by_asc(C::Category)
            .order_by_asc(C::Severity)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(start, category, severity, n)| ErrorTrend {
                bucket: bucket_s.map(|_| start),
                category,
                severity,
                count: count(n),
            })
            .collect())
    }

    async fn state_history(
        &self,
        device_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StateChange>, StorageError> {
        use device_state_change::{Column as C, Entity};
        let rows = Entity::find()
            .filter(C::DeviceId.eq(device_id))
            .filter(C::Timestamp.gte(since))
            .order_by_desc(C::Timestamp)
            .order_by_desc(C::Id)
            .limit(row_limit(limit))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(to_state_change).collect())
    }

    async fn purge_analytics(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        macro_rules! purge {
            ($entity:ident) => {{
                use $entity::{Column as C, Entity};
                let oldest = Query::select()
                    .column(C::Id)
                    .from(Entity)
                    .and_where(C::Timestamp.lt(before))
                    .order_by(C::Id, sea_orm::Order::Asc)
                    .limit(row_limit(max_rows))
                    .to_owned();
                Entity::delete_many()
                    .filter(C::Id.in_subquery(oldest))
                    .exec(&self.db)
                    .await
                    .map_err(db_error)?
                    .rows_affected
            }};
        }
        // A rollup goes once its whole hour is older than the cutoff.
        let rollups = {
            use api_request_rollup::{Column as C, Entity};
            let oldest = Query::select()
                .column(C::Id)
                .from(Entity)
                .and_where(C::Hour.lte(before - TimeDelta::hours(1)))
                .order_by(C::Id, sea_orm::Order::Asc)
                .limit(row_limit(max_rows))
                .to_owned();
            Entity::delete_many()
                .filter(C::Id.in_subquery(oldest))
                .exec(&self.db)
                .await
                .map_err(db_error)?
                .rows_affected
        };
        Ok(rollups
            + purge!(api_request_log)
            + purge!(device_state_change)
            + purge!(job_outcome)
            + purge!(error_log)
            + purge!(user_activity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_text() {
        let mut histogram = LatencyHistogram::default();
        for ms in [0.001, 0.5, 1.25, 3.0, 3.1, 1234.567, 1e9] {
            histogram.record(ms);
        }
        let text = encode_histogram(&histogram);
        assert_eq!(decode_histogram(&text), Some(histogram));
        assert_eq!(decode_histogram(""), Some(LatencyHistogram::default()));
        for corrupt in ["1,2", "x,1,2;", "1,2,z;"] {
            assert_eq!(decode_histogram(corrupt), None, "{corrupt}");
        }
    }
}
