//! The storage traits. **API boundary:** third-party backends implement these; the
//! conformance kit states their contracts as tests.

use std::fmt;

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
    HealthCheckId, KeyId, KeyInfo, NewHealthCheck, NewKey, NewReceipt, Receipt, RecordId, RollupDelta, SeriesId,
    StorageError, StoredBucket, StoredHealthCheck, StoredKey, StoredSeries,
};

/// The device registry.
#[async_trait]
pub trait DeviceStore: Send + Sync + fmt::Debug {
    /// Registers a device together with its first device key, atomically: either both exist
    /// afterwards or neither does.
    ///
    /// # Errors
    /// [`StorageError::Conflict`] when the device id is taken.
    async fn register_device(
        &self,
        device: &NewDevice,
        key: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Device, StorageError>;

    /// The device with this id, if registered.
    ///
    /// # Errors
    /// Backend failures only.
    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError>;

    /// Every registered device, ordered by id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn devices(&self) -> Result<Vec<Device>, StorageError>;

    /// Removes a device with its keys and health checks.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when no such device is registered.
    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError>;

    /// Records that `id` sends container metrics, keeping the first time (`at`) it did. An
    /// unregistered device is ignored.
    ///
    /// # Errors
    /// Backend failures only.
    async fn mark_container_reporter(&self, id: &DeviceId, at: DateTime<Utc>) -> Result<(), StorageError>;

    /// The registered devices that have sent container metrics, ordered by id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError>;

    /// A page of devices with their latest stored check and current state, filtered and
    /// sorted as `query` says, in the order of [`crate::fleet::fleet_order`], after its cursor.
    /// The latest check is the one accepted last (of equal times, the one stored last); the
    /// state is the newest state change of the device.
    ///
    /// # Errors
    /// Backend failures only.
    async fn fleet(&self, query: &FleetQuery) -> Result<FleetPage, StorageError>;
}

/// API keys, stored as hashes.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Stores a key.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when `device_id` names an unregistered device;
    /// [`StorageError::Conflict`] when the hash is already stored.
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError>;

    /// The unrevoked key with this hash, if any.
    ///
    /// # Errors
    /// Backend failures only.
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError>;

    /// Whether any unrevoked key has this role.
    ///
    /// # Errors
    /// Backend failures only.
    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError>;

    /// The unrevoked keys of `device`, or with `None` those of no device (admin and read
    /// keys), oldest first.
    ///
    /// # Errors
    /// Backend failures only; an unknown device has no keys.
    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError>;

    /// Revokes key `id` at `now`: from then on `key_by_hash` no longer finds it. With
    /// `Some(device)` the key must belong to that device; with `None` to no device.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when no such unrevoked key exists there.
    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> Result<(), StorageError>;

    /// A number that grows whenever a key stops being valid: a revocation, or a device
    /// removed with its keys, by any process on this database, in the same transaction.
    /// Servers poll it to drop the keys they remember, so a revocation made elsewhere (the
    /// CLI, another instance) takes effect within one poll.
    ///
    /// # Errors
    /// Backend failures only.
    async fn key_revision(&self) -> Result<u64, StorageError>;
}

/// Device health checks.
#[async_trait]
pub trait HealthStore: Send + Sync + fmt::Debug {
    /// Stores a batch durably, all or nothing, and returns the ids in batch order. The
    /// pipeline hands every check that arrived together to one call (group commit). A check's
    /// `receipt` is stored in the same transaction, with the check's id as its `health_id`
    /// (replacing a receipt of the same scope and key accepted before its `replaces_before`).
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when a check names an unregistered device, and
    /// [`StorageError::Conflict`] when a receipt of the same scope and key accepted at or after
    /// a receipt's `replaces_before` is stored, even by a transaction committing meanwhile
    /// (nothing is stored then).
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError>;

    /// A device's checks accepted at or after `since`, newest first, at most `limit`.
    ///
    /// # Errors
    /// Backend failures only; an unknown device has no checks.
    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError>;

    /// A device's newest check.
    ///
    /// # Errors
    /// Backend failures only.
    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError>;

    /// Deletes at most `max_rows` of the checks accepted in `[from, before)` and returns how
    /// many it deleted. Callers repeat until it returns 0.
    ///
    /// # Errors
    /// Backend failures only.
    async fn purge_health(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        max_rows: u64,
    ) -> Result<u64, StorageError>;
}

