use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub device_id: String,
    pub name: Option<String>,
    pub device_type: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub labels: Json,
    pub created_at: DateTimeUtc,
    /// When the device first sent container metrics.
    pub container_metrics_since: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
