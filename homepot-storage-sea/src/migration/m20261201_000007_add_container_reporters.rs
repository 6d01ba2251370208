use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Devices {
    Table,
    ContainerMetricsSince,
}

/// When a device first sent container metrics: the devices the MQTT bridge asks for
/// metrics again after every reconnect (`--mqtt-request-all`).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(ColumnDef::new(Devices::ContainerMetricsSince).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await
    }
}
