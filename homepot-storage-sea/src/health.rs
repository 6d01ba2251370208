//! Health checks: the group-commit insert and a device's history, both plain SQL.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::DeviceId;
use homepot_storage::{HealthCheckId, HealthStore, NewHealthCheck, StorageError, StoredHealthCheck};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, RuntimeErr, SqlErr, Statement, sqlx};
use serde_json::Value;

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::sql::{Bind, INSERT_CHUNK, insert_sql, row_limit};

/// Columns bound per health check, in order.
const HEALTH_COLUMNS: &[(&str, Bind)] = &[
    ("device_id", Bind::DeviceKey),
    ("is_healthy", Bind::Plain),
    ("response_time_ms", Bind::Plain),
    ("status_code", Bind::Plain),
    ("endpoint", Bind::Plain),
    ("response_data", Bind::Json),
    ("error_message", Bind::Plain),
    ("cpu_percent", Bind::Plain),
    ("memory_percent", Bind::Plain),
    ("disk_percent", Bind::Plain),
    ("checked_at", Bind::Plain),
];

/// Columns of a device's latest check in brief, kept beside the history for the fleet query.
const LATEST_COLUMNS: &[(&str, Bind)] = &[
    ("device_id", Bind::DeviceKey),
    ("checked_at", Bind::Plain),
    ("is_healthy", Bind::Plain),
    ("response_time_ms", Bind::Plain),
    ("cpu_percent", Bind::Plain),
    ("memory_percent", Bind::Plain),
    ("disk_percent", Bind::Plain),
];

/// Replaces a device's latest check unless the stored one is newer (of equal times, the
/// later stored wins).
const LATEST_UPSERT: &str = " ON CONFLICT (device_id) DO UPDATE SET checked_at = excluded.checked_at, \
     is_healthy = excluded.is_healthy, response_time_ms = excluded.response_time_ms, \
     cpu_percent = excluded.cpu_percent, memory_percent = excluded.memory_percent, \
     disk_percent = excluded.disk_percent \
     WHERE device_latest.checked_at IS NULL OR excluded.checked_at >= device_latest.checked_at";

/// Whether a health insert failed for want of its device: the key subquery found none
/// (NOT NULL: SQLite 1299, PostgreSQL 23502), or the device went away (foreign key).
fn is_missing_device(err: &DbErr) -> bool {
    if matches!(err.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) = err else {
        return false;
    };
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code == "1299" || code == "23502"),
        _ => false,
    }
}

impl SeaOrmStore {
    /// A device's checks, newest first, optionally since a time. Plain SQL read by column: a
    /// day of checks decoded through sea-orm models took about three times as long
    /// (BENCHMARKS.md). The device's key is found in a subquery, so an unknown device simply
    /// has no checks.
    async fn health_rows(
        &self,
        device: &DeviceId,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        let backend = self.db.get_database_backend();
        let postgres = backend == DbBackend::Postgres;
        let parameter = |n: usize| if postgres { format!("${n}") } else { "?".to_owned() };
        let mut values: Vec<sea_orm::Value> = vec![device.as_str().into()];
        let mut sql = format!(
            "SELECT id, is_healthy, response_time_ms, status_code, endpoint, {}, error_message, checked_at \
             FROM health_checks WHERE device_id = (SELECT id FROM devices WHERE device_id = {})",
            if postgres { "response_data::text AS response_data" } else { "response_data" },
            parameter(1)
        );
        if let Some(since) = since {
            values.push(since.into());
            sql.push_str(&format!(" AND checked_at >= {}", parameter(values.len())));
        }
        values.push(i64::try_from(row_limit(limit)).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" ORDER BY checked_at DESC, id DESC LIMIT {}", parameter(values.len())));
        let rows = self.db.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        rows.iter().map(|row| health_from(row, device.clone())).collect::<Result<_, DbErr>>().map_err(db_error)
    }
}

