use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Every instance reads the states changed since its last tick, every tick: over a million
/// devices on PostgreSQL a scan took 51 ms, the index 0.6 ms. Transitions are rare, so the
/// index costs writes nothing. The sweep's other read (devices silent since a time, once a
/// tick on one instance: 80 ms over a million) stays a scan: an index on `seen_at` would make
/// every sighting's update a non-HOT one on PostgreSQL.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE INDEX ix_device_latest_state_since ON device_latest (state_since)").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX ix_device_latest_state_since").await?;
        Ok(())
    }
}
