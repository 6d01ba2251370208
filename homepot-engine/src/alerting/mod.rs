//! Alerting: rules evaluated on a timer against the live view, the device registry, what
//! health checks showed and the request log; alerts stored with every transition; and a
//! durable outbox that delivers notifications to webhooks and Alertmanagers.
//!
//! Ingest only touches [`Alerting::observe_health`] (one map update); evaluation runs in its
//! own task, so it never holds up a write. A transition, its timeline entry and its
//! notifications are stored in one transaction before anyone is told (`/ws`, SSE, receivers),
//! so a crash loses none of them and a restart re-fires nothing: open alerts, pending ones
//! with their start included, are loaded back at start.

mod deliver;
mod evaluate;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use homepot_core::alert::{Ack, Alert, AlertEvent, EventKind, Receiver, Rule, Silence};
use homepot_core::node::Thresholds;
use homepot_core::{Device, ErrorKind, FieldError, LocSegment, ValidationErrors};
use homepot_storage::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use homepot_storage::{StorageError, Store};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, broadcast};

pub(crate) use deliver::deliver_forever;
pub use deliver::{DeliveryPolicy, HttpNotifier, Notifier, SendError};
pub use evaluate::CycleReport;

use crate::EngineError;

/// How alerting runs.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// How often every rule is evaluated.
    pub evaluation_interval: Duration,
    /// Rules from a rules file: stored (replacing those of the same id) at every start.
    pub rules: Vec<Rule>,
    /// Store the node threshold rules (`node-cpu-high`, ...) made from the node thresholds.
    pub node_rules: bool,
    /// How notifications are delivered.
    pub delivery: DeliveryPolicy,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            evaluation_interval: Duration::from_secs(10),
            rules: Vec::new(),
            node_rules: true,
            delivery: DeliveryPolicy::default(),
        }
    }
}

/// The node thresholds as threshold rules, so that they alert, notify and keep history like
/// any other rule.
pub fn node_rules(t: &Thresholds) -> Vec<Rule> {
    let rule = |id: &str, name: &str, field: &str, op: &str, value: f64| {
        Rule::parse(&json!({
            "id": id, "kind": "threshold", "severity": "warning",
            "series": {"name": name, "field": field}, "op": op, "value": value,
            "annotation": format!("{{{{device_id}}}} {} at {{{{value}}}} ({op} {{{{threshold}}}})", field.replace('_', " ")),
        }))
        .expect("the node rules are valid")
    };
    vec![
        rule("node-cpu-high", "node_cpu", "usage_percent", ">", t.cpu_percent),
        rule("node-memory-high", "node_memory", "usage_percent", ">", t.memory_percent),
        rule("node-flash-high", "node_flash", "usage_percent", ">", t.flash_percent),
        rule("node-signal-low", "node_network", "signal_quality_percent", "<", t.signal_quality_percent),
    ]
}

/// An alert that changed, as `/ws` and the SSE stream announce it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertUpdate {
    /// What happened.
    pub event: EventKind,
    /// The alert after it.
    pub alert: Alert,
}

/// What a device's health checks have shown since start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    pub(crate) last_seen: DateTime<Utc>,
    /// Unhealthy checks in a row; `None` until a check was seen.
    pub(crate) unhealthy_streak: Option<u32>,
}

/// Maps keyed by text that clients choose: foldhash, as the rollups use; a cycle looks up
/// every subject of every rule, so the hasher shows.
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V>;

/// Open alerts by rule, then subject: at most one each.
#[derive(Debug, Default)]
pub(crate) struct OpenAlerts(Map<String, Map<String, Alert>>);

impl OpenAlerts {
    pub(crate) fn of_rule(&self, rule: &str) -> Option<&Map<String, Alert>> {
        self.0.get(rule)
    }

    pub(crate) fn put(&mut self, alert: Alert) {
        self.0.entry_ref(alert.rule_id.as_str()).or_default().insert(alert.subject.clone(), alert);
    }

