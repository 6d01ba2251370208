//! Schema migrations, run at start-up. One file per migration: sea-orm takes the version
//! from the file name. The same code creates the schema on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_devices_and_keys;
mod m20261122_000002_create_health_checks;
mod m20261122_000003_create_metric_points;
mod m20261122_000004_create_analytics;
mod m20261122_000005_create_request_rollups;
mod m20261201_000006_add_recorded_by;
mod m20261201_000007_add_container_reporters;
mod m20261201_000008_create_rollups;
mod m20261201_000009_create_device_latest;
mod m20261201_000010_create_alerting;
mod m20261203_000011_create_receipts;
mod m20261207_000012_create_revisions;
mod m20261207_000013_create_leases;
mod m20261208_000014_add_seen_at;
mod m20261208_000015_index_presence;

#[derive(Debug)]
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_devices_and_keys::Migration),
            Box::new(m20261122_000002_create_health_checks::Migration),
            Box::new(m20261122_000003_create_metric_points::Migration),
            Box::new(m20261122_000004_create_analytics::Migration),
            Box::new(m20261122_000005_create_request_rollups::Migration),
            Box::new(m20261201_000006_add_recorded_by::Migration),
            Box::new(m20261201_000007_add_container_reporters::Migration),
            Box::new(m20261201_000008_create_rollups::Migration),
            Box::new(m20261201_000009_create_device_latest::Migration),
            Box::new(m20261201_000010_create_alerting::Migration),
            Box::new(m20261203_000011_create_receipts::Migration),
            Box::new(m20261207_000012_create_revisions::Migration),
            Box::new(m20261207_000013_create_leases::Migration),
            Box::new(m20261208_000014_add_seen_at::Migration),
            Box::new(m20261208_000015_index_presence::Migration),
        ]
    }
}
