//! A homepot storage backend written the way a third party would: against `homepot-storage`'s
//! traits and `homepot-core`'s types alone, with no database and no sea-orm or sqlx.
//!
//! [`JournalStore`] keeps its tables in an [`InMemoryStore`] and makes them durable with an
//! append-only journal: one JSON line per write, fsynced **before** the write is applied, so
//! memory never holds anything the disk does not. Opening the journal replays it.
//!
//! A write the in-memory tables refuse (a duplicate device, an unknown device) is journaled
//! too and refused again on replay: the tables check before they change anything, so the
//! same state gives the same answer, and record ids come out the same.
//!
//! Limits, as an example: every write costs one fsync (the engine's group commit still
//! batches health checks and points), the journal is never compacted (retention purges are
//! journaled operations, so replay time grows with history), and the whole history must fit
//! in memory.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::alert::{Alert, AlertEvent, Notification};
use homepot_core::analytics::{
    EndpointLatency, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, RequestLog, StateChange, UserActivity,
};
use homepot_core::rollup::Tier;
use homepot_core::{Device, DeviceId, KeyHash, NewDevice, Point, Role};
use homepot_storage::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use homepot_storage::export::{ExportCursor, ExportPage, ExportQuery};
use homepot_storage::fleet::{FleetPage, FleetQuery};
use homepot_storage::{
    AlertStore, AnalyticsStore, DeviceStore, ExportStore, HealthCheckId, HealthStore, InMemoryStore, KeyId, KeyInfo,
    KeyStore, LeaseStore, MetricStore, NewHealthCheck, NewKey, NewReceipt, PresenceStore, Receipt, ReceiptStore,
    RecordId, RollupDelta, RollupStore, SeriesId, SilentDevice, StorageError, Store, StoredBucket, StoredHealthCheck,
    StoredKey, StoredSeries,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// One journaled write: the arguments of the trait method that made it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op<'a> {
    RegisterDevice {
        device: Cow<'a, NewDevice>,
        key: KeyHash,
        now: DateTime<Utc>,
    },
    RemoveDevice {
        id: Cow<'a, DeviceId>,
    },
    MarkContainerReporter {
        id: Cow<'a, DeviceId>,
        at: DateTime<Utc>,
    },
    InsertKey {
        key: Cow<'a, NewKey>,
    },
    RevokeKey {
        id: i64,
        device: Option<Cow<'a, DeviceId>>,
        now: DateTime<Utc>,
    },
    InsertHealth {
        batch: Cow<'a, [NewHealthCheck]>,
    },
    InsertPoints {
        batch: Cow<'a, [Point]>,
        #[serde(default)]
        receipts: Cow<'a, [NewReceipt]>,
    },
    PurgeReceipts {
        before: DateTime<Utc>,
        max_rows: u64,
    },
    InsertRequestLogs {
        batch: Cow<'a, [RequestLog]>,
    },
    InsertStateChange {
        change: Cow<'a, StateChange>,
    },
    /// Replayed in order, each comparison finds what it found the first time.
    ApplyTransitions {
        batch: Cow<'a, [StateChange]>,
    },
    InsertJobOutcome {
        outcome: Cow<'a, JobOutcome>,
    },
    InsertErrorLog {
        error: Cow<'a, ErrorLog>,
    },
    InsertUserActivity {
        activity: Cow<'a, UserActivity>,
    },
    PurgeAnalytics {
        before: DateTime<Utc>,
        max_rows: u64,
    },
    PurgeHealth {
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        max_rows: u64,
    },
    PurgePoints {
        from_ns: i64,
        before_ns: i64,
        max_rows: u64,
    },
    MergeRollups {
        deltas: Cow<'a, [RollupDelta]>,
    },
    PurgeRollups {
        tier: Tier,
        before_s: i64,
        max_rows: u64,
    },
    PutAlertConfig {
        kind: ConfigKind,
        document: serde_json::Value,
    },
    DeleteAlertConfig {
        kind: ConfigKind,
        id: Cow<'a, str>,
    },
    ApplyAlertChanges {
        changes: Cow<'a, [AlertChange]>,
    },
    UpdateNotification {
        notification: Box<Notification>,
    },
}

