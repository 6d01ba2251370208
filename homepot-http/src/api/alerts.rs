//! Alerting over HTTP: rules, silences and receivers (admin to change; receivers, whose URLs
//! may carry secrets, admin to read), alerts with their timelines, acknowledgement, and the
//! delivery state of every notification. Bodies are read by `homepot-core`'s alerting
//! readers, so every bad field is a 422 at its location.

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::ErrorKind;
use homepot_core::alert::{Alert, AlertEvent, AlertState, DeliveryState, Notification, Severity};
use homepot_core::ingest::json_reader::parse_object;
use homepot_storage::alerts::{AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use super::{ApiTags, AppState};
use crate::auth::ApiKeyAuth;
use crate::body::JsonBody;
use crate::error::ApiError;

/// Alerting (read keys read alerts, rules and silences; admin keys change them).
#[derive(Debug, Default)]
pub(crate) struct AlertsApi;

type Document = JsonBody<BTreeMap<String, Value>>;

/// A body as a JSON object, or 422 at its place; the alerting readers take it from there.
fn document(bytes: &[u8]) -> Result<Value, ApiError> {
    parse_object(bytes).map(Value::Object).map_err(|e| ApiError::invalid("body", e))
}

/// Configuration documents of one kind.
#[derive(Debug, Object)]
struct ConfigList {
    /// The documents, ordered by id, as they are written.
    items: Vec<Value>,
    /// How many.
    count: usize,
}

/// Alerts, newest start first.
#[derive(Debug, Object)]
struct AlertList {
    /// Each alert: `id`, `rule_id`, `subject`, `device_id`, `state` (`pending`, `firing`,
    /// `resolved`), `severity`, `labels`, `summary`, `value`, `started_at`, `fired_at`,
    /// `resolved_at`, `ack`, `updated_at`.
    alerts: Vec<Value>,
    /// How many.
    count: usize,
}

/// One alert and its timeline.
#[derive(Debug, Object)]
struct AlertDetail {
    /// The alert.
    alert: Value,
    /// What happened to it, oldest first: `pending`, `firing`, `acknowledged`, `resolved`.
    timeline: Vec<Value>,
}

/// Notifications, newest first.
#[derive(Debug, Object)]
struct NotificationList {
    /// Each notification: its stable `id`, `alert_id`, `receiver_id`, `kind` (`firing`,
    /// `repeat`, `resolved`), `state` (`pending`, `delivered`, `failed`, `suppressed`),
    /// `attempts`, `next_attempt_at`, `last_error`, `created_at`, `delivered_at`.
    notifications: Vec<Value>,
    /// How many.
    count: usize,
}

/// Who acknowledges, and why.
#[derive(Debug, Object)]
struct AckRequest {
    /// Who acknowledges.
    #[oai(validator(min_length = 1, max_length = 200))]
    by: String,
    /// What is being done about it.
    #[oai(skip_serializing_if_is_none, validator(max_length = 2000))]
    note: Option<String>,
}

#[derive(Debug, ApiResponse)]
enum Created {
    /// Stored.
    #[oai(status = 201)]
    Created(Json<Value>),
}

#[derive(Debug, ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

fn alert_json(alert: &Alert) -> Value {
    serde_json::to_value(alert).unwrap_or_default()
}

fn event_json(event: &AlertEvent) -> Value {
    serde_json::to_value(event).unwrap_or_default()
}

fn notification_json(n: &Notification) -> Value {
    let mut value = serde_json::to_value(n).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        // The alert snapshot is the alert's business; the listing says where delivery stands.
        map.remove("alert");
    }
    value
}

fn one_of<T>(
    parameter: &str,
    raw: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
    known: &str,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| {
        parse(raw).ok_or_else(|| {
            ApiError::invalid_field("query", parameter, ErrorKind::NotOneOf, format!("expected one of: {known}"))
        })
    })
    .transpose()
}

async fn list(state: &AppState, kind: ConfigKind) -> Result<Json<ConfigList>, ApiError> {
    let items: Vec<Value> = state.homepot.alert_configs(kind).await?.iter().map(AlertConfig::to_json).collect();
    Ok(Json(ConfigList { count: items.len(), items }))
}

