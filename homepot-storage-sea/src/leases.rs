//! Leases: one conditional upsert takes or renews a lease, so of several processes trying at
//! once exactly one row decides. The statement is the same on SQLite and PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_storage::{LeaseStore, StorageError};
use sea_orm::{ConnectionTrait, Statement};

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::sql::numbered;

#[async_trait]
impl LeaseStore for SeaOrmStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let backend = self.db.get_database_backend();
        // The update applies only to the holder's own lease or one that has run out; otherwise
        // no row comes back and the lease stays with its holder.
        let sql = numbered(
            backend,
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms < ? RETURNING holder",
        );
        let values = vec![name.into(), holder.into(), until.timestamp_millis().into(), now.timestamp_millis().into()];
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let row = txn.query_one(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let backend = self.db.get_database_backend();
        let sql = numbered(backend, "DELETE FROM leases WHERE name = ? AND holder = ?");
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        txn.execute(Statement::from_sql_and_values(backend, sql, vec![name.into(), holder.into()]))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }
}
