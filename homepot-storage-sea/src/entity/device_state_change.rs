use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "device_state_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub timestamp: DateTimeUtc,
    /// The device's public id (not a foreign key: history outlives a removed device).
    pub device_id: String,
    pub previous_state: Option<String>,
    pub new_state: String,
    pub changed_by: Option<String>,
    pub recorded_by: Option<String>,
    pub reason: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub extra_data: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