#[OpenApi]
impl AlertsApi {
    /// Every alert rule. Kinds: `threshold` (a series field against `value`, optional `clear`
    /// for hysteresis, `for`), `absent` (no health check for `heartbeats` intervals),
    /// `unhealthy` (`count` unhealthy checks in a row), `rate` (change `per_hour` over a
    /// `window`) and `service` (a route's `error_percent`, `server_error_percent` or `p95_ms`
    /// over a `window`). Needs an admin or read key.
    #[oai(path = "/api/v1/alerts/rules", method = "get", tag = "ApiTags::Alerts")]
    async fn rules(&self, state: Data<&Arc<AppState>>, auth: ApiKeyAuth) -> Result<Json<ConfigList>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        list(&state, ConfigKind::Rule).await
    }

    /// Create a rule; 409 when its id is taken (replace it with `PUT`). Every unknown,
    /// missing or contradictory field (`clear` on the alerting side of `value`, say) is a
    /// 422 at its location. Needs an admin key.
    #[oai(path = "/api/v1/alerts/rules", method = "post", tag = "ApiTags::Alerts")]
    async fn create_rule(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: Document,
    ) -> Result<Created, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let document = document(&body.bytes)?;
        if let Some(id) = document.get("id").and_then(Value::as_str)
            && state.homepot.alert_rule(id).await.is_ok()
        {
            return Err(ApiError::conflict(format!("Alert rule '{id}' already exists; PUT replaces it")));
        }
        let rule = state.homepot.put_alert_rule(&document, None).await?;
        Ok(Created::Created(Json(rule.to_json())))
    }

    /// One rule. Needs an admin or read key.
    #[oai(path = "/api/v1/alerts/rules/:rule_id", method = "get", tag = "ApiTags::Alerts")]
    async fn rule(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Rule id.
        rule_id: Path<String>,
    ) -> Result<Json<Value>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        Ok(Json(state.homepot.alert_rule(&rule_id).await?.to_json()))
    }

    /// Create or replace a rule. Open alerts of the rule keep their history and are judged by
    /// the new version from the next evaluation. Needs an admin key.
    #[oai(path = "/api/v1/alerts/rules/:rule_id", method = "put", tag = "ApiTags::Alerts")]
    async fn put_rule(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Rule id.
        rule_id: Path<String>,
        body: Document,
    ) -> Result<Json<Value>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let rule = state.homepot.put_alert_rule(&document(&body.bytes)?, Some(&rule_id)).await?;
        Ok(Json(rule.to_json()))
    }

    /// Delete a rule; its open alerts resolve at the next evaluation. Needs an admin key.
    #[oai(path = "/api/v1/alerts/rules/:rule_id", method = "delete", tag = "ApiTags::Alerts")]
    async fn delete_rule(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Rule id.
        rule_id: Path<String>,
    ) -> Result<Deleted, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        state.homepot.delete_alert_config(ConfigKind::Rule, &rule_id).await?;
        Ok(Deleted::Deleted)
    }

    /// Every silence, past ones included until deleted. Needs an admin or read key.
    #[oai(path = "/api/v1/alerts/silences", method = "get", tag = "ApiTags::Alerts")]
    async fn silences(&self, state: Data<&Arc<AppState>>, auth: ApiKeyAuth) -> Result<Json<ConfigList>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        list(&state, ConfigKind::Silence).await
    }

    /// Silence matching alerts: `matchers` (`label=value` or `label!=value`, all must match
    /// an alert's labels, which include `alertname`, `severity`, `subject` and `device_id`),
    /// `starts_at` (default now) and `ends_at` (RFC 3339), optional `created_by` and
    /// `comment`. Silenced alerts are still recorded; their notifications are kept as
    /// `suppressed`. Needs an admin key.
    #[oai(path = "/api/v1/alerts/silences", method = "post", tag = "ApiTags::Alerts")]
    async fn create_silence(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: Document,
    ) -> Result<Created, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let silence = state.homepot.add_silence(&document(&body.bytes)?).await?;
        Ok(Created::Created(Json(AlertConfig::Silence(silence).to_json())))
    }

    /// Delete a silence: notifications resume from the next evaluation. Needs an admin key.
    #[oai(path = "/api/v1/alerts/silences/:silence_id", method = "delete", tag = "ApiTags::Alerts")]
    async fn delete_silence(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Silence id.
        silence_id: Path<String>,
    ) -> Result<Deleted, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        state.homepot.delete_alert_config(ConfigKind::Silence, &silence_id).await?;
        Ok(Deleted::Deleted)
    }

    /// Every receiver with its route. Needs an admin key.
    #[oai(path = "/api/v1/alerts/receivers", method = "get", tag = "ApiTags::Alerts")]
    async fn receivers(&self, state: Data<&Arc<AppState>>, auth: ApiKeyAuth) -> Result<Json<ConfigList>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        list(&state, ConfigKind::Receiver).await
    }

    /// Create or replace a receiver: `id`, `kind` (`webhook`, the default, or `alertmanager`),
    /// `url` (http or https; an Alertmanager's base URL), and its route: `severities` (all
    /// when absent), `matchers`, `repeat_interval` (default `4h`; `0` never repeats) and
    /// `send_resolved` (default true). Needs an admin key.
    #[oai(path = "/api/v1/alerts/receivers", method = "post", tag = "ApiTags::Alerts")]
    async fn create_receiver(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        body: Document,
    ) -> Result<Created, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let receiver = state.homepot.put_receiver(&document(&body.bytes)?, None).await?;
        Ok(Created::Created(Json(receiver.to_json())))
    }

    /// Create or replace the receiver with this id. Needs an admin key.
    #[oai(path = "/api/v1/alerts/receivers/:receiver_id", method = "put", tag = "ApiTags::Alerts")]
    async fn put_receiver(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Receiver id.
        receiver_id: Path<String>,
        body: Document,
    ) -> Result<Json<Value>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let receiver = state.homepot.put_receiver(&document(&body.bytes)?, Some(&receiver_id)).await?;
        Ok(Json(receiver.to_json()))
    }

    /// Delete a receiver; its undelivered notifications fail. Needs an admin key.
    #[oai(path = "/api/v1/alerts/receivers/:receiver_id", method = "delete", tag = "ApiTags::Alerts")]
    async fn delete_receiver(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Receiver id.
        receiver_id: Path<String>,
    ) -> Result<Deleted, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        state.homepot.delete_alert_config(ConfigKind::Receiver, &receiver_id).await?;
        Ok(Deleted::Deleted)
    }

    /// Alerts, newest start first, optionally only in one `state` (`pending`, `firing`,
    /// `resolved`), of one `severity`, about one `device_id` or from one `rule_id`. Needs an
    /// admin or read key.
    #[oai(path = "/api/v1/alerts", method = "get", tag = "ApiTags::Alerts")]
    #[allow(clippy::too_many_arguments)]
    async fn alerts(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Only alerts in this state.
        #[oai(name = "state")]
        alert_state: Query<Option<String>>,
        /// Only alerts of this severity.
        severity: Query<Option<String>>,
        /// Only alerts about this device.
        device_id: Query<Option<String>>,
        /// Only alerts from this rule.
        rule_id: Query<Option<String>>,
        /// At most this many (default 100).
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<usize>,
    ) -> Result<Json<AlertList>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let query = AlertQuery {
            state: one_of("state", alert_state.as_deref(), AlertState::parse, "pending, firing, resolved")?,
            severity: one_of(
                "severity",
                severity.as_deref(),
                Severity::parse,
                "critical, major, minor, warning, info",
            )?,
            device_id: device_id.0,
            rule_id: rule_id.0,
            limit: limit.0,
        };
        let alerts: Vec<Value> = state.homepot.alerts(&query).await?.iter().map(alert_json).collect();
        Ok(Json(AlertList { count: alerts.len(), alerts }))
    }

    /// The delivery state of notifications, newest first, optionally only in one `state` or
    /// about one `alert_id`. Needs an admin key.
    #[oai(path = "/api/v1/alerts/notifications", method = "get", tag = "ApiTags::Alerts")]
    async fn notifications(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Only notifications in this delivery state.
        #[oai(name = "state")]
        delivery: Query<Option<String>>,
        /// Only notifications about this alert.
        alert_id: Query<Option<String>>,
        /// At most this many (default 100).
        #[oai(default = "default_limit", validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<usize>,
    ) -> Result<Json<NotificationList>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let query = NotificationQuery {
            state: one_of(
                "state",
                delivery.as_deref(),
                DeliveryState::parse,
                "pending, delivered, failed, suppressed",
            )?,
            alert_id: alert_id.0,
            limit: limit.0,
        };
        let notifications: Vec<Value> =
            state.homepot.alert_notifications(&query).await?.iter().map(notification_json).collect();
        Ok(Json(NotificationList { count: notifications.len(), notifications }))
    }

    /// One alert with its timeline. Needs an admin or read key.
    #[oai(path = "/api/v1/alerts/:alert_id", method = "get", tag = "ApiTags::Alerts")]
    async fn alert(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Alert id.
        alert_id: Path<String>,
    ) -> Result<Json<AlertDetail>, ApiError> {
        state.authenticate(&auth).await?.require_reader()?;
        let (alert, timeline) = state.homepot.alert(&alert_id).await?;
        Ok(Json(AlertDetail { alert: alert_json(&alert), timeline: timeline.iter().map(event_json).collect() }))
    }

    /// Acknowledge an open alert: repeats stop, the alert keeps its state until it resolves
    /// (and the resolution is still sent). 409 for a resolved alert. Needs an admin key.
    #[oai(path = "/api/v1/alerts/:alert_id/ack", method = "post", tag = "ApiTags::Alerts")]
    async fn ack(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// Alert id.
        alert_id: Path<String>,
        body: JsonBody<AckRequest>,
    ) -> Result<Json<Value>, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let document = document(&body.bytes)?;
        let by = document.get("by").and_then(Value::as_str).filter(|s| !s.trim().is_empty() && s.len() <= 200);
        let Some(by) = by else {
            return Err(ApiError::invalid_field(
                "body",
                "by",
                ErrorKind::Missing,
                "who acknowledges: 1 to 200 characters",
            ));
        };
        let note = match document.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(note)) if note.len() <= 2000 => Some(note.clone()),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "body",
                    "note",
                    ErrorKind::NotString,
                    "a string of at most 2000 characters",
                ));
            }
        };
        let alert = state.homepot.ack_alert(&alert_id, by.to_owned(), note).await?;
        Ok(Json(alert_json(&alert)))
    }
}

fn default_limit() -> usize {
    100
}

/// An alert change as `/ws` and the SSE stream carry it: `{"type": "alert_firing", "alert": {...}}`
/// (`alert_pending`, `alert_firing`, `alert_acknowledged`, `alert_resolved`).
pub(crate) fn update_json(update: &homepot_engine::AlertUpdate) -> Value {
    let event = serde_json::to_value(update.event).unwrap_or_default();
    json!({"type": format!("alert_{}", event.as_str().unwrap_or_default()), "alert": alert_json(&update.alert)})
}
