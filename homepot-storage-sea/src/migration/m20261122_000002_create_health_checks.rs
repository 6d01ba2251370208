use sea_orm_migration::prelude::*;

use super::m20261122_000001_create_devices_and_keys::Devices;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum HealthChecks {
    Table,
    Id,
    DeviceId,
    IsHealthy,
    ResponseTimeMs,
    StatusCode,
    Endpoint,
    ResponseData,
    ErrorMessage,
    CpuPercent,
    MemoryPercent,
    DiskPercent,
    CheckedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthChecks::Table)
                    .col(ColumnDef::new(HealthChecks::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(HealthChecks::DeviceId).big_integer().not_null())
                    .col(ColumnDef::new(HealthChecks::IsHealthy).boolean().not_null())
                    .col(ColumnDef::new(HealthChecks::ResponseTimeMs).integer().not_null())
                    .col(ColumnDef::new(HealthChecks::StatusCode).integer().not_null())
                    .col(ColumnDef::new(HealthChecks::Endpoint).string_len(200).null())
                    .col(ColumnDef::new(HealthChecks::ResponseData).json_binary().not_null())
                    .col(ColumnDef::new(HealthChecks::ErrorMessage).text().null())
                    .col(ColumnDef::new(HealthChecks::CpuPercent).double().null())
                    .col(ColumnDef::new(HealthChecks::MemoryPercent).double().null())
                    .col(ColumnDef::new(HealthChecks::DiskPercent).double().null())
                    .col(ColumnDef::new(HealthChecks::CheckedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_health_checks_device")
                            .from(HealthChecks::Table, HealthChecks::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Reads are "one device, newest first" and time-range scans across the fleet.
        manager
            .create_index(
                Index::create()
                    .name("idx_health_checks_device_checked_at")
                    .table(HealthChecks::Table)
                    .col(HealthChecks::DeviceId)
                    .col(HealthChecks::CheckedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_health_checks_checked_at")
                    .table(HealthChecks::Table)
                    .col(HealthChecks::CheckedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(HealthChecks::Table).to_owned()).await
    }
}
