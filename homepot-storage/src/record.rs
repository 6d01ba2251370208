//! Records exchanged with a store: what goes in and what comes back.

use chrono::{DateTime, Utc};
use homepot_core::{DeviceId, HealthCheck, KeyHash, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Identifier of a stored health check (the original API's `health_check_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthCheckId(pub i64);

/// Identifier of a stored analytics record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub i64);

/// Identifier of a stored API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub i64);

/// A validated health check to store for a registered device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewHealthCheck {
    /// The reporting device; must be registered.
    pub device_id: DeviceId,
    /// When the server accepted the check.
    pub checked_at: DateTime<Utc>,
    /// The check.
    pub check: HealthCheck,
}

/// A health check as stored (the original API's `health_checks` row).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHealthCheck {
    /// Its identifier.
    pub id: HealthCheckId,
    /// The reporting device.
    pub device_id: DeviceId,
    /// Overall health.
    pub is_healthy: bool,
    /// Response time in ms.
    pub response_time_ms: i64,
    /// HTTP status of the device's own check.
    pub status_code: i64,
    /// Health-check endpoint path.
    pub endpoint: Option<String>,
    /// The stored document: `response_data` plus the `system`, `app_metrics`, `network` groups.
    pub response_data: Map<String, Value>,
    /// Error description.
    pub error_message: Option<String>,
    /// When the server accepted it.
    pub checked_at: DateTime<Utc>,
}

/// An API key to store (only its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewKey {
    /// Hash of the secret.
    pub hash: KeyHash,
    /// What it may do.
    pub role: Role,
    /// The device a [`Role::Device`] key belongs to.
    pub device_id: Option<DeviceId>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}

/// A stored, unrevoked API key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// Its identifier.
    pub id: KeyId,
    /// Hash of the secret.
    pub hash: KeyHash,
    /// What it may do.
    pub role: Role,
    /// The device a [`Role::Device`] key belongs to.
    pub device_id: Option<DeviceId>,
}

/// What may be shown about a stored, unrevoked key: never its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// Its identifier.
    pub id: KeyId,
    /// What it may do.
    pub role: Role,
    /// The device a [`Role::Device`] key belongs to.
    pub device_id: Option<DeviceId>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}