/// A `health_checks` row selected as `health_rows` selects it, of `device`.
pub(crate) fn health_from(row: &QueryResult, device_id: DeviceId) -> Result<StoredHealthCheck, DbErr> {
    let text: String = row.try_get("", "response_data")?;
    let response_data = match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    Ok(StoredHealthCheck {
        id: HealthCheckId(row.try_get("", "id")?),
        device_id,
        is_healthy: row.try_get("", "is_healthy")?,
        response_time_ms: i64::from(row.try_get::<i32>("", "response_time_ms")?),
        status_code: i64::from(row.try_get::<i32>("", "status_code")?),
        endpoint: row.try_get("", "endpoint")?,
        response_data,
        error_message: row.try_get("", "error_message")?,
        checked_at: row.try_get("", "checked_at")?,
    })
}

#[async_trait]
impl HealthStore for SeaOrmStore {
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Plain SQL with the document bound as JSON text, as for metric points: cheaper than
        // ActiveModels holding `serde_json::Value` trees. Each row finds its device's key in
        // a subquery, which saves a round trip and keeps the transaction's first statement a
        // write (on SQLite, one that reads first fails with BUSY_SNAPSHOT when another
        // connection wrote meanwhile). An unknown device leaves the key NULL: NotFound.
        let backend = self.db.get_database_backend();
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let mut ids = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * HEALTH_COLUMNS.len());
            for item in chunk {
                let report = item.check.report();
                let document = serde_json::to_string(&item.check.document()).map_err(StorageError::backend)?;
                values.extend([
                    item.device_id.as_str().into(),
                    report.is_healthy.into(),
                    // Validation bounds both to i32.
                    i32::try_from(report.response_time_ms).unwrap_or(i32::MAX).into(),
                    i32::try_from(report.status_code).unwrap_or(0).into(),
                    report.endpoint.clone().into(),
                    document.into(),
                    report.error_message.clone().into(),
                    item.check.cpu_percent().into(),
                    item.check.memory_percent().into(),
                    item.check.disk_percent().into(),
                    item.checked_at.into(),
                ]);
            }
            let sql = insert_sql(backend, "health_checks", HEALTH_COLUMNS, chunk.len(), " RETURNING id");
            let rows = txn
                .query_all(Statement::from_sql_and_values(backend, sql, values))
                .await
                .map_err(|e| if is_missing_device(&e) { StorageError::not_found("device") } else { db_error(e) })?;
            let mut chunk_ids =
                rows.iter().map(|row| row.try_get::<i64>("", "id")).collect::<Result<Vec<_>, _>>().map_err(db_error)?;
            // Both backends assign keys in VALUES order; RETURNING's row order is not promised.
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids.into_iter().map(HealthCheckId));
        }
        // Each device's newest check of the batch (the later of equal times), once: one
        // statement may not update a row twice.
        let mut newest: HashMap<&DeviceId, &NewHealthCheck> = HashMap::new();
        for item in batch {
            let entry = newest.entry(&item.device_id).or_insert(item);
            if item.checked_at >= entry.checked_at {
                *entry = item;
            }
        }
        // In device order, as every write of `device_latest` takes its rows: instances that
        // write the same devices at once then wait for each other instead of deadlocking.
        let mut newest: Vec<&NewHealthCheck> = newest.into_values().collect();
        newest.sort_unstable_by(|a, b| a.device_id.cmp(&b.device_id));
        for chunk in newest.chunks(INSERT_CHUNK) {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * LATEST_COLUMNS.len());
            for item in chunk {
                let report = item.check.report();
                values.extend([
                    item.device_id.as_str().into(),
                    item.checked_at.into(),
                    report.is_healthy.into(),
                    report.response_time_ms.into(),
                    item.check.cpu_percent().into(),
                    item.check.memory_percent().into(),
                    item.check.disk_percent().into(),
                ]);
            }
            let sql = insert_sql(backend, "device_latest", LATEST_COLUMNS, chunk.len(), LATEST_UPSERT);
            txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        }
        let receipts = batch.iter().zip(&ids).filter_map(|(item, id)| item.receipt.as_ref().map(|r| (r, Some(*id))));
        crate::receipts::insert_receipts(&txn, receipts).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(ids)
    }

    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        self.health_rows(device, Some(since), limit).await
    }

    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError> {
        Ok(self.health_rows(device, None, 1).await?.pop())
    }

    async fn purge_health(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        max_rows: u64,
    ) -> Result<u64, StorageError> {
        let values = vec![from.into(), before.into()];
        self.delete_some("health_checks", "id", "checked_at >= ? AND checked_at < ?", values, max_rows).await
    }
}
