use sea_orm::entity::prelude::*;

/// Request logs summed per hour, endpoint and method, kept in step with `api_request_logs`
/// in the same transaction, so performance queries read one row per hour instead of every log.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_request_rollups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Start of the hour.
    pub hour: DateTimeUtc,
    pub endpoint: String,
    pub method: String,
    pub request_count: i64,
    pub sum_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub errors: i64,
    pub server_errors: i64,
    /// `bucket,count,slowest_us;` per bucket, in bucket order: plain text, because decoding
    /// thousands of these per query must be cheap.
    #[sea_orm(column_type = "Text")]
    pub histogram: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
