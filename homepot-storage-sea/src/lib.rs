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
mod metrics;
mod migration;
mod point_codec;
mod receipts;
mod rollups;
mod sql;

use async_trait::async_trait;
use homepot_core::DeviceId;
use homepot_storage::{StorageError, Store};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PrimaryKeyTrait, QueryFilter,
    TransactionTrait,
};

pub use connect::{SqliteSync, StoreOptions};
pub use point_codec::{fields_from_json, fields_to_json, fields_to_json_text, tags_to_json_text};

use self::entity::device;
use self::error::db_error;

/// The storage traits over sea-orm. `sqlite://path.db` or `postgres://...`.
#[derive(Debug, Clone)]
pub struct SeaOrmStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) series_cache: rollups::SeriesCache,
}

impl SeaOrmStore {
    /// Inserts one row and returns its id. Always in a transaction: on SQLite a lone
    /// `INSERT ... RETURNING` leaves its statement open, and that read snapshot keeps
    /// checkpoints from ever recycling the WAL.
    pub(crate) async fn insert_one<A>(&self, row: A) -> Result<i64, DbErr>
    where
        A: ActiveModelTrait + Send,
        <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType: Into<i64>,
    {
        let txn = self.db.begin().await?;
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
