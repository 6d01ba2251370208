use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "metric_points")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    /// Tags as a JSON object.
    #[sea_orm(column_type = "JsonBinary")]
    pub tags: Json,
    /// Fields as `[[key, {type: value}], ...]`.
    #[sea_orm(column_type = "JsonBinary")]
    pub fields: Json,
    pub metric_type: String,
    /// Nanoseconds since the Unix epoch: exact on both backends, unlike timestamps.
    pub time_ns: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