    pub(crate) fn remove(&mut self, alert: &Alert) {
        if let Some(of_rule) = self.0.get_mut(alert.rule_id.as_str()) {
            of_rule.remove(alert.subject.as_str());
            if of_rule.is_empty() {
                self.0.remove(alert.rule_id.as_str());
            }
        }
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Alert> {
        self.0.values().flat_map(Map::values)
    }

    pub(crate) fn rules(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

impl FromIterator<Alert> for OpenAlerts {
    fn from_iter<I: IntoIterator<Item = Alert>>(alerts: I) -> Self {
        let mut open = Self::default();
        for alert in alerts {
            open.put(alert);
        }
        open
    }
}

/// The device registry as last read, indexed by id.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) devices: Vec<Device>,
    index: Map<String, usize>,
}

impl Registry {
    pub(crate) fn new(devices: Vec<Device>) -> Self {
        let index = devices.iter().enumerate().map(|(i, d)| (d.id.to_string(), i)).collect();
        Self { devices, index }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Device> {
        self.index.get(id).map(|i| &self.devices[*i])
    }

    pub(crate) fn label(&self, id: Option<&str>, key: &str) -> Option<&str> {
        id.and_then(|id| self.get(id)).and_then(|d| d.labels.as_map().get(key)).map(String::as_str)
    }
}

/// Recent readings by rule, then subject, for rate rules: (time ns, value).
pub(crate) type Rings = Map<String, Map<String, VecDeque<(i64, f64)>>>;

/// What the evaluator keeps between cycles.
#[derive(Debug, Default)]
pub(crate) struct EvalState {
    pub(crate) open: OpenAlerts,
    pub(crate) rings: Rings,
    /// The registry, and when it was read.
    pub(crate) registry: Option<(DateTime<Utc>, Arc<Registry>)>,
    /// When each (alert, receiver) was last sent a firing or repeat message.
    pub(crate) last_sent: Map<(String, String), DateTime<Utc>>,
    /// Whether devices' last checks were read from storage yet.
    pub(crate) seeded: bool,
}

/// The alerting service inside the engine.
#[derive(Debug)]
pub(crate) struct Alerting {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) settings: AlertSettings,
    /// How often devices are expected to report (for absence rules).
    pub(crate) heartbeat_interval: Duration,
    /// Until this instant a series missing from the live view says nothing: the view starts
    /// empty and fills as devices report, so only after one live retention is absence news.
    pub(crate) no_data_known_from: DateTime<Utc>,
    pub(crate) observed: Mutex<Map<String, Observed>>,
    pub(crate) state: tokio::sync::Mutex<EvalState>,
    pub(crate) updates: broadcast::Sender<AlertUpdate>,
    /// Wakes the delivery task when notifications were queued.
    pub(crate) queued: Notify,
}

/// A fresh random id: 128 bits as hex.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn not_found(what: &str, id: &str) -> EngineError {
    EngineError::NotFound(format!("{what} '{id}' not found"))
}

fn invalid_body(errors: ValidationErrors) -> EngineError {
    EngineError::invalid("body", errors)
}

impl Alerting {
    /// Stores the rules file's and node rules, and loads the open alerts.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        settings: AlertSettings,
        thresholds: &Thresholds,
        heartbeat_interval: Duration,
        no_data_known_from: DateTime<Utc>,
    ) -> Result<Self, StorageError> {
        let mut rules = if settings.node_rules { node_rules(thresholds) } else { Vec::new() };
        rules.extend(settings.rules.iter().cloned());
        for rule in rules {
            store.put_alert_config(&AlertConfig::Rule(rule)).await?;
        }
        let state = EvalState { open: store.open_alerts().await?.into_iter().collect(), ..EvalState::default() };
        Ok(Self {
            store,
            settings,
            heartbeat_interval,
            no_data_known_from,
            observed: Mutex::default(),
            state: tokio::sync::Mutex::new(state),
            updates: broadcast::channel(1_024).0,
            queued: Notify::new(),
        })
    }

    /// A health check from `device` arrived at `at`: what absence and unhealthy rules read.
    pub(crate) fn observe_health(&self, device: &str, is_healthy: bool, at: DateTime<Utc>) {
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = observed.entry_ref(device).or_insert(Observed { last_seen: at, unhealthy_streak: None });
        entry.last_seen = entry.last_seen.max(at);
        entry.unhealthy_streak = Some(if is_healthy { 0 } else { entry.unhealthy_streak.unwrap_or(0) + 1 });
    }

    /// The registry changed: read it again at the next cycle.
    pub(crate) async fn devices_changed(&self) {
        self.state.lock().await.registry = None;
    }

    fn announce(&self, updates: impl IntoIterator<Item = AlertUpdate>) {
        for update in updates {
            // No subscriber is fine: updates are for whoever watches now.
            let _ = self.updates.send(update);
        }
    }

    // ---- configuration ----

    pub(crate) async fn configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, EngineError> {
        Ok(self.store.alert_configs(kind).await?)
    }

    async fn config(&self, kind: ConfigKind, id: &str) -> Result<Option<AlertConfig>, EngineError> {
        Ok(self.configs(kind).await?.into_iter().find(|c| c.id() == id))
    }

