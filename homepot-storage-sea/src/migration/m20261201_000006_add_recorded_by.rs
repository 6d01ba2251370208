use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum DeviceStateHistory {
    Table,
    RecordedBy,
}

/// Who recorded a state change (the authenticated key, or `system`), kept apart from the
/// `changed_by` a client posts. Rows written before it have none.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeviceStateHistory::Table)
                    .add_column(ColumnDef::new(DeviceStateHistory::RecordedBy).string_len(255).null())
                    .to_owned(),
            )
            .await
    }
}
