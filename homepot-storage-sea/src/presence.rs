//! Device presence in `device_latest`: `seen_at` (the newest check any instance saw) and
//! `state`, which system transitions change by compare-and-set. The conditional `UPDATE`
//! decides: on PostgreSQL a second instance updating the same row waits for the first and
//! then re-reads it, so it finds the state changed and updates nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::DeviceId;
use homepot_core::analytics::StateChange;
use homepot_storage::{PresenceStore, RecordId, SilentDevice, StorageError};
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, Value};

use crate::SeaOrmStore;
use crate::analytics::insert_history_row;
use crate::error::db_error;
use crate::sql::{INSERT_CHUNK, numbered, row_limit};

/// Applies one transition on `txn`: whether it was stored.
async fn apply_one(txn: &DatabaseTransaction, c: &StateChange) -> Result<Option<RecordId>, StorageError> {
    let backend = txn.get_database_backend();
    // A registered device without a row yet gets one with no state, so the update below has a
    // row to compare with.
    let ensure = numbered(
        backend,
        "INSERT INTO device_latest (device_id) SELECT id FROM devices WHERE device_id = ? \
         ON CONFLICT (device_id) DO NOTHING",
    );
    txn.execute(Statement::from_sql_and_values(backend, ensure, [c.device_id.clone().into()]))
        .await
        .map_err(db_error)?;
    let update = numbered(
        backend,
        "UPDATE device_latest SET state = ?, state_since = ? \
         WHERE device_id = (SELECT id FROM devices WHERE device_id = ?) AND COALESCE(state, '') = COALESCE(?, '')",
    );
    let values: Vec<Value> = vec![
        c.new_state.clone().into(),
        c.timestamp.into(),
        c.device_id.clone().into(),
        c.previous_state.clone().into(),
    ];
    let updated = txn.execute(Statement::from_sql_and_values(backend, update, values)).await.map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    insert_history_row(txn, c).await.map(Some)
}

#[async_trait]
impl PresenceStore for SeaOrmStore {
    async fn apply_transitions(&self, batch: &[StateChange]) -> Result<Vec<Option<RecordId>>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // In device order (stable, so one device's changes keep theirs): two instances'
        // batches then lock rows in the same order and cannot deadlock.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].device_id.cmp(&batch[b].device_id));
        let mut ids = vec![None; batch.len()];
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        for i in order {
            ids[i] = apply_one(&txn, &batch[i]).await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(ids)
    }

    async fn mark_seen(&self, seen: &[(DeviceId, DateTime<Utc>)]) -> Result<(), StorageError> {
        // One row per device per statement: PostgreSQL refuses to update a row twice in one.
        let mut latest: HashMap<&DeviceId, DateTime<Utc>> = HashMap::with_capacity(seen.len());
        for (device, at) in seen {
            let last = latest.entry(device).or_insert(*at);
            *last = (*last).max(*at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let mut latest: Vec<_> = latest.into_iter().collect();
        // In device order, as every write of `device_latest` takes its rows.
        latest.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let backend = self.db.get_database_backend();
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        for chunk in latest.chunks(INSERT_CHUNK) {
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            // Rows are written in the order the join yields them: the third column keeps the
            // sorted order (the database's collation may sort ids otherwise).
            let sql = numbered(
                backend,
                &format!(
                    "INSERT INTO device_latest (device_id, seen_at) \
                     SELECT d.id, v.column2 FROM (VALUES {rows}) AS v JOIN devices d ON d.device_id = v.column1 \
                     WHERE true ORDER BY v.column3 ON CONFLICT (device_id) DO UPDATE SET seen_at = excluded.seen_at \
                     WHERE device_latest.seen_at IS NULL OR excluded.seen_at > device_latest.seen_at"
                ),
            );
            let values: Vec<Value> = chunk
                .iter()
                .enumerate()
                .flat_map(|(i, (device, at))| [device.as_str().into(), (*at).into(), (i as i64).into()])
                .collect();
            txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)
    }

    async fn silent_devices(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<SilentDevice>, StorageError> {
        let backend = self.db.get_database_backend();
        let sql = numbered(
            backend,
            "SELECT d.device_id, l.state, COALESCE(l.seen_at, l.state_since) AS last_seen \
             FROM device_latest l JOIN devices d ON d.id = l.device_id \
             WHERE l.state IS NOT NULL AND l.state <> 'offline' AND COALESCE(l.seen_at, l.state_since) < ? \
             ORDER BY last_seen, d.device_id LIMIT ?",
        );
        let values: Vec<Value> = vec![before.into(), row_limit(limit).into()];
        let rows = self.db.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("", "device_id").map_err(db_error)?;
                Ok(SilentDevice {
                    device_id: DeviceId::parse(&id).map_err(StorageError::backend)?,
                    state: row.try_get("", "state").map_err(db_error)?,
                    last_seen: row.try_get("", "last_seen").map_err(db_error)?,
                })
            })
            .collect()
    }

    async fn states_since(&self, since: DateTime<Utc>) -> Result<Vec<(DeviceId, String)>, StorageError> {
        let backend = self.db.get_database_backend();
        let sql = numbered(
            backend,
            "SELECT d.device_id, l.state FROM device_latest l JOIN devices d ON d.id = l.device_id \
             WHERE l.state IS NOT NULL AND l.state_since >= ?",
        );
        let rows =
            self.db.query_all(Statement::from_sql_and_values(backend, sql, [since.into()])).await.map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("", "device_id").map_err(db_error)?;
                let state: String = row.try_get("", "state").map_err(db_error)?;
                Ok((DeviceId::parse(&id).map_err(StorageError::backend)?, state))
            })
            .collect()
    }
}
