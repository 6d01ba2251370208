use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum DeviceLatest {
    Table,
    DeviceId,
    CheckedAt,
    IsHealthy,
    ResponseTimeMs,
    CpuPercent,
    MemoryPercent,
    DiskPercent,
    State,
    StateSince,
}

#[derive(DeriveIden, Clone, Copy)]
enum Devices {
    Table,
    Id,
}

/// Each device's latest stored check in brief and its current state, kept by the health
/// insert and the state-change insert, so the fleet can be filtered and sorted on them
/// without reading the history. Filled from what is stored already.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeviceLatest::Table)
                    .col(ColumnDef::new(DeviceLatest::DeviceId).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(DeviceLatest::CheckedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeviceLatest::IsHealthy).boolean().null())
                    .col(ColumnDef::new(DeviceLatest::ResponseTimeMs).big_integer().null())
                    .col(ColumnDef::new(DeviceLatest::CpuPercent).double().null())
                    .col(ColumnDef::new(DeviceLatest::MemoryPercent).double().null())
                    .col(ColumnDef::new(DeviceLatest::DiskPercent).double().null())
                    .col(ColumnDef::new(DeviceLatest::State).string_len(64).null())
                    .col(ColumnDef::new(DeviceLatest::StateSince).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_device_latest_device")
                            .from(DeviceLatest::Table, DeviceLatest::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO device_latest (device_id, checked_at, is_healthy, response_time_ms, cpu_percent, \
             memory_percent, disk_percent) \
             SELECT h.device_id, h.checked_at, h.is_healthy, h.response_time_ms, h.cpu_percent, h.memory_percent, \
             h.disk_percent FROM health_checks h \
             WHERE h.id IN (SELECT MAX(id) FROM health_checks GROUP BY device_id)",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO device_latest (device_id, state, state_since) \
             SELECT d.id, s.new_state, s.timestamp FROM device_state_history s \
             JOIN devices d ON d.device_id = s.device_id \
             WHERE s.id IN (SELECT MAX(id) FROM device_state_history GROUP BY device_id) \
             ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, state_since = excluded.state_since",
        )
        .await?;
        Ok(())
    }
}
