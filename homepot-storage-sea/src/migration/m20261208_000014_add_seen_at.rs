use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum DeviceLatest {
    Table,
    SeenAt,
}

/// When each device was last seen by any instance (its checks, stored or filtered), so that
/// the instance sweeping for silent devices knows of checks that reached the others. Starts
/// from the latest stored check.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeviceLatest::Table)
                    .add_column(ColumnDef::new(DeviceLatest::SeenAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager.get_connection().execute_unprepared("UPDATE device_latest SET seen_at = checked_at").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(DeviceLatest::Table).drop_column(DeviceLatest::SeenAt).to_owned())
            .await
    }
}