/// Metric history: points from every metrics ingest format.
#[async_trait]
pub trait MetricStore: Send + Sync + fmt::Debug {
    /// Stores a batch and the `receipts` of the requests that brought it durably, all or
    /// nothing, in one transaction. Points keep every tag, field (with its type), metric type
    /// and their nanosecond timestamps. Either may be empty: a request whose points were all
    /// filtered still leaves its receipt. Receipts replace or conflict as in
    /// [`HealthStore::insert_health`].
    ///
    /// # Errors
    /// [`StorageError::Conflict`] for a receipt's key that is still taken (nothing is stored).
    async fn insert_points(&self, batch: &[Point], receipts: &[NewReceipt]) -> Result<(), StorageError>;

    /// Points named `name` at or after `since_ns` whose tags include every pair in `tags`,
    /// newest first, at most `limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn points_since(
        &self,
        name: &str,
        since_ns: i64,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, StorageError>;

    /// The newest point of every series (a name and its exact tags) among `names` with a time
    /// at or after `since_ns`, in no particular order. Points of equal time: the one stored
    /// last. What the views rebuilt at start read.
    ///
    /// # Errors
    /// Backend failures only.
    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError>;

    /// Deletes at most `max_rows` of the points timed in `[from_ns, before_ns)` and returns
    /// how many it deleted. Callers repeat until it returns 0.
    ///
    /// # Errors
    /// Backend failures only.
    async fn purge_points(&self, from_ns: i64, before_ns: i64, max_rows: u64) -> Result<u64, StorageError>;
}

/// Idempotency receipts, written by [`HealthStore::insert_health`] and
/// [`MetricStore::insert_points`] together with their data.
#[async_trait]
pub trait ReceiptStore: Send + Sync + fmt::Debug {
    /// The receipt `key` left in `scope`, if it is stored.
    ///
    /// # Errors
    /// Backend failures only.
    async fn receipt(&self, scope: &str, key: &str) -> Result<Option<Receipt>, StorageError>;

    /// Deletes at most `max_rows` of the receipts accepted before `before` and returns how
    /// many it deleted. Callers repeat until it returns 0.
    ///
    /// # Errors
    /// Backend failures only.
    async fn purge_receipts(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError>;
}

/// Rollups: every numeric series folded into buckets of each [`Tier`]
/// (`homepot_core::rollup`). Callers fold samples in memory and hand the backend deltas; the
/// backend merges them into what it holds, so a bucket may be written many times.
#[async_trait]
pub trait RollupStore: Send + Sync + fmt::Debug {
    /// Folds every delta into its stored bucket (`Aggregate::merge`), creating series and
    /// buckets as needed, all or nothing.
    ///
    /// # Errors
    /// Backend failures only.
    async fn merge_rollups(&self, deltas: &[RollupDelta]) -> Result<(), StorageError>;

    /// The series named one of `names`, of field `field`, whose tags include every pair in
    /// `tags`, ordered by id, at most `limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn find_series(
        &self,
        names: &[&str],
        field: &str,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StorageError>;

    /// Every distinct `(name, field)` of the stored series, ordered: the catalog a query
    /// language's name matchers run over.
    ///
    /// # Errors
    /// Backend failures only.
    async fn series_names(&self) -> Result<Vec<(String, String)>, StorageError>;

    /// The buckets of `series` in `tier` that start in `[from_s, to_s)`, ordered by series
    /// then start.
    ///
    /// # Errors
    /// Backend failures only.
    async fn rollup_buckets(
        &self,
        series: &[SeriesId],
        tier: Tier,
        from_s: i64,
        to_s: i64,
    ) -> Result<Vec<StoredBucket>, StorageError>;

    /// Deletes at most `max_rows` buckets of `tier` that start before `before_s` and returns
    /// how many it deleted. Callers repeat until it returns 0.
    ///
    /// # Errors
    /// Backend failures only.
    async fn purge_rollups(&self, tier: Tier, before_s: i64, max_rows: u64) -> Result<u64, StorageError>;

    /// The start of the oldest bucket of `tier`, if any: how far back rollups reach.
    ///
    /// # Errors
    /// Backend failures only.
    async fn oldest_bucket(&self, tier: Tier) -> Result<Option<i64>, StorageError>;
}

/// The analytics records and the aggregations over them. Aggregations group in
/// the backend and return small per-group records that `homepot_core::analytics` finishes,
/// so no caller ever loads raw rows to aggregate them.
#[async_trait]
pub trait AnalyticsStore: Send + Sync + fmt::Debug {
    /// Stores a batch of request logs, all or nothing.
    ///
    /// # Errors
    /// Backend failures only.
    async fn insert_request_logs(&self, batch: &[RequestLog]) -> Result<(), StorageError>;

