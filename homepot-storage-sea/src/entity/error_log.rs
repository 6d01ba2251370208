use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "error_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub timestamp: DateTimeUtc,
    pub category: String,
    pub severity: String,
    pub error_code: Option<String>,
    pub error_message: String,
    pub stack_trace: Option<String>,
    pub endpoint: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub context: Json,
    pub resolved: bool,
    pub resolved_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