impl Op<'_> {
    /// Applies the write to the tables; what the trait method answers.
    async fn apply(&self, tables: &InMemoryStore) -> Result<Applied, StorageError> {
        Ok(match self {
            Op::RegisterDevice { device, key, now } => {
                Applied::Device(tables.register_device(device, key, *now).await?)
            }
            Op::RemoveDevice { id } => {
                tables.remove_device(id).await?;
                Applied::Unit
            }
            Op::MarkContainerReporter { id, at } => {
                tables.mark_container_reporter(id, *at).await?;
                Applied::Unit
            }
            Op::InsertKey { key } => Applied::Key(tables.insert_key(key).await?),
            Op::RevokeKey { id, device, now } => {
                tables.revoke_key(KeyId(*id), device.as_deref(), *now).await?;
                Applied::Unit
            }
            Op::InsertHealth { batch } => Applied::Health(tables.insert_health(batch).await?),
            Op::InsertPoints { batch, receipts } => {
                tables.insert_points(batch, receipts).await?;
                Applied::Unit
            }
            Op::InsertRequestLogs { batch } => {
                tables.insert_request_logs(batch).await?;
                Applied::Unit
            }
            Op::InsertStateChange { change } => Applied::Record(tables.insert_state_change(change).await?),
            Op::ApplyTransitions { batch } => Applied::Transitions(tables.apply_transitions(batch).await?),
            Op::InsertJobOutcome { outcome } => Applied::Record(tables.insert_job_outcome(outcome).await?),
            Op::InsertErrorLog { error } => Applied::Record(tables.insert_error_log(error).await?),
            Op::InsertUserActivity { activity } => Applied::Record(tables.insert_user_activity(activity).await?),
            Op::PurgeAnalytics { before, max_rows } => {
                Applied::Count(tables.purge_analytics(*before, *max_rows).await?)
            }
            Op::PurgeHealth { from, before, max_rows } => {
                Applied::Count(tables.purge_health(*from, *before, *max_rows).await?)
            }
            Op::PurgePoints { from_ns, before_ns, max_rows } => {
                Applied::Count(tables.purge_points(*from_ns, *before_ns, *max_rows).await?)
            }
            Op::PurgeReceipts { before, max_rows } => Applied::Count(tables.purge_receipts(*before, *max_rows).await?),
            Op::MergeRollups { deltas } => {
                tables.merge_rollups(deltas).await?;
                Applied::Unit
            }
            Op::PurgeRollups { tier, before_s, max_rows } => {
                Applied::Count(tables.purge_rollups(*tier, *before_s, *max_rows).await?)
            }
            Op::PutAlertConfig { kind, document } => {
                tables.put_alert_config(&AlertConfig::from_json(*kind, document)?).await?;
                Applied::Unit
            }
            Op::DeleteAlertConfig { kind, id } => {
                tables.delete_alert_config(*kind, id).await?;
                Applied::Unit
            }
            Op::ApplyAlertChanges { changes } => {
                tables.apply_alert_changes(changes).await?;
                Applied::Unit
            }
            Op::UpdateNotification { notification } => {
                tables.update_notification(notification).await?;
                Applied::Unit
            }
        })
    }
}

/// What a write answered, for the trait method to unwrap.
#[derive(Debug)]
enum Applied {
    Unit,
    Device(Device),
    Key(KeyId),
    Health(Vec<HealthCheckId>),
    Record(RecordId),
    Transitions(Vec<Option<RecordId>>),
    Count(u64),
}

/// Why a journal cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The file could not be read or created.
    Io(io::Error),
    /// A complete line is not a journaled write, or replaying it failed: the file was altered.
    Corrupt {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot open the journal: {e}"),
            OpenError::Corrupt { line, reason } => write!(f, "journal line {line} is corrupt: {reason}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// The open journal file and its length, which ends on a complete line.
#[derive(Debug)]
struct Journal {
    file: File,
    len: u64,
}

impl Journal {
    /// Appends one line and syncs it. On failure the file is cut back to its last complete
    /// line; `Err(Some(journal))` means that worked, `Err(None)` that the file is unusable.
    fn append(mut self, line: &[u8]) -> Result<Self, (io::Error, Option<Self>)> {
        let written = self.file.write_all(line).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(self)
            }
            Err(e) => {
                let restored = self.file.set_len(self.len).and_then(|()| self.file.seek(SeekFrom::Start(self.len)));
                Err((e, restored.ok().map(|_| self)))
            }
        }
    }
}

/// Every storage trait over memory, made durable by a journal file.
#[derive(Debug)]
pub struct JournalStore {
    tables: InMemoryStore,
    /// `None` once an append failed and the file could not be restored: writes are refused
    /// from then on, while reads keep answering from what is durable.
    journal: Mutex<Option<Journal>>,
    path: PathBuf,
}