    /// Stores a device state change. The device need not be registered (history outlives
    /// devices); callers check that when they must.
    ///
    /// # Errors
    /// Backend failures only.
    async fn insert_state_change(&self, change: &StateChange) -> Result<RecordId, StorageError>;

    /// Stores several state changes and returns their ids in batch order: what the
    /// engine's writer hands over when many devices change state at once (a fleet coming
    /// online). The default stores them one by one; a backend that can, stores them in one
    /// transaction.
    ///
    /// # Errors
    /// Backend failures only; the default may have stored the changes before the failing one.
    async fn insert_state_changes(&self, batch: &[StateChange]) -> Result<Vec<RecordId>, StorageError> {
        let mut ids = Vec::with_capacity(batch.len());
        for change in batch {
            ids.push(self.insert_state_change(change).await?);
        }
        Ok(ids)
    }

    /// Stores a job outcome.
    ///
    /// # Errors
    /// Backend failures only.
    async fn insert_job_outcome(&self, outcome: &JobOutcome) -> Result<RecordId, StorageError>;

    /// Stores an error log.
    ///
    /// # Errors
    /// Backend failures only.
    async fn insert_error_log(&self, error: &ErrorLog) -> Result<RecordId, StorageError>;

    /// Stores a user activity.
    ///
    /// # Errors
    /// Backend failures only.
    async fn insert_user_activity(&self, activity: &UserActivity) -> Result<RecordId, StorageError>;

