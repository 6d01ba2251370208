//! Idempotency receipts: upserted inside the transactions of `insert_health` and
//! `insert_points`, read back by primary key.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_storage::{HealthCheckId, NewReceipt, Receipt, ReceiptStore, StorageError};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::sql::{Bind, INSERT_CHUNK, insert_sql, numbered};

const RECEIPT_COLUMNS: &[(&str, Bind)] = &[
    ("scope", Bind::Plain),
    ("request_key", Bind::Plain),
    ("accepted_at", Bind::Plain),
    ("answer", Bind::Plain),
    ("health_id", Bind::Plain),
];

/// A key reused after its window replaces the old receipt; one still in its window (taken by
/// a transaction of another process, maybe committing meanwhile: PostgreSQL waits for it)
/// updates nothing and returns no row.
const RECEIPT_UPSERT: &str = " ON CONFLICT (scope, request_key) DO UPDATE SET accepted_at = excluded.accepted_at, \
     answer = excluded.answer, health_id = excluded.health_id WHERE receipts.accepted_at < ";

/// Stores `receipts` on `txn`, the transaction that stores their data; a key still taken
/// fails it with [`StorageError::Conflict`], and the caller drops the transaction.
pub(crate) async fn insert_receipts<C: ConnectionTrait>(
    txn: &C,
    receipts: impl IntoIterator<Item = (&NewReceipt, Option<HealthCheckId>)>,
) -> Result<(), StorageError> {
    // One statement may not upsert a row twice (PostgreSQL refuses): the last of a key wins.
    let mut unique: HashMap<(&str, &str), (&NewReceipt, Option<HealthCheckId>)> = HashMap::new();
    for (receipt, id) in receipts {
        unique.insert((&receipt.scope, &receipt.key), (receipt, id));
    }
    let mut rows: Vec<_> = unique.into_values().collect();
    // In key order, as concurrent transactions must take the rows.
    rows.sort_unstable_by(|a, b| (&a.0.scope, &a.0.key).cmp(&(&b.0.scope, &b.0.key)));
    let backend = txn.get_database_backend();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * RECEIPT_COLUMNS.len() + 1);
        for (receipt, id) in chunk {
            values.extend([
                receipt.scope.as_str().into(),
                receipt.key.as_str().into(),
                receipt.accepted_at.into(),
                receipt.answer.as_str().into(),
                id.map(|id| id.0).into(),
            ]);
        }
        // One cut for the statement, the earliest: a receipt between it and its own cut is
        // refused, and the engine's retry alone then replaces it.
        let cut = chunk.iter().map(|(r, _)| r.replaces_before).min().unwrap_or(DateTime::<Utc>::MAX_UTC);
        values.push(cut.into());
        let placeholder = match backend {
            DbBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_owned(),
        };
        let suffix = format!("{RECEIPT_UPSERT}{placeholder} RETURNING scope");
        let sql = insert_sql(backend, "receipts", RECEIPT_COLUMNS, chunk.len(), &suffix);
        let written = txn.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        if written.len() < chunk.len() {
            return Err(StorageError::conflict("an idempotency key in this batch is taken"));
        }
    }
    Ok(())
}

#[async_trait]
impl ReceiptStore for SeaOrmStore {
    async fn receipt(&self, scope: &str, key: &str) -> Result<Option<Receipt>, StorageError> {
        let backend = self.db.get_database_backend();
        let sql = numbered(
            backend,
            "SELECT accepted_at, answer, health_id FROM receipts WHERE scope = ? AND request_key = ?",
        );
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(backend, sql, [scope.into(), key.into()]))
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Receipt {
            accepted_at: row.try_get("", "accepted_at").map_err(db_error)?,
            answer: row.try_get("", "answer").map_err(db_error)?,
            health_id: row.try_get::<Option<i64>>("", "health_id").map_err(db_error)?.map(HealthCheckId),
        }))
    }

    async fn purge_receipts(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        self.delete_some("receipts", "scope, request_key", "accepted_at < ?", vec![before.into()], max_rows).await
    }
}