impl JournalStore {
    /// Opens the journal at `path`, creating it if absent, and replays it. A torn last line
    /// (a crash mid-append) is cut off: its write was never acknowledged.
    ///
    /// # Errors
    /// The file cannot be read or written, or a complete line is corrupt.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, OpenError> {
        let path = path.into();
        let opened = path.clone();
        let (journal, text) = tokio::task::spawn_blocking(move || read_journal(&opened))
            .await
            .map_err(|e| OpenError::Io(io::Error::other(e)))??;
        let tables = InMemoryStore::new();
        for (index, line) in text.lines().enumerate() {
            let corrupt = |reason: String| OpenError::Corrupt { line: index + 1, reason };
            let op: Op<'_> = serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
            match op.apply(&tables).await {
                // Refused when it was first made, and refused again now: the same answer.
                Ok(_) | Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) => {}
                Err(e) => return Err(corrupt(e.to_string())),
            }
        }
        Ok(Self { tables, journal: Mutex::new(Some(journal)), path })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Journals `op` durably, then applies it.
    async fn write(&self, op: Op<'_>) -> Result<Applied, StorageError> {
        let mut line = serde_json::to_vec(&op).map_err(StorageError::backend)?;
        line.push(b'\n');
        // One writer at a time: the journal's order is the order the tables see.
        let mut slot = self.journal.lock().await;
        let journal = slot.take().ok_or_else(|| unavailable(io::Error::other("the journal failed earlier; reopen")))?;
        match tokio::task::spawn_blocking(move || journal.append(&line)).await {
            Ok(Ok(journal)) => *slot = Some(journal),
            Ok(Err((e, restored))) => {
                *slot = restored;
                return Err(unavailable(e));
            }
            Err(join) => return Err(unavailable(io::Error::other(join))),
        }
        op.apply(&self.tables).await
    }
}

fn unavailable(e: io::Error) -> StorageError {
    StorageError::Unavailable { source: Box::new(e) }
}

