use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_request_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub timestamp: DateTimeUtc,
    pub endpoint: String,
    pub method: String,
    pub status_code: i32,
    pub response_time_ms: f64,
    /// `homepot_core::analytics::latency_bucket` of `response_time_ms`, for percentiles in SQL.
    pub latency_bucket: i32,
    pub user_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub error_message: Option<String>,
    pub request_size_bytes: Option<i64>,
    pub response_size_bytes: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