    /// Reads and stores a rule; `id` (from the path) must agree with the document's.
    pub(crate) async fn put_rule(&self, document: &serde_json::Value, id: Option<&str>) -> Result<Rule, EngineError> {
        let mut document = document.clone();
        if let (Some(id), Some(map)) = (id, document.as_object_mut()) {
            match map.get("id").and_then(|v| v.as_str()) {
                Some(given) if given != id => {
                    return Err(invalid_body(ValidationErrors::single(FieldError::new(
                        vec![LocSegment::from("id")],
                        ErrorKind::Inconsistent,
                        format!("the body's id '{given}' differs from the path's '{id}'"),
                    ))));
                }
                _ => {
                    map.insert("id".into(), json!(id));
                }
            }
        }
        let rule = Rule::parse(&document).map_err(invalid_body)?;
        self.store.put_alert_config(&AlertConfig::Rule(rule.clone())).await?;
        tracing::info!(rule = %rule.id, kind = rule.kind.name(), "alert rule stored");
        Ok(rule)
    }

    pub(crate) async fn rule(&self, id: &str) -> Result<Rule, EngineError> {
        match self.config(ConfigKind::Rule, id).await? {
            Some(AlertConfig::Rule(rule)) => Ok(rule),
            _ => Err(not_found("Alert rule", id)),
        }
    }

    pub(crate) async fn delete(&self, kind: ConfigKind, id: &str) -> Result<(), EngineError> {
        self.store.delete_alert_config(kind, id).await.map_err(|e| match e {
            StorageError::NotFound { .. } => not_found(
                match kind {
                    ConfigKind::Rule => "Alert rule",
                    ConfigKind::Silence => "Silence",
                    ConfigKind::Receiver => "Receiver",
                },
                id,
            ),
            other => other.into(),
        })
    }

    pub(crate) async fn add_silence(
        &self,
        document: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Silence, EngineError> {
        let silence = Silence::parse(document, new_id(), now).map_err(invalid_body)?;
        self.store.put_alert_config(&AlertConfig::Silence(silence.clone())).await?;
        tracing::info!(silence = %silence.id, until = %silence.ends_at, "silence stored");
        Ok(silence)
    }

    pub(crate) async fn put_receiver(
        &self,
        document: &serde_json::Value,
        id: Option<&str>,
    ) -> Result<Receiver, EngineError> {
        let receiver = Receiver::parse(document, id.map(str::to_owned)).map_err(invalid_body)?;
        if let Some(id) = id.filter(|id| *id != receiver.id) {
            return Err(invalid_body(ValidationErrors::single(FieldError::new(
                vec![LocSegment::from("id")],
                ErrorKind::Inconsistent,
                format!("the body's id '{}' differs from the path's '{id}'", receiver.id),
            ))));
        }
        self.store.put_alert_config(&AlertConfig::Receiver(receiver.clone())).await?;
        tracing::info!(receiver = %receiver.id, url = %receiver.url, "alert receiver stored");
        Ok(receiver)
    }

    // ---- alerts ----

    pub(crate) async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, EngineError> {
        Ok(self.store.alerts(query).await?)
    }

    pub(crate) async fn timeline(&self, id: &str) -> Result<(Alert, Vec<AlertEvent>), EngineError> {
        self.store.alert_timeline(id).await?.ok_or_else(|| not_found("Alert", id))
    }

    /// Acknowledges an open alert: repeats stop; it still resolves and says so.
    pub(crate) async fn ack(
        &self,
        id: &str,
        by: String,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Alert, EngineError> {
        let mut state = self.state.lock().await;
        let Some(open) = state.open.values().find(|a| a.id == id) else {
            let (alert, _) = self.timeline(id).await?;
            return Err(EngineError::Conflict(format!(
                "Alert '{id}' is {} and cannot be acknowledged",
                alert.state.as_str()
            )));
        };
        let mut alert = open.clone();
        alert.ack = Some(Ack { by: by.clone(), note: note.clone(), at: now });
        alert.updated_at = now;
        let event = AlertEvent {
            alert_id: alert.id.clone(),
            at: now,
            kind: EventKind::Acknowledged,
            value: alert.value,
            note: Some(match &note {
                Some(note) => format!("{by}: {note}"),
                None => by.clone(),
            }),
        };
        let change =
            AlertChange { alert: alert.clone(), discard: false, event: Some(event), notifications: Vec::new() };
        self.store.apply_alert_changes(&[change]).await?;
        state.open.put(alert.clone());
        drop(state);
        tracing::info!(alert = id, by, "alert acknowledged");
        self.announce([AlertUpdate { event: EventKind::Acknowledged, alert: alert.clone() }]);
        Ok(alert)
    }

    pub(crate) async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<homepot_core::alert::Notification>, EngineError> {
        Ok(self.store.notifications(query).await?)
    }
}
