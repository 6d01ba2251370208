use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "user_activities")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub timestamp: DateTimeUtc,
    pub user_id: String,
    pub session_id: Option<String>,
    pub activity_type: String,
    pub page_url: Option<String>,
    pub element_id: Option<String>,
    pub search_query: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub extra_data: Json,
    pub duration_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
