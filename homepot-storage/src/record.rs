//! Records exchanged with a store: what goes in and what comes back.

use chrono::{DateTime, Utc};
use homepot_core::rollup::{Aggregate, Tier};
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
    /// The sender's idempotency key, stored in the same transaction as the check.
    #[serde(default)]
    pub receipt: Option<NewReceipt>,
}

/// The idempotency key of an accepted ingest request, committed in the same transaction as
/// the data it brought, so that a repeat finds it exactly when the data is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewReceipt {
    /// Whose keys these are (a device, or a key's fingerprint): one sender cannot see another's.
    pub scope: String,
    /// The key the sender chose.
    pub key: String,
    /// When the request was accepted.
    pub accepted_at: DateTime<Utc>,
    /// What the request was answered, in the engine's own encoding; opaque to storage.
    pub answer: String,
    /// A stored receipt of the same scope and key accepted before this replaces (its window
    /// has passed); one accepted at or after it means another process took the key first,
    /// and the call fails with [`crate::StorageError::Conflict`], storing nothing.
    #[serde(default = "always_replaces")]
    pub replaces_before: DateTime<Utc>,
}

/// Receipts journaled before `replaces_before` existed replaced whatever was stored.
fn always_replaces() -> DateTime<Utc> {
    DateTime::<Utc>::MAX_UTC
}

/// A stored receipt: what a repeat of its request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// When the original request was accepted.
    pub accepted_at: DateTime<Utc>,
    /// The answer as given in [`NewReceipt::answer`].
    pub answer: String,
    /// The stored check, for a receipt that came with a health check.
    pub health_id: Option<HealthCheckId>,
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

/// One numeric series of rollups: a point name, its exact tags and one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The point name (`device_system`, `cpu`...).
    pub name: String,
    /// Every tag, sorted by key.
    pub tags: Vec<(String, String)>,
    /// The field.
    pub field: String,
}

/// Identifier of a stored rollup series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub i64);

/// A stored rollup series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSeries {
    /// Its identifier.
    pub id: SeriesId,
    /// What it is.
    pub key: SeriesKey,
}

/// Samples to fold into one stored bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupDelta {
    /// The series.
    pub series: SeriesKey,
    /// The bucket width.
    pub tier: Tier,
    /// The bucket's start, Unix seconds, aligned to the tier.
    pub start: i64,
    /// The samples' aggregate.
    pub aggregate: Aggregate,
}

/// A stored rollup bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBucket {
    /// The series.
    pub series: SeriesId,
    /// The bucket's start, Unix seconds.
    pub start: i64,
    /// Its aggregate.
    pub aggregate: Aggregate,
}
