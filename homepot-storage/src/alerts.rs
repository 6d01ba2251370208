//! What alerting keeps: its configuration (rules, silences, receivers), the alerts with their
//! timelines, and the notification outbox. A transition, its timeline entry and its
//! notifications are one [`AlertChange`], stored atomically, so a crash can lose neither the
//! transition nor its messages.

use homepot_core::alert::{
    Alert, AlertEvent, AlertState, DeliveryState, Notification, Receiver, Rule, Severity, Silence,
};

/// One piece of alerting configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertConfig {
    /// A rule.
    Rule(Rule),
    /// A silence.
    Silence(Silence),
    /// A receiver with its route.
    Receiver(Receiver),
}

/// The kinds of [`AlertConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    /// Rules.
    Rule,
    /// Silences.
    Silence,
    /// Receivers.
    Receiver,
}

impl ConfigKind {
    /// Its name, as backends store it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Rule => "rule",
            ConfigKind::Silence => "silence",
            ConfigKind::Receiver => "receiver",
        }
    }
}

impl AlertConfig {
    /// Its kind.
    pub fn kind(&self) -> ConfigKind {
        match self {
            AlertConfig::Rule(_) => ConfigKind::Rule,
            AlertConfig::Silence(_) => ConfigKind::Silence,
            AlertConfig::Receiver(_) => ConfigKind::Receiver,
        }
    }

    /// Its id, unique within its kind.
    pub fn id(&self) -> &str {
        match self {
            AlertConfig::Rule(rule) => &rule.id,
            AlertConfig::Silence(silence) => &silence.id,
            AlertConfig::Receiver(receiver) => &receiver.id,
        }
    }

    /// As a JSON document, which [`AlertConfig::from_json`] reads back.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AlertConfig::Rule(rule) => rule.to_json(),
            AlertConfig::Silence(silence) => serde_json::to_value(silence).unwrap_or_default(),
            AlertConfig::Receiver(receiver) => receiver.to_json(),
        }
    }

    /// Reads back what [`AlertConfig::to_json`] wrote.
    ///
    /// # Errors
    /// A document that is not a valid `kind`.
    pub fn from_json(kind: ConfigKind, document: &serde_json::Value) -> Result<Self, crate::StorageError> {
        let corrupt = |e: String| crate::StorageError::backend(format!("stored {} is invalid: {e}", kind.as_str()));
        Ok(match kind {
            ConfigKind::Rule => AlertConfig::Rule(Rule::parse(document).map_err(|e| corrupt(e.to_string()))?),
            ConfigKind::Silence => {
                AlertConfig::Silence(serde_json::from_value(document.clone()).map_err(|e| corrupt(e.to_string()))?)
            }
            ConfigKind::Receiver => {
                AlertConfig::Receiver(Receiver::parse(document, None).map_err(|e| corrupt(e.to_string()))?)
            }
        })
    }
}

/// One transition of one alert, stored atomically.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertChange {
    /// The alert as it is now (inserted, or replacing the stored one with its id).
    pub alert: Alert,
    /// Drop the alert and its timeline instead: a pending alert whose condition cleared
    /// before it fired.
    pub discard: bool,
    /// Its timeline entry.
    pub event: Option<AlertEvent>,
    /// The notifications it causes, queued in the outbox.
    pub notifications: Vec<Notification>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertQuery {
    /// Only in this state.
    pub state: Option<AlertState>,
    /// Only of this severity.
    pub severity: Option<Severity>,
    /// Only about this device.
    pub device_id: Option<String>,
    /// Only raised by this rule.
    pub rule_id: Option<String>,
    /// At most this many, newest start first.
    pub limit: usize,
}

impl AlertQuery {
    /// Whether `alert` is selected.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.state.is_none_or(|s| alert.state == s)
            && self.severity.is_none_or(|s| alert.severity == s)
            && self.device_id.as_deref().is_none_or(|d| alert.device_id.as_deref() == Some(d))
            && self.rule_id.as_deref().is_none_or(|r| alert.rule_id == r)
    }
}

/// Which notifications to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationQuery {
    /// Only in this delivery state.
    pub state: Option<DeliveryState>,
    /// Only about this alert.
    pub alert_id: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl NotificationQuery {
    /// Whether `notification` is selected.
    pub fn matches(&self, notification: &Notification) -> bool {
        self.state.is_none_or(|s| notification.state == s)
            && self.alert_id.as_deref().is_none_or(|a| notification.alert_id == a)
    }
}
