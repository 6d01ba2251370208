//! The device registry, and which devices send container metrics.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::{Device, DeviceId, KeyHash, NewDevice, Role};
use homepot_storage::fleet::{FleetPage, FleetQuery};
use homepot_storage::{DeviceStore, StorageError};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr};

use crate::SeaOrmStore;
use crate::entity::{api_key, device};
use crate::error::db_error;

pub(crate) fn to_device(model: device::Model) -> Device {
    let labels: BTreeMap<String, String> = serde_json::from_value(model.labels).unwrap_or_default();
    Device::from_stored(model.device_id, model.name, model.device_type, labels, model.created_at)
}

#[async_trait]
impl DeviceStore for SeaOrmStore {
    async fn register_device(
        &self,
        new: &NewDevice,
        key: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Device, StorageError> {
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let labels = serde_json::to_value(new.labels().as_map()).map_err(StorageError::backend)?;
        let inserted = device::ActiveModel {
            device_id: Set(new.id().as_str().to_owned()),
            name: Set(new.name().map(str::to_owned)),
            device_type: Set(new.device_type().map(str::to_owned)),
            labels: Set(labels),
            created_at: Set(now),
            container_metrics_since: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::conflict(format!("device '{}'", new.id())),
            _ => db_error(e),
        })?;
        api_key::ActiveModel {
            key_hash: Set(key.to_hex()),
            role: Set(Role::Device.as_str().to_owned()),
            device_id: Set(Some(inserted.id)),
            created_at: Set(now),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_device(inserted))
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError> {
        let row = device::Entity::find()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(to_device))
    }

    async fn devices(&self) -> Result<Vec<Device>, StorageError> {
        let rows =
            device::Entity::find().order_by_asc(device::Column::DeviceId).all(&self.db).await.map_err(db_error)?;
        Ok(rows.into_iter().map(to_device).collect())
    }

    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let result = device::Entity::delete_many()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(StorageError::not_found(format!("device '{id}'")));
        }
        crate::keys::bump_key_revision(&txn).await?;
        txn.commit().await.map_err(db_error)
    }

    async fn mark_container_reporter(&self, id: &DeviceId, at: DateTime<Utc>) -> Result<(), StorageError> {
        device::Entity::update_many()
            .col_expr(device::Column::ContainerMetricsSince, sea_orm::sea_query::Expr::value(at))
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .filter(device::Column::ContainerMetricsSince.is_null())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError> {
        let rows = device::Entity::find()
            .filter(device::Column::ContainerMetricsSince.is_not_null())
            .order_by_asc(device::Column::DeviceId)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(|d| to_device(d).id).collect())
    }

    async fn fleet(&self, query: &FleetQuery) -> Result<FleetPage, StorageError> {
        self.fleet_page(query).await
    }
}
