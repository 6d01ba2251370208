use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum MetricPoints {
    Table,
    Id,
    Name,
    Tags,
    Fields,
    MetricType,
    TimeNs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MetricPoints::Table)
                    .col(ColumnDef::new(MetricPoints::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(MetricPoints::Name).string_len(256).not_null())
                    .col(ColumnDef::new(MetricPoints::Tags).json_binary().not_null())
                    .col(ColumnDef::new(MetricPoints::Fields).json_binary().not_null())
                    .col(ColumnDef::new(MetricPoints::MetricType).string_len(16).not_null())
                    .col(ColumnDef::new(MetricPoints::TimeNs).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // History reads are "one metric name, newest first".
        manager
            .create_index(
                Index::create()
                    .name("idx_metric_points_name_time")
                    .table(MetricPoints::Table)
                    .col(MetricPoints::Name)
                    .col(MetricPoints::TimeNs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MetricPoints::Table).to_owned()).await
    }
}
