use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiRequestLogs {
    Table,
    Id,
    Timestamp,
    Endpoint,
    Method,
    StatusCode,
    ResponseTimeMs,
    LatencyBucket,
    UserId,
    IpAddress,
    UserAgent,
    ErrorMessage,
    RequestSizeBytes,
    ResponseSizeBytes,
}

#[derive(DeriveIden, Clone, Copy)]
enum DeviceStateHistory {
    Table,
    Id,
    Timestamp,
    DeviceId,
    PreviousState,
    NewState,
    ChangedBy,
    Reason,
    ExtraData,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobOutcomes {
    Table,
    Id,
    Timestamp,
    JobId,
    JobType,
    DeviceId,
    Status,
    DurationMs,
    ErrorCode,
    ErrorMessage,
    RetryCount,
    InitiatedBy,
    ExtraData,
}

#[derive(DeriveIden, Clone, Copy)]
enum ErrorLogs {
    Table,
    Id,
    Timestamp,
    Category,
    Severity,
    ErrorCode,
    ErrorMessage,
    StackTrace,
    Endpoint,
    UserId,
    DeviceId,
    Context,
    Resolved,
    ResolvedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum UserActivities {
    Table,
    Id,
    Timestamp,
    UserId,
    SessionId,
    ActivityType,
    PageUrl,
    ElementId,
    SearchQuery,
    ExtraData,
    DurationMs,
}

fn id<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().auto_increment().primary_key().to_owned()
}

fn at<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

fn index<T: IntoIden + Copy + 'static>(name: &str, table: T, cols: &[T]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for &col in cols {
        index.col(col);
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ApiRequestLogs as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .col(id(L::Id))
                    .col(at(L::Timestamp))
                    .col(ColumnDef::new(L::Endpoint).string_len(255).not_null())
                    .col(ColumnDef::new(L::Method).string_len(10).not_null())
                    .col(ColumnDef::new(L::StatusCode).integer().not_null())
                    .col(ColumnDef::new(L::ResponseTimeMs).double().not_null())
                    .col(ColumnDef::new(L::LatencyBucket).integer().not_null())
                    .col(ColumnDef::new(L::UserId).string_len(255).null())
                    .col(ColumnDef::new(L::IpAddress).string_len(45).null())
                    .col(ColumnDef::new(L::UserAgent).string_len(500).null())
                    .col(ColumnDef::new(L::ErrorMessage).text().null())
                    .col(ColumnDef::new(L::RequestSizeBytes).big_integer().null())
                    .col(ColumnDef::new(L::ResponseSizeBytes).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Performance queries read rollups; raw logs are read only for the partial hour at the
        // start of a window, and deleted by age. Every further index would be paid on each
        // logged request.
        manager
            .create_index(index("idx_api_request_logs_timestamp_endpoint", L::Table, &[L::Timestamp, L::Endpoint]))
            .await?;

        use DeviceStateHistory as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(id(S::Id))
                    .col(at(S::Timestamp))
                    .col(ColumnDef::new(S::DeviceId).string_len(255).not_null())
                    .col(ColumnDef::new(S::PreviousState).string_len(50).null())
                    .col(ColumnDef::new(S::NewState).string_len(50).not_null())
                    .col(ColumnDef::new(S::ChangedBy).string_len(255).null())
                    .col(ColumnDef::new(S::Reason).string_len(500).null())
                    .col(ColumnDef::new(S::ExtraData).json_binary().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_device_state_history_device_timestamp", S::Table, &[S::DeviceId, S::Timestamp]))
            .await?;
        manager.create_index(index("idx_device_state_history_timestamp", S::Table, &[S::Timestamp])).await?;

        use JobOutcomes as J;
        manager
            .create_table(
                Table::create()
                    .table(J::Table)
                    .col(id(J::Id))
                    .col(at(J::Timestamp))
                    .col(ColumnDef::new(J::JobId).string_len(255).not_null())
                    .col(ColumnDef::new(J::JobType).string_len(100).not_null())
                    .col(ColumnDef::new(J::DeviceId).string_len(255).null())
                    .col(ColumnDef::new(J::Status).string_len(50).not_null())
                    .col(ColumnDef::new(J::DurationMs).big_integer().null())
                    .col(ColumnDef::new(J::ErrorCode).string_len(50).null())
                    .col(ColumnDef::new(J::ErrorMessage).text().null())
                    .col(ColumnDef::new(J::RetryCount).big_integer().not_null().default(0))
                    .col(ColumnDef::new(J::InitiatedBy).string_len(255).null())
                    .col(ColumnDef::new(J::ExtraData).json_binary().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_job_outcomes_timestamp_type", J::Table, &[J::Timestamp, J::JobType, J::Status]))
            .await?;
        manager.create_index(index("idx_job_outcomes_job_id", J::Table, &[J::JobId])).await?;
        manager.create_index(index("idx_job_outcomes_device_id", J::Table, &[J::DeviceId])).await?;

        use ErrorLogs as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .col(id(E::Id))
                    .col(at(E::Timestamp))
                    .col(ColumnDef::new(E::Category).string_len(50).not_null())
                    .col(ColumnDef::new(E::Severity).string_len(20).not_null())
                    .col(ColumnDef::new(E::ErrorCode).string_len(50).null())
                    .col(ColumnDef::new(E::ErrorMessage).text().not_null())
                    .col(ColumnDef::new(E::StackTrace).text().null())
                    .col(ColumnDef::new(E::Endpoint).string_len(255).null())
                    .col(ColumnDef::new(E::UserId).string_len(255).null())
                    .col(ColumnDef::new(E::DeviceId).string_len(255).null())
                    .col(ColumnDef::new(E::Context).json_binary().not_null())
                    .col(ColumnDef::new(E::Resolved).boolean().not_null().default(false))
                    .col(ColumnDef::new(E::ResolvedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_error_logs_timestamp_category",
                E::Table,
                &[E::Timestamp, E::Category, E::Severity],
            ))
            .await?;
        manager.create_index(index("idx_error_logs_error_code", E::Table, &[E::ErrorCode])).await?;

        use UserActivities as U;
        manager
            .create_table(
                Table::create()
                    .table(U::Table)
                    .col(id(U::Id))
                    .col(at(U::Timestamp))
                    .col(ColumnDef::new(U::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(U::SessionId).string_len(255).null())
                    .col(ColumnDef::new(U::ActivityType).string_len(50).not_null())
                    .col(ColumnDef::new(U::PageUrl).string_len(500).null())
                    .col(ColumnDef::new(U::ElementId).string_len(255).null())
                    .col(ColumnDef::new(U::SearchQuery).text().null())
                    .col(ColumnDef::new(U::ExtraData).json_binary().not_null())
                    .col(ColumnDef::new(U::DurationMs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_user_activities_user_timestamp", U::Table, &[U::UserId, U::Timestamp])).await?;
        manager
            .create_index(index("idx_user_activities_timestamp_type", U::Table, &[U::Timestamp, U::ActivityType]))
            .await?;
        manager.create_index(index("idx_user_activities_session_id", U::Table, &[U::SessionId])).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UserActivities::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ErrorLogs::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(JobOutcomes::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(DeviceStateHistory::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ApiRequestLogs::Table).to_owned()).await
    }
}
