//! [`Layered`]: any store with a [`StoreLayer`] in front of every operation, to observe,
//! delay or fail them without touching the backend: fault injection in tests (a stalled
//! request-log write, a refused insert), counting, or tracing.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::alert::{Alert, AlertEvent, Notification};
use homepot_core::analytics::{
    EndpointLatency, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, RequestLog, StateChange, UserActivity,
};
use homepot_core::rollup::Tier;
use homepot_core::{Device, DeviceId, KeyHash, NewDevice, Point, Role};

use crate::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use crate::export::{ExportCursor, ExportPage, ExportQuery};
use crate::fleet::{FleetPage, FleetQuery};
use crate::{
    AlertStore, AnalyticsStore, DeviceStore, ExportStore, HealthCheckId, HealthStore, KeyId, KeyInfo, KeyStore,
    LeaseStore, MetricStore, NewHealthCheck, NewKey, NewReceipt, PresenceStore, Receipt, ReceiptStore, RecordId,
    RollupDelta, RollupStore, SeriesId, SilentDevice, StorageError, Store, StoredBucket, StoredHealthCheck, StoredKey,
    StoredSeries,
};

/// A storage operation, named after its trait method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Operation {
    RegisterDevice,
    Device,
    Devices,
    RemoveDevice,
    MarkContainerReporter,
    ContainerReporters,
    Fleet,
    InsertKey,
    KeyByHash,
    HasKeyWithRole,
    Keys,
    RevokeKey,
    KeyRevision,
    AcquireLease,
    ReleaseLease,
    ApplyTransitions,
    MarkSeen,
    SilentDevices,
    StatesSince,
    InsertHealth,
    HealthSince,
    LatestHealth,
    PurgeHealth,
    InsertPoints,
    PointsSince,
    LatestPoints,
    PurgePoints,
    Receipt,
    PurgeReceipts,
    MergeRollups,
    FindSeries,
    SeriesNames,
    RollupBuckets,
    PurgeRollups,
    OldestBucket,
    ExportPage,
    InsertRequestLogs,
    InsertStateChange,
    InsertStateChanges,
    InsertJobOutcome,
    InsertErrorLog,
    InsertUserActivity,
    RequestLatencies,
    JobStatusCounts,
    ErrorTrends,
    StateHistory,
    PurgeAnalytics,
    PutAlertConfig,
    DeleteAlertConfig,
    AlertConfigs,
    ApplyAlertChanges,
    OpenAlerts,
    Alerts,
    AlertTimeline,
    PendingNotifications,
    UpdateNotification,
    Notifications,
    Ping,
}

/// Runs before each operation of a [`Layered`] store.
#[async_trait]
pub trait StoreLayer: Send + Sync + fmt::Debug {
    /// Called before `operation` runs; an error is answered instead of running it.
    ///
    /// # Errors
    /// Whatever the layer decides the operation should fail with.
    async fn before(&self, operation: Operation) -> Result<(), StorageError>;

    /// Called once `operation` has run, whatever its outcome, before its caller sees it.
    async fn after(&self, _operation: Operation) {}
}

/// `inner` with `layer` consulted before every operation.
#[derive(Debug, Clone)]
pub struct Layered {
    inner: Arc<dyn Store>,
    layer: Arc<dyn StoreLayer>,
}

impl Layered {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, layer: Arc<dyn StoreLayer>) -> Self {
        Self { inner, layer }
    }
}

