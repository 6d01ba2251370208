use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Devices {
    Table,
    Id,
    DeviceId,
    Name,
    DeviceType,
    Labels,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    KeyHash,
    Role,
    DeviceId,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(ColumnDef::new(Devices::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Devices::DeviceId).string_len(128).not_null().unique_key())
                    .col(ColumnDef::new(Devices::Name).string_len(200).null())
                    .col(ColumnDef::new(Devices::DeviceType).string_len(64).null())
                    .col(ColumnDef::new(Devices::Labels).json_binary().not_null())
                    .col(ColumnDef::new(Devices::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(ColumnDef::new(ApiKeys::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(ApiKeys::KeyHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(ApiKeys::Role).string_len(16).not_null())
                    .col(ColumnDef::new(ApiKeys::DeviceId).big_integer().null())
                    .col(ColumnDef::new(ApiKeys::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ApiKeys::RevokedAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_device")
                            .from(ApiKeys::Table, ApiKeys::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_api_keys_device").table(ApiKeys::Table).col(ApiKeys::DeviceId).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiKeys::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Devices::Table).to_owned()).await
    }
}