    /// Request logs at or after `since` (of one endpoint, if given) as parts per endpoint and
    /// method, in any number and order: `homepot_core::analytics::summarize_performance`
    /// merges them. A backend may answer from pre-computed rollups.
    ///
    /// # Errors
    /// Backend failures only.
    async fn request_latencies(
        &self,
        since: DateTime<Utc>,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointLatency>, StorageError>;

    /// Job outcomes at or after `since` (of one job type, if given), grouped by job type and
    /// status, ordered by job type then status.
    ///
    /// # Errors
    /// Backend failures only.
    async fn job_status_counts(
        &self,
        since: DateTime<Utc>,
        job_type: Option<&str>,
    ) -> Result<Vec<JobStatusCount>, StorageError>;

    /// Error logs at or after `since` (of one category, if given), counted per category and
    /// severity, ordered by category then severity; with `bucket_s`, per bucket of that many
    /// seconds aligned to the epoch as well, ordered by bucket first.
    ///
    /// # Errors
    /// Backend failures only.
    async fn error_trends(
        &self,
        since: DateTime<Utc>,
        category: Option<&str>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ErrorTrend>, StorageError>;

    /// A device's state changes at or after `since`, newest first, at most `limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn state_history(
        &self,
        device_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StateChange>, StorageError>;

    /// Deletes at most `max_rows` records older than `before` from each analytics table and
    /// returns how many it deleted in all. Callers repeat until it returns 0, so no single
    /// statement holds locks for long.
    ///
    /// # Errors
    /// Backend failures only.
    async fn purge_analytics(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError>;
}

/// Reading whole tables out, page by page.
#[async_trait]
pub trait ExportStore: Send + Sync + fmt::Debug {
    /// At most `limit` rows of `query` after `after` (from the start when `None`), ordered
    /// by time and then id, and where the next page starts.
    ///
    /// # Errors
    /// Backend failures only.
    async fn export_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError>;
}

/// Alerting: configuration, alerts with their timelines, and the notification outbox.
#[async_trait]
pub trait AlertStore: Send + Sync + fmt::Debug {
    /// Stores `config`, replacing the one of the same kind and id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn put_alert_config(&self, config: &AlertConfig) -> Result<(), StorageError>;

    /// Deletes the configuration of `kind` with `id`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when there is none.
    async fn delete_alert_config(&self, kind: ConfigKind, id: &str) -> Result<(), StorageError>;

    /// Every configuration of `kind`, ordered by id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn alert_configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, StorageError>;

    /// Stores every change, with its timeline entry and notifications, in one transaction:
    /// all of them or none.
    ///
    /// # Errors
    /// [`StorageError::Conflict`] when a change would open a second alert of the same rule
    /// and subject (nothing is stored then).
    async fn apply_alert_changes(&self, changes: &[AlertChange]) -> Result<(), StorageError>;

    /// Every pending or firing alert.
    ///
    /// # Errors
    /// Backend failures only.
    async fn open_alerts(&self) -> Result<Vec<Alert>, StorageError>;

    /// Alerts that `query` selects, newest start first (ties by id), at most `query.limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StorageError>;

    /// One alert with its timeline, oldest entry first.
    ///
    /// # Errors
    /// Backend failures only.
    async fn alert_timeline(&self, id: &str) -> Result<Option<(Alert, Vec<AlertEvent>)>, StorageError>;

    /// Pending notifications in the order they were queued, at most `limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn pending_notifications(&self, limit: usize) -> Result<Vec<Notification>, StorageError>;

    /// Replaces the stored notification with the same id (its delivery state, attempts,
    /// next attempt, last error).
    ///
    /// # Errors
    /// [`StorageError::NotFound`] when there is none.
    async fn update_notification(&self, notification: &Notification) -> Result<(), StorageError>;

    /// Notifications that `query` selects, newest first, at most `query.limit`.
    ///
    /// # Errors
    /// Backend failures only.
    async fn notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StorageError>;
}

/// Leases: a named piece of work that one process at a time does, among several on one
/// database (instances behind a load balancer). A lease runs until a time its holder sets and
/// renews; a holder that dies leaves it to run out, and another takes it over then.
#[async_trait]
pub trait LeaseStore: Send + Sync + fmt::Debug {
    /// Takes lease `name` for `holder` until `until`, or renews it, unless another holder's
    /// lease still runs at `now`. Whether `holder` holds it now. Atomic: of several
    /// processes trying at once, at most one gets it.
    ///
    /// # Errors
    /// Backend failures only.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError>;

    /// Ends lease `name` if `holder` holds it, so another may take it at once.
    ///
    /// # Errors
    /// Backend failures only.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError>;
}

/// A device that has been silent, as [`PresenceStore::silent_devices`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentDevice {
    pub device_id: DeviceId,
    /// Its current state.
    pub state: String,
    /// When it was last seen, or, never seen, when it entered its current state.
    pub last_seen: DateTime<Utc>,
}

/// Device presence shared by the processes on one database: when each device was last seen
/// and its current state, changed only by compare-and-set, so that instances that see the
/// same transition record it once. A device's current state is the new state of its newest
/// state change by timestamp (the later stored of equal times), none without one.
#[async_trait]
pub trait PresenceStore: Send + Sync + fmt::Debug {
    /// Stores each change whose device is registered and whose current state is the
    /// change's `previous_state` (none matching none), atomically with that comparison, so
    /// of two processes storing the same transition at once one succeeds. Returns each
    /// stored change's id and `None` for each skipped one, in batch order; a later change in
    /// the batch sees the earlier ones.
    ///
    /// # Errors
    /// Backend failures only.
    async fn apply_transitions(&self, batch: &[StateChange]) -> Result<Vec<Option<RecordId>>, StorageError>;

    /// Records that devices were seen: each registered device's last-seen time becomes the
    /// later of the stored one and the given one; unknown devices are skipped. A device may
    /// appear more than once. Presence may be kept in memory: it need not survive a restart.
    ///
    /// # Errors
    /// Backend failures only.
    async fn mark_seen(&self, seen: &[(DeviceId, DateTime<Utc>)]) -> Result<(), StorageError>;

    /// Registered devices with a current state other than `offline` whose last-seen time
    /// (or, never seen, the time of their current state) is before `before`: at most
    /// `limit`, the longest silent first.
    ///
    /// # Errors
    /// Backend failures only.
    async fn silent_devices(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<SilentDevice>, StorageError>;

    /// Registered devices whose current state was entered at or after `since` (by the
    /// state change's timestamp), with that state, in any order: what a process reads to
    /// learn of transitions other processes made.
    ///
    /// # Errors
    /// Backend failures only.
    async fn states_since(&self, since: DateTime<Utc>) -> Result<Vec<(DeviceId, String)>, StorageError>;
}

/// Everything the server needs from one backend.
#[async_trait]
pub trait Store:
    DeviceStore
    + KeyStore
    + HealthStore
    + MetricStore
    + ReceiptStore
    + AnalyticsStore
    + RollupStore
    + ExportStore
    + AlertStore
    + LeaseStore
    + PresenceStore
{
    /// Checks that the backend answers, for `/health`.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), StorageError>;
}