/// One trait's impl for [`Layered`]: each method asks the layer, forwards, and tells the layer.
macro_rules! layered {
    ($trait:ident { $( $op:ident => fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for Layered {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StorageError> {
                    self.layer.before(Operation::$op).await?;
                    let outcome = self.inner.$name($($arg),*).await;
                    self.layer.after(Operation::$op).await;
                    outcome
                }
            )*
        }
    };
}

layered!(DeviceStore {
    RegisterDevice => fn register_device(device: &NewDevice, key: &KeyHash, now: DateTime<Utc>) -> Device;
    Device => fn device(id: &DeviceId) -> Option<Device>;
    Devices => fn devices() -> Vec<Device>;
    RemoveDevice => fn remove_device(id: &DeviceId) -> ();
    MarkContainerReporter => fn mark_container_reporter(id: &DeviceId, at: DateTime<Utc>) -> ();
    ContainerReporters => fn container_reporters() -> Vec<DeviceId>;
    Fleet => fn fleet(query: &FleetQuery) -> FleetPage;
});

layered!(KeyStore {
    InsertKey => fn insert_key(key: &NewKey) -> KeyId;
    KeyByHash => fn key_by_hash(hash: &KeyHash) -> Option<StoredKey>;
    HasKeyWithRole => fn has_key_with_role(role: Role) -> bool;
    Keys => fn keys(device: Option<&DeviceId>) -> Vec<KeyInfo>;
    RevokeKey => fn revoke_key(id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> ();
    KeyRevision => fn key_revision() -> u64;
});

layered!(HealthStore {
    InsertHealth => fn insert_health(batch: &[NewHealthCheck]) -> Vec<HealthCheckId>;
    HealthSince => fn health_since(device: &DeviceId, since: DateTime<Utc>, limit: usize) -> Vec<StoredHealthCheck>;
    LatestHealth => fn latest_health(device: &DeviceId) -> Option<StoredHealthCheck>;
    PurgeHealth => fn purge_health(from: DateTime<Utc>, before: DateTime<Utc>, max_rows: u64) -> u64;
});

layered!(MetricStore {
    InsertPoints => fn insert_points(batch: &[Point], receipts: &[NewReceipt]) -> ();
    PointsSince => fn points_since(name: &str, since_ns: i64, tags: &[(String, String)], limit: usize) -> Vec<Point>;
    LatestPoints => fn latest_points(names: &[&str], since_ns: i64) -> Vec<Point>;
    PurgePoints => fn purge_points(from_ns: i64, before_ns: i64, max_rows: u64) -> u64;
});

layered!(ReceiptStore {
    Receipt => fn receipt(scope: &str, key: &str) -> Option<Receipt>;
    PurgeReceipts => fn purge_receipts(before: DateTime<Utc>, max_rows: u64) -> u64;
});

layered!(RollupStore {
    MergeRollups => fn merge_rollups(deltas: &[RollupDelta]) -> ();
    FindSeries => fn find_series(names: &[&str], field: &str, tags: &[(String, String)], limit: usize) -> Vec<StoredSeries>;
    SeriesNames => fn series_names() -> Vec<(String, String)>;
    RollupBuckets => fn rollup_buckets(series: &[SeriesId], tier: Tier, from_s: i64, to_s: i64) -> Vec<StoredBucket>;
    PurgeRollups => fn purge_rollups(tier: Tier, before_s: i64, max_rows: u64) -> u64;
    OldestBucket => fn oldest_bucket(tier: Tier) -> Option<i64>;
});

layered!(ExportStore {
    ExportPage => fn export_page(query: &ExportQuery, after: Option<ExportCursor>, limit: usize) -> ExportPage;
});

layered!(AnalyticsStore {
    InsertRequestLogs => fn insert_request_logs(batch: &[RequestLog]) -> ();
    InsertStateChange => fn insert_state_change(change: &StateChange) -> RecordId;
    InsertStateChanges => fn insert_state_changes(batch: &[StateChange]) -> Vec<RecordId>;
    InsertJobOutcome => fn insert_job_outcome(outcome: &JobOutcome) -> RecordId;
    InsertErrorLog => fn insert_error_log(error: &ErrorLog) -> RecordId;
    InsertUserActivity => fn insert_user_activity(activity: &UserActivity) -> RecordId;
    RequestLatencies => fn request_latencies(since: DateTime<Utc>, endpoint: Option<&str>) -> Vec<EndpointLatency>;
    JobStatusCounts => fn job_status_counts(since: DateTime<Utc>, job_type: Option<&str>) -> Vec<JobStatusCount>;
    ErrorTrends => fn error_trends(since: DateTime<Utc>, category: Option<&str>, bucket_s: Option<i64>) -> Vec<ErrorTrend>;
    StateHistory => fn state_history(device_id: &str, since: DateTime<Utc>, limit: usize) -> Vec<StateChange>;
    PurgeAnalytics => fn purge_analytics(before: DateTime<Utc>, max_rows: u64) -> u64;
});

layered!(LeaseStore {
    AcquireLease => fn acquire_lease(name: &str, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> bool;
    ReleaseLease => fn release_lease(name: &str, holder: &str) -> ();
});

layered!(PresenceStore {
    ApplyTransitions => fn apply_transitions(batch: &[StateChange]) -> Vec<Option<RecordId>>;
    MarkSeen => fn mark_seen(seen: &[(DeviceId, DateTime<Utc>)]) -> ();
    SilentDevices => fn silent_devices(before: DateTime<Utc>, limit: usize) -> Vec<SilentDevice>;
    StatesSince => fn states_since(since: DateTime<Utc>) -> Vec<(DeviceId, String)>;
});

layered!(AlertStore {
    PutAlertConfig => fn put_alert_config(config: &AlertConfig) -> ();
    DeleteAlertConfig => fn delete_alert_config(kind: ConfigKind, id: &str) -> ();
    AlertConfigs => fn alert_configs(kind: ConfigKind) -> Vec<AlertConfig>;
    ApplyAlertChanges => fn apply_alert_changes(changes: &[AlertChange]) -> ();
    OpenAlerts => fn open_alerts() -> Vec<Alert>;
    Alerts => fn alerts(query: &AlertQuery) -> Vec<Alert>;
    AlertTimeline => fn alert_timeline(id: &str) -> Option<(Alert, Vec<AlertEvent>)>;
    PendingNotifications => fn pending_notifications(limit: usize) -> Vec<Notification>;
    UpdateNotification => fn update_notification(notification: &Notification) -> ();
    Notifications => fn notifications(query: &NotificationQuery) -> Vec<Notification>;
});

layered!(Store {
    Ping => fn ping() -> ();
});
