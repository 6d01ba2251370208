//! Alerting's tables. Every row keeps its record whole as a JSON document; the columns beside
//! it exist to select rows. A batch of alert changes is one transaction, and the partial
//! unique index on open alerts turns a second open alert of a rule and subject into a
//! conflict.

use async_trait::async_trait;
use homepot_core::alert::{Alert, AlertEvent, DeliveryState, Notification};
use homepot_storage::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use homepot_storage::{AlertStore, StorageError};
use sea_orm::{ConnectionTrait, SqlErr, Statement, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::sql::{numbered, row_limit};

fn to_text(record: &impl Serialize) -> Result<String, StorageError> {
    serde_json::to_string(record).map_err(StorageError::backend)
}

fn from_text<T: DeserializeOwned>(text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::backend(format!("stored alerting record is invalid: {e}")))
}

fn limit_value(limit: usize) -> Value {
    i64::try_from(row_limit(limit)).unwrap_or(i64::MAX).into()
}

impl SeaOrmStore {
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        let backend = self.db.get_database_backend();
        Statement::from_sql_and_values(backend, numbered(backend, sql), values)
    }

    /// The `document` column of every row `sql` selects, read as `T`.
    async fn documents<T: DeserializeOwned>(&self, sql: &str, values: Vec<Value>) -> Result<Vec<T>, StorageError> {
        let rows = self.db.query_all(self.statement(sql, values)).await.map_err(db_error)?;
        rows.iter().map(|row| from_text(&row.try_get::<String>("", "document").map_err(db_error)?)).collect()
    }
}

/// `WHERE` clauses and their values for the optional filters, in order.
fn filters(conditions: &[(&str, Option<Value>)]) -> (String, Vec<Value>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut values = Vec::new();
    for (column, value) in conditions {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            values.push(value.clone());
        }
    }
    (sql, values)
}

#[async_trait]
impl AlertStore for SeaOrmStore {
    async fn put_alert_config(&self, config: &AlertConfig) -> Result<(), StorageError> {
        let values = vec![config.kind().as_str().into(), config.id().into(), config.to_json().to_string().into()];
        let sql = "INSERT INTO alert_configs (kind, id, document) VALUES (?, ?, ?) \
                   ON CONFLICT (kind, id) DO UPDATE SET document = excluded.document";
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        txn.execute(self.statement(sql, values)).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)
    }

    async fn delete_alert_config(&self, kind: ConfigKind, id: &str) -> Result<(), StorageError> {
        let sql = "DELETE FROM alert_configs WHERE kind = ? AND id = ?";
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let deleted =
            txn.execute(self.statement(sql, vec![kind.as_str().into(), id.into()])).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        if deleted.rows_affected() == 0 {
            return Err(StorageError::not_found(format!("{} '{id}'", kind.as_str())));
        }
        Ok(())
    }

    async fn alert_configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, StorageError> {
        let sql = "SELECT document FROM alert_configs WHERE kind = ? ORDER BY id";
        let documents: Vec<serde_json::Value> = self.documents(sql, vec![kind.as_str().into()]).await?;
        documents.iter().map(|d| AlertConfig::from_json(kind, d)).collect()
    }

    async fn apply_alert_changes(&self, changes: &[AlertChange]) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let run = |sql: &str, values: Vec<Value>| txn.execute(self.statement(sql, values));
        for change in changes {
            let alert = &change.alert;
            if change.discard {
                run("DELETE FROM alert_events WHERE alert_id = ?", vec![alert.id.as_str().into()])
                    .await
                    .map_err(db_error)?;
                run("DELETE FROM alerts WHERE id = ?", vec![alert.id.as_str().into()]).await.map_err(db_error)?;
            } else {
                let values = vec![
                    alert.id.as_str().into(),
                    alert.rule_id.as_str().into(),
                    alert.subject.as_str().into(),
                    alert.state.as_str().into(),
                    alert.severity.as_str().into(),
                    alert.device_id.clone().into(),
                    alert.started_at.timestamp_micros().into(),
                    to_text(alert)?.into(),
                ];
                run(
                    "INSERT INTO alerts (id, rule_id, subject, state, severity, device_id, started_us, document) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                     severity = excluded.severity, document = excluded.document",
                    values,
                )
                .await
                .map_err(|e| match e.sql_err() {
                    Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::conflict(format!(
                        "an open alert of rule '{}' for '{}'",
                        alert.rule_id, alert.subject
                    )),
                    _ => db_error(e),
                })?;
            }
            if let Some(event) = &change.event {
                run(
                    "INSERT INTO alert_events (alert_id, document) VALUES (?, ?)",
                    vec![event.alert_id.as_str().into(), to_text(event)?.into()],
                )
                .await
                .map_err(db_error)?;
            }
            for n in &change.notifications {
                run(
                    "INSERT INTO alert_notifications (id, alert_id, state, document) VALUES (?, ?, ?, ?)",
                    vec![n.id.as_str().into(), n.alert_id.as_str().into(), n.state.as_str().into(), to_text(n)?.into()],
                )
                .await
                .map_err(db_error)?;
            }
        }
        txn.commit().await.map_err(db_error)
    }

    async fn open_alerts(&self) -> Result<Vec<Alert>, StorageError> {
        self.documents("SELECT document FROM alerts WHERE state <> 'resolved'", Vec::new()).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StorageError> {
        let (conditions, mut values) = filters(&[
            ("state", query.state.map(|s| s.as_str().into())),
            ("severity", query.severity.map(|s| s.as_str().into())),
            ("device_id", query.device_id.clone().map(Into::into)),
            ("rule_id", query.rule_id.clone().map(Into::into)),
        ]);
        values.push(limit_value(query.limit));
        let sql = format!("SELECT document FROM alerts{conditions} ORDER BY started_us DESC, id DESC LIMIT ?");
        self.documents(&sql, values).await
    }

    async fn alert_timeline(&self, id: &str) -> Result<Option<(Alert, Vec<AlertEvent>)>, StorageError> {
        let Some(alert) = self.documents("SELECT document FROM alerts WHERE id = ?", vec![id.into()]).await?.pop()
        else {
            return Ok(None);
        };
        let events = self
            .documents("SELECT document FROM alert_events WHERE alert_id = ? ORDER BY seq", vec![id.into()])
            .await?;
        Ok(Some((alert, events)))
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<Notification>, StorageError> {
        let sql = "SELECT document FROM alert_notifications WHERE state = ? ORDER BY seq LIMIT ?";
        self.documents(sql, vec![DeliveryState::Pending.as_str().into(), limit_value(limit)]).await
    }

    async fn update_notification(&self, n: &Notification) -> Result<(), StorageError> {
        let sql = "UPDATE alert_notifications SET state = ?, document = ? WHERE id = ?";
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let values = vec![n.state.as_str().into(), to_text(n)?.into(), n.id.as_str().into()];
        let updated = txn.execute(self.statement(sql, values)).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(StorageError::not_found(format!("notification '{}'", n.id)));
        }
        Ok(())
    }

    async fn notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StorageError> {
        let (conditions, mut values) = filters(&[
            ("state", query.state.map(|s| s.as_str().into())),
            ("alert_id", query.alert_id.clone().map(Into::into)),
        ]);
        values.push(limit_value(query.limit));
        let sql = format!("SELECT document FROM alert_notifications{conditions} ORDER BY seq DESC LIMIT ?");
        self.documents(&sql, values).await
    }
}
