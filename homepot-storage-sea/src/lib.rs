//! The sea-orm backend of homepot's storage traits: SQLite (the embedded default) and
//! PostgreSQL, chosen by the connection URL. It owns the schema (entities and migrations,
//! run at connect), the SQL and the mapping of database errors to `StorageError`.
//!
//! Depends on `homepot-storage` for the traits it implements and on `homepot-core` for the
//! domain types; nothing here is visible through the traits. Must not depend on the engine
//! or on any transport.
#![forbid(unsafe_code)]

mod alerts;
mod analytics;
mod connect;
mod devices;
mod entity;
mod error;
mod export;
mod fleet;
mod health;
mod keys;
mod leases;
mod metrics;
mod migration;
mod point_codec;
mod presence;
mod receipts;
mod rollups;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use homepot_core::DeviceId;
use homepot_storage::{StorageError, Store};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, PrimaryKeyTrait,
    QueryFilter, TransactionTrait,
};
use tokio::sync::OwnedMutexGuard;

pub use connect::{SqliteSync, StoreOptions};
pub use point_codec::{fields_from_json, fields_to_json, fields_to_json_text, tags_to_json_text};

use self::entity::device;
use self::error::db_error;

/// The storage traits over sea-orm. `sqlite://path.db` or `postgres://...`.
#[derive(Debug, Clone)]
pub struct SeaOrmStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) series_cache: rollups::SeriesCache,
    /// SQLite's write transactions queue here first (`None` on PostgreSQL). SQLite admits one
    /// writer and makes the others poll with growing sleeps, so a writer that commits back to
    /// back (the rollup flush) kept ingest waiting for a second and more; this lock is fair,
    /// so each waiting writer gets its turn after the transaction in progress.
    pub(crate) write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl SeaOrmStore {
    /// Begins a write transaction, in turn with this store's other writers on SQLite. Hold
    /// the guard until the transaction ends.
    pub(crate) async fn begin_write(&self) -> Result<(Option<OwnedMutexGuard<()>>, DatabaseTransaction), DbErr> {
        let gate = match &self.write_gate {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        };
        Ok((gate, self.db.begin().await?))
    }

    /// Inserts one row and returns its id. Always in a transaction: on SQLite a lone
    /// `INSERT ... RETURNING` leaves its statement open, and that read snapshot keeps
    /// checkpoints from ever recycling the WAL.
    pub(crate) async fn insert_one<A>(&self, row: A) -> Result<i64, DbErr>
    where
        A: ActiveModelTrait + Send,
        <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType: Into<i64>,
    {
        let (_gate, txn) = self.begin_write().await?;
        let id = A::Entity::insert(row).exec(&txn).await?.last_insert_id;
        txn.commit().await?;
        Ok(id.into())
    }

    pub(crate) async fn device_pk(&self, id: &DeviceId) -> Result<Option<i64>, StorageError> {
        let row = device::Entity::find()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(|d| d.id))
    }
}

#[async_trait]
impl Store for SeaOrmStore {
    async fn ping(&self) -> Result<(), StorageError> {
        self.db.ping().await.map_err(|e| StorageError::Unavailable { source: Box::new(e) })
    }
}