/// Opens (or creates) the file, returns its complete lines and a journal positioned after
/// them, cutting off a torn last line.
fn read_journal(path: &Path) -> Result<(Journal, String), OpenError> {
    let created = !path.exists();
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if created {
        // The new file's directory entry must be durable too, or a crash could lose it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(complete);
    let len = complete as u64;
    if file.metadata()?.len() != len {
        file.set_len(len)?;
        file.sync_data()?;
    }
    file.seek(SeekFrom::Start(len))?;
    let text = String::from_utf8(bytes).map_err(|e| OpenError::Corrupt {
        line: 0,
        reason: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })?;
    Ok((Journal { file, len }, text))
}

/// Unwraps the answer a write's variant always gives.
macro_rules! answer {
    ($applied:expr, Unit) => {
        match $applied? {
            Applied::Unit => Ok(()),
            other => Err(StorageError::backend(format!("journal answered {other:?}"))),
        }
    };
    ($applied:expr, $variant:ident) => {
        match $applied? {
            Applied::$variant(value) => Ok(value),
            other => Err(StorageError::backend(format!("journal answered {other:?}"))),
        }
    };
}

#[async_trait]
impl DeviceStore for JournalStore {
    async fn register_device(
        &self,
        device: &NewDevice,
        key: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Device, StorageError> {
        answer!(self.write(Op::RegisterDevice { device: Cow::Borrowed(device), key: *key, now }).await, Device)
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError> {
        self.tables.device(id).await
    }

    async fn devices(&self) -> Result<Vec<Device>, StorageError> {
        self.tables.devices().await
    }

    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError> {
        answer!(self.write(Op::RemoveDevice { id: Cow::Borrowed(id) }).await, Unit)
    }

    async fn mark_container_reporter(&self, id: &DeviceId, at: DateTime<Utc>) -> Result<(), StorageError> {
        // Only the first mark changes anything; skip the fsync for the rest.
        if self.tables.container_reporters().await?.contains(id) {
            return Ok(());
        }
        answer!(self.write(Op::MarkContainerReporter { id: Cow::Borrowed(id), at }).await, Unit)
    }

    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError> {
        self.tables.container_reporters().await
    }

    async fn fleet(&self, query: &FleetQuery) -> Result<FleetPage, StorageError> {
        self.tables.fleet(query).await
    }
}

#[async_trait]
impl KeyStore for JournalStore {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError> {
        answer!(self.write(Op::InsertKey { key: Cow::Borrowed(key) }).await, Key)
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError> {
        self.tables.key_by_hash(hash).await
    }

    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError> {
        self.tables.has_key_with_role(role).await
    }

    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError> {
        self.tables.keys(device).await
    }

    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> Result<(), StorageError> {
        answer!(self.write(Op::RevokeKey { id: id.0, device: device.map(Cow::Borrowed), now }).await, Unit)
    }

    async fn key_revision(&self) -> Result<u64, StorageError> {
        // Replaying the journal repeats every revocation, so the count is rebuilt with it.
        self.tables.key_revision().await
    }
}

#[async_trait]
impl HealthStore for JournalStore {
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError> {
        answer!(self.write(Op::InsertHealth { batch: Cow::Borrowed(batch) }).await, Health)
    }

    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        self.tables.health_since(device, since, limit).await
    }

    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError> {
        self.tables.latest_health(device).await
    }

    async fn purge_health(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        max_rows: u64,
    ) -> Result<u64, StorageError> {
        answer!(self.write(Op::PurgeHealth { from, before, max_rows }).await, Count)
    }
}

#[async_trait]
impl MetricStore for JournalStore {
    async fn insert_points(&self, batch: &[Point], receipts: &[NewReceipt]) -> Result<(), StorageError> {
        answer!(
            self.write(Op::InsertPoints { batch: Cow::Borrowed(batch), receipts: Cow::Borrowed(receipts) }).await,
            Unit
        )
    }

    async fn points_since(
        &self,
        name: &str,
        since_ns: i64,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, StorageError> {
        self.tables.points_since(name, since_ns, tags, limit).await
    }

    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError> {
        self.tables.latest_points(names, since_ns).await
    }

    async fn purge_points(&self, from_ns: i64, before_ns: i64, max_rows: u64) -> Result<u64, StorageError> {
        answer!(self.write(Op::PurgePoints { from_ns, before_ns, max_rows }).await, Count)
    }
}

#[async_trait]
impl ReceiptStore for JournalStore {
    async fn receipt(&self, scope: &str, key: &str) -> Result<Option<Receipt>, StorageError> {
        self.tables.receipt(scope, key).await
    }

    async fn purge_receipts(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        answer!(self.write(Op::PurgeReceipts { before, max_rows }).await, Count)
    }
}

#[async_trait]
impl RollupStore for JournalStore {
    async fn merge_rollups(&self, deltas: &[RollupDelta]) -> Result<(), StorageError> {
        answer!(self.write(Op::MergeRollups { deltas: Cow::Borrowed(deltas) }).await, Unit)
    }

    async fn find_series(
        &self,
        names: &[&str],
        field: &str,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StorageError> {
        self.tables.find_series(names, field, tags, limit).await
    }

    async fn series_names(&self) -> Result<Vec<(String, String)>, StorageError> {
        self.tables.series_names().await
    }

    async fn rollup_buckets(
        &self,
        series: &[SeriesId],
        tier: Tier,
        from_s: i64,
        to_s: i64,
    ) -> Result<Vec<StoredBucket>, StorageError> {
        self.tables.rollup_buckets(series, tier, from_s, to_s).await
    }

    async fn purge_rollups(&self, tier: Tier, before_s: i64, max_rows: u64) -> Result<u64, StorageError> {
        answer!(self.write(Op::PurgeRollups { tier, before_s, max_rows }).await, Count)
    }

    async fn oldest_bucket(&self, tier: Tier) -> Result<Option<i64>, StorageError> {
        self.tables.oldest_bucket(tier).await
    }
}

#[async_trait]
impl ExportStore for JournalStore {
    async fn export_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        self.tables.export_page(query, after, limit).await
    }
}

#[async_trait]
impl AnalyticsStore for JournalStore {
    async fn insert_request_logs(&self, batch: &[RequestLog]) -> Result<(), StorageError> {
        answer!(self.write(Op::InsertRequestLogs { batch: Cow::Borrowed(batch) }).await, Unit)
    }

    async fn insert_state_change(&self, change: &StateChange) -> Result<RecordId, StorageError> {
        answer!(self.write(Op::InsertStateChange { change: Cow::Borrowed(change) }).await, Record)
    }

    async fn insert_job_outcome(&self, outcome: &JobOutcome) -> Result<RecordId, StorageError> {
        answer!(self.write(Op::InsertJobOutcome { outcome: Cow::Borrowed(outcome) }).await, Record)
    }

    async fn insert_error_log(&self, error: &ErrorLog) -> Result<RecordId, StorageError> {
        answer!(self.write(Op::InsertErrorLog { error: Cow::Borrowed(error) }).await, Record)
    }

    async fn insert_user_activity(&self, activity: &UserActivity) -> Result<RecordId, StorageError> {
        answer!(self.write(Op::InsertUserActivity { activity: Cow::Borrowed(activity) }).await, Record)
    }

    async fn request_latencies(
        &self,
        since: DateTime<Utc>,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointLatency>, StorageError> {
        self.tables.request_latencies(since, endpoint).await
    }

    async fn job_status_counts(
        &self,
        since: DateTime<Utc>,
        job_type: Option<&str>,
    ) -> Result<Vec<JobStatusCount>, StorageError> {
        self.tables.job_status_counts(since, job_type).await
    }

    async fn error_trends(
        &self,
        since: DateTime<Utc>,
        category: Option<&str>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ErrorTrend>, StorageError> {
        self.tables.error_trends(since, category, bucket_s).await
    }

    async fn state_history(
        &self,
        device_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StateChange>, StorageError> {
        self.tables.state_history(device_id, since, limit).await
    }

    async fn purge_analytics(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        answer!(self.write(Op::PurgeAnalytics { before, max_rows }).await, Count)
    }
}

/// Leases are not journaled: they coordinate running processes, and one that restarts
/// starts with none held.
#[async_trait]
impl LeaseStore for JournalStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        self.tables.acquire_lease(name, holder, now, until).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        self.tables.release_lease(name, holder).await
    }
}

#[async_trait]
impl PresenceStore for JournalStore {
    async fn apply_transitions(&self, batch: &[StateChange]) -> Result<Vec<Option<RecordId>>, StorageError> {
        answer!(self.write(Op::ApplyTransitions { batch: Cow::Borrowed(batch) }).await, Transitions)
    }

    // Presence is not journaled: after a restart devices get a full silence window anyway.
    async fn mark_seen(&self, seen: &[(DeviceId, DateTime<Utc>)]) -> Result<(), StorageError> {
        self.tables.mark_seen(seen).await
    }

    async fn silent_devices(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<SilentDevice>, StorageError> {
        self.tables.silent_devices(before, limit).await
    }

    async fn states_since(&self, since: DateTime<Utc>) -> Result<Vec<(DeviceId, String)>, StorageError> {
        self.tables.states_since(since).await
    }
}

#[async_trait]
impl AlertStore for JournalStore {
    async fn put_alert_config(&self, config: &AlertConfig) -> Result<(), StorageError> {
        answer!(self.write(Op::PutAlertConfig { kind: config.kind(), document: config.to_json() }).await, Unit)
    }

    async fn delete_alert_config(&self, kind: ConfigKind, id: &str) -> Result<(), StorageError> {
        answer!(self.write(Op::DeleteAlertConfig { kind, id: Cow::Borrowed(id) }).await, Unit)
    }

    async fn alert_configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, StorageError> {
        self.tables.alert_configs(kind).await
    }

    async fn apply_alert_changes(&self, changes: &[AlertChange]) -> Result<(), StorageError> {
        answer!(self.write(Op::ApplyAlertChanges { changes: Cow::Borrowed(changes) }).await, Unit)
    }

    async fn open_alerts(&self) -> Result<Vec<Alert>, StorageError> {
        self.tables.open_alerts().await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StorageError> {
        self.tables.alerts(query).await
    }

    async fn alert_timeline(&self, id: &str) -> Result<Option<(Alert, Vec<AlertEvent>)>, StorageError> {
        self.tables.alert_timeline(id).await
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<Notification>, StorageError> {
        self.tables.pending_notifications(limit).await
    }

    async fn update_notification(&self, notification: &Notification) -> Result<(), StorageError> {
        answer!(self.write(Op::UpdateNotification { notification: Box::new(notification.clone()) }).await, Unit)
    }

    async fn notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StorageError> {
        self.tables.notifications(query).await
    }
}

#[async_trait]
impl Store for JournalStore {
    async fn ping(&self) -> Result<(), StorageError> {
        match self.journal.lock().await.as_ref() {
            Some(_) => Ok(()),
            None => Err(unavailable(io::Error::other("the journal failed earlier; reopen"))),
        }
    }
}
