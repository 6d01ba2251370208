//! API keys, stored as hashes, and their revocation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::{DeviceId, KeyHash, Role};
use homepot_storage::{KeyId, KeyInfo, KeyStore, NewKey, StorageError, StoredKey};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, SqlErr, Statement,
};

use crate::SeaOrmStore;
use crate::devices::to_device;
use crate::entity::{api_key, device};
use crate::error::db_error;

#[async_trait]
impl KeyStore for SeaOrmStore {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError> {
        let device_pk = match &key.device_id {
            Some(id) => {
                Some(self.device_pk(id).await?.ok_or_else(|| StorageError::not_found(format!("device '{id}'")))?)
            }
            None => None,
        };
        let row = api_key::ActiveModel {
            key_hash: Set(key.hash.to_hex()),
            role: Set(key.role.as_str().to_owned()),
            device_id: Set(device_pk),
            created_at: Set(key.created_at),
            revoked_at: Set(None),
            ..Default::default()
        };
        let id = self.insert_one(row).await.map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::conflict("api key"),
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => StorageError::not_found("device"),
            _ => db_error(e),
        })?;
        Ok(KeyId(id))
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError> {
        let Some(row) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash.to_hex()))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let (Some(role), Some(stored_hash)) = (Role::parse(&row.role), KeyHash::from_hex(&row.key_hash)) else {
            return Err(StorageError::backend(format!("api key {} has a corrupt role or hash", row.id)));
        };
        let device_id = match row.device_id {
            Some(pk) => device::Entity::find_by_id(pk).one(&self.db).await.map_err(db_error)?.map(|d| to_device(d).id),
            None => None,
        };
        Ok(Some(StoredKey { id: KeyId(row.id), hash: stored_hash, role, device_id }))
    }

    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError> {
        let count = api_key::Entity::find()
            .filter(api_key::Column::Role.eq(role.as_str()))
            .filter(api_key::Column::RevokedAt.is_null())
            .count(&self.db)
            .await
            .map_err(db_error)?;
        Ok(count > 0)
    }

    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError> {
        let owner = match device {
            Some(id) => match self.device_pk(id).await? {
                Some(pk) => api_key::Column::DeviceId.eq(pk),
                None => return Ok(Vec::new()),
            },
            None => api_key::Column::DeviceId.is_null(),
        };
        let rows = api_key::Entity::find()
            .filter(owner)
            .filter(api_key::Column::RevokedAt.is_null())
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let role = Role::parse(&row.role)
                    .ok_or_else(|| StorageError::backend(format!("api key {} has a corrupt role", row.id)))?;
                Ok(KeyInfo { id: KeyId(row.id), role, device_id: device.cloned(), created_at: row.created_at })
            })
            .collect()
    }

    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> Result<(), StorageError> {
        let owner = match device {
            Some(device_id) => match self.device_pk(device_id).await? {
                Some(pk) => api_key::Column::DeviceId.eq(pk),
                None => return Err(StorageError::not_found(format!("device '{device_id}'"))),
            },
            None => api_key::Column::DeviceId.is_null(),
        };
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, sea_orm::sea_query::Expr::value(now))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(owner)
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(StorageError::not_found(format!("key {}", id.0)));
        }
        bump_key_revision(&txn).await?;
        txn.commit().await.map_err(db_error)
    }

    async fn key_revision(&self) -> Result<u64, StorageError> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(Statement::from_string(backend, "SELECT revision FROM revisions WHERE name = 'keys'"))
            .await
            .map_err(db_error)?
            .ok_or_else(|| StorageError::backend("the keys revision row is missing"))?;
        let revision: i64 = row.try_get("", "revision").map_err(db_error)?;
        Ok(u64::try_from(revision).unwrap_or_default())
    }
}

/// Tells every process on the database that some key stopped being valid; called in the
/// transaction that revokes or deletes it.
pub(crate) async fn bump_key_revision(txn: &DatabaseTransaction) -> Result<(), StorageError> {
    let backend = txn.get_database_backend();
    txn.execute(Statement::from_string(backend, "UPDATE revisions SET revision = revision + 1 WHERE name = 'keys'"))
        .await
        .map_err(db_error)?;
    Ok(())
}
