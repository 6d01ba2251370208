use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiRequestRollups {
    Table,
    Id,
    Hour,
    Endpoint,
    Method,
    RequestCount,
    SumMs,
    MinMs,
    MaxMs,
    Errors,
    ServerErrors,
    Histogram,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobOutcomes {
    Table,
    Timestamp,
    JobType,
    Status,
    DurationMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ApiRequestRollups as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .col(ColumnDef::new(R::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(R::Hour).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(R::Endpoint).string_len(255).not_null())
                    .col(ColumnDef::new(R::Method).string_len(10).not_null())
                    .col(ColumnDef::new(R::RequestCount).big_integer().not_null())
                    .col(ColumnDef::new(R::SumMs).double().not_null())
                    .col(ColumnDef::new(R::MinMs).double().not_null())
                    .col(ColumnDef::new(R::MaxMs).double().not_null())
                    .col(ColumnDef::new(R::Errors).big_integer().not_null())
                    .col(ColumnDef::new(R::ServerErrors).big_integer().not_null())
                    .col(ColumnDef::new(R::Histogram).text().not_null())
                    .to_owned(),
            )
            .await?;
        // One row per hour, endpoint and method: the key concurrent writers meet on.
        manager
            .create_index(
                Index::create()
                    .name("idx_api_request_rollups_key")
                    .table(R::Table)
                    .col(R::Hour)
                    .col(R::Endpoint)
                    .col(R::Method)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The job outcome query reads durations too: covering them spares a row lookup each.
        manager
            .create_index(
                Index::create()
                    .name("idx_job_outcomes_timestamp_type_duration")
                    .table(JobOutcomes::Table)
                    .col(JobOutcomes::Timestamp)
                    .col(JobOutcomes::JobType)
                    .col(JobOutcomes::Status)
                    .col(JobOutcomes::DurationMs)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name("idx_job_outcomes_timestamp_type").table(JobOutcomes::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiRequestRollups::Table).to_owned()).await
    }
}
