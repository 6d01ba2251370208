use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum RollupSeries {
    Table,
    Id,
    KeyHash,
    Name,
    Field,
    Tags,
}

#[derive(DeriveIden, Clone, Copy)]
enum RollupBuckets {
    Table,
    SeriesId,
    Tier,
    BucketStart,
    SampleCount,
    ValueSum,
    ValueMin,
    ValueMax,
    ValueLast,
    LastNs,
}

#[derive(DeriveIden, Clone, Copy)]
enum MetricPoints {
    Table,
    TimeNs,
}

/// Rollups: one row per numeric series (a point name, its tags and one field), and one per
/// series, tier and bucket. Also an index for purging metric points by time.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RollupSeries::Table)
                    .col(ColumnDef::new(RollupSeries::Id).big_integer().not_null().auto_increment().primary_key())
                    // SHA-256 of the whole key: tag sets can exceed what a btree entry holds.
                    .col(ColumnDef::new(RollupSeries::KeyHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(RollupSeries::Name).string_len(256).not_null())
                    .col(ColumnDef::new(RollupSeries::Field).string_len(256).not_null())
                    .col(ColumnDef::new(RollupSeries::Tags).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rollup_series_name_field")
                    .table(RollupSeries::Table)
                    .col(RollupSeries::Name)
                    .col(RollupSeries::Field)
                    .to_owned(),
            )
            .await?;
        // Keyed by series, tier and start: a range read is one span of the key. On SQLite the
        // table is the key's B-tree (WITHOUT ROWID), so a series' buckets sit together on
        // disk rather than scattered in arrival order across the fleet's.
        let clustered = if manager.get_database_backend() == DbBackend::Sqlite { "WITHOUT ROWID" } else { "" };
        manager
            .create_table(
                Table::create()
                    .table(RollupBuckets::Table)
                    .col(ColumnDef::new(RollupBuckets::SeriesId).big_integer().not_null())
                    // The bucket width in seconds: 60, 3600 or 86400.
                    .col(ColumnDef::new(RollupBuckets::Tier).integer().not_null())
                    .col(ColumnDef::new(RollupBuckets::BucketStart).big_integer().not_null())
                    .col(ColumnDef::new(RollupBuckets::SampleCount).big_integer().not_null())
                    // The exact decimal sum (`ExactSum`): a float sum would depend on merge order.
                    .col(ColumnDef::new(RollupBuckets::ValueSum).text().not_null())
                    .col(ColumnDef::new(RollupBuckets::ValueMin).double().not_null())
                    .col(ColumnDef::new(RollupBuckets::ValueMax).double().not_null())
                    .col(ColumnDef::new(RollupBuckets::ValueLast).double().not_null())
                    .col(ColumnDef::new(RollupBuckets::LastNs).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_rollup_buckets_series")
                            .from(RollupBuckets::Table, RollupBuckets::SeriesId)
                            .to(RollupSeries::Table, RollupSeries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .primary_key(
                        Index::create()
                            .col(RollupBuckets::SeriesId)
                            .col(RollupBuckets::Tier)
                            .col(RollupBuckets::BucketStart),
                    )
                    .extra(clustered)
                    .to_owned(),
            )
            .await?;
        // Retention: the oldest buckets of one tier.
        manager
            .create_index(
                Index::create()
                    .name("idx_rollup_buckets_tier_start")
                    .table(RollupBuckets::Table)
                    .col(RollupBuckets::Tier)
                    .col(RollupBuckets::BucketStart)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_metric_points_time")
                    .table(MetricPoints::Table)
                    .col(MetricPoints::TimeNs)
                    .to_owned(),
            )
            .await
    }
}
