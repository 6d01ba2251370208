use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "health_checks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `devices.id`, as in seed 01's schema.
    pub device_id: i64,
    pub is_healthy: bool,
    pub response_time_ms: i32,
    pub status_code: i32,
    pub endpoint: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub response_data: Json,
    pub error_message: Option<String>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub disk_percent: Option<f64>,
    pub checked_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
