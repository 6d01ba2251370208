use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Alerting: configuration documents, alerts (at most one open per rule and subject, by a
/// partial unique index), their timelines and the notification outbox. Each row keeps its
/// whole record as a JSON document beside the columns that select it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let serial = match manager.get_database_backend() {
            DbBackend::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let db = manager.get_connection();
        for statement in [
            "CREATE TABLE alert_configs (kind VARCHAR(16) NOT NULL, id VARCHAR(64) NOT NULL, document TEXT NOT NULL, \
             PRIMARY KEY (kind, id))"
                .to_owned(),
            "CREATE TABLE alerts (id VARCHAR(64) NOT NULL PRIMARY KEY, rule_id VARCHAR(64) NOT NULL, \
             subject TEXT NOT NULL, state VARCHAR(16) NOT NULL, severity VARCHAR(16) NOT NULL, device_id TEXT NULL, \
             started_us BIGINT NOT NULL, document TEXT NOT NULL)"
                .to_owned(),
            "CREATE UNIQUE INDEX ux_alerts_open ON alerts (rule_id, subject) WHERE state <> 'resolved'".to_owned(),
            "CREATE INDEX ix_alerts_started ON alerts (started_us, id)".to_owned(),
            "CREATE INDEX ix_alerts_device ON alerts (device_id, started_us)".to_owned(),
            format!("CREATE TABLE alert_events (seq {serial}, alert_id VARCHAR(64) NOT NULL, document TEXT NOT NULL)"),
            "CREATE INDEX ix_alert_events_alert ON alert_events (alert_id, seq)".to_owned(),
            format!(
                "CREATE TABLE alert_notifications (seq {serial}, id TEXT NOT NULL UNIQUE, \
                 alert_id VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL, document TEXT NOT NULL)"
            ),
            "CREATE INDEX ix_alert_notifications_state ON alert_notifications (state, seq)".to_owned(),
            "CREATE INDEX ix_alert_notifications_alert ON alert_notifications (alert_id, seq)".to_owned(),
        ] {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}
