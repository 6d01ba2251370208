use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Receipts {
    Table,
    Scope,
    RequestKey,
    AcceptedAt,
    Answer,
    HealthId,
}

/// Idempotency receipts: one row per keyed ingest request, written in the transaction that
/// stores its data. No foreign key to `health_checks`: retention purges checks and receipts
/// on their own schedules, and a receipt only points at what its request was answered.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Receipts::Table)
                    .col(ColumnDef::new(Receipts::Scope).string_len(256).not_null())
                    .col(ColumnDef::new(Receipts::RequestKey).string_len(256).not_null())
                    .col(ColumnDef::new(Receipts::AcceptedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Receipts::Answer).text().not_null())
                    .col(ColumnDef::new(Receipts::HealthId).big_integer().null())
                    .primary_key(Index::create().col(Receipts::Scope).col(Receipts::RequestKey))
                    .to_owned(),
            )
            .await?;
        // Retention deletes by age.
        manager
            .create_index(
                Index::create()
                    .name("idx_receipts_accepted_at")
                    .table(Receipts::Table)
                    .col(Receipts::AcceptedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Receipts::Table).to_owned()).await
    }
}
