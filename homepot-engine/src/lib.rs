//! The transport-neutral homepot service. [`Homepot`], built from a store, [`Settings`] and a
//! [`Clock`], owns the write path (SmartDataFilter, group-commit writer), the live view, device
//! states, gateway nodes, the request log, API-key authentication, alerting and the background
//! jobs, and has a method for every ingest and query an adapter needs. Adapters (HTTP, MQTT, an
//! embedding service) turn their requests into these calls.
//!
//! Depends on `homepot-core` for every rule and on the `homepot-storage` traits for every byte
//! it keeps. Must not depend on a database driver, on poem or on any inbound transport, and
//! must not read the environment: settings come in as values. Its one outbound client is the
//! notifier that posts alerts to webhooks and Alertmanagers (reqwest, behind `Notifier`).
#![forbid(unsafe_code)]

mod alerting;
mod auth;
mod clock;
mod containers;
mod device_state;
mod error;
mod export;
mod forward;
mod jobs;
mod lease;
mod nodes;
mod outbound;
mod pipeline;
mod promql;
mod query;
pub mod queue;
mod receipts;
mod request_log;
mod restore;
mod rollups;
mod stats;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::alert::{Alert, AlertEvent, Notification, Receiver, Rule, Silence};
use homepot_core::analytics::{
    EndpointPerformance, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, RequestLog, StateChange, UserActivity,
    summarize_performance,
};
use homepot_core::container::{MetricsData, RequestCommand};
use homepot_core::filter::FilterConfig;
use homepot_core::live::{LiveLimits, LiveStore};
use homepot_core::node::{NodeEvent, NodeReport, Thresholds};
use homepot_core::rollup::Tier;
use homepot_core::{ApiKey, Device, DeviceId, HealthCheck, NewDevice, Point, Role};
use homepot_storage::alerts::{AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use homepot_storage::fleet::{FleetPage, FleetQuery};
use homepot_storage::retention::RetentionPolicy;
use homepot_storage::{KeyId, KeyInfo, NewHealthCheck, NewKey, RecordId, StorageError, Store, StoredHealthCheck};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use alerting::{
    AlertSettings, AlertUpdate, CycleReport, DeliveryPolicy, HttpNotifier, Notifier, SendError, node_rules,
};
pub use auth::{AdminKeyOutcome, Authenticator, Principal, ensure_admin_key, generate_key};
pub use clock::{Clock, ManualClock, SystemClock};
pub use containers::{ContainerRequester, DeviceAnswer, RequestError};
pub use error::EngineError;
pub use export::{EXPORT_PAGE, Export, cells, columns, export, export_end};
pub use forward::{ForwardAuth, ForwardSettings, ForwardStatus, ForwardTarget};
pub use nodes::{ClusterView, NodeView};
pub use pipeline::{HealthWrite, PointsWrite};
pub use promql::{MAX_PROMQL_SERIES, MAX_PROMQL_STEPS, MatchedSeries};
pub use query::{MAX_RANGE_SERIES, RangeAnswer, RangeQuery, RangeSeries, SeriesSelector};
pub use receipts::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN};
pub use stats::{Stats, StatsSnapshot, SubscriberGuard};

use crate::alerting::Alerting;
use crate::clock::nanos;
use crate::device_state::DeviceStates;
use crate::nodes::Nodes;
use crate::pipeline::{Accepted, AnalyticsRecord, Pipeline};
use crate::receipts::{Claimed, Receipts, Ticket};
use crate::request_log::RequestLogs;
use crate::restore::{RestoreWindows, restore_views};
use crate::rollups::{Flush, Rollups};
use crate::writer::WriterTask;

/// Analytics collection: the request log, the collection records and their retention.
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// Keep request logs and accept analytics records (`ANALYTICS_ENABLED`).
    pub enabled: bool,
    /// Request logs that may wait for storage before new ones are dropped.
    pub queue_capacity: usize,
    /// Most request logs written in one transaction.
    pub max_batch: usize,
    /// Analytics records older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How often the retention job runs.
    pub retention_interval: Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 10_000,
            max_batch: 1_000,
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// How long a valid key is remembered by default. Long, because revocations end it sooner:
/// through this server at once, elsewhere within a key revision poll.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(600);

/// Everything the engine can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names this instance among several on one database (in `/health` and the logs), and
    /// holds its leases: unique per instance. The default is `homepot-` and 32 random bits.
    pub instance_id: String,
    /// How long a lease on singleton work (retention, alert delivery) lasts unless renewed:
    /// how soon another instance takes the work over when its holder dies.
    pub lease_ttl: Duration,
    /// An operator-configured admin key, checked without storage; stored keys work too.
    pub admin_key: Option<ApiKey>,
    /// Writes that may wait for storage before ingest is refused (overloaded).
    pub write_queue_capacity: usize,
    /// Most writes committed in one transaction.
    pub max_write_batch: usize,
    /// Limits of the live view (retention, most series, most series per key).
    pub live: LiveLimits,
    /// How long a valid key is remembered without asking storage again; revocations cut it
    /// short (see `key_revision_poll`).
    pub key_cache_ttl: Duration,
    /// How often storage's key revision is read, so that revocations made by another process
    /// on the same database (the CLI, another instance) end remembered keys.
    pub key_revision_poll: Duration,
    /// The SmartDataFilter; off means every sample is stored.
    pub filter: FilterConfig,
    /// A gateway node that has not reported for this long is stale.
    pub node_stale_after: Duration,
    /// Thresholds of the node events.
    pub thresholds: Thresholds,
    /// Analytics collection.
    pub analytics: AnalyticsSettings,
    /// How often devices are expected to send a health check.
    pub heartbeat_interval: Duration,
    /// Heartbeats a device may miss before it is marked offline.
    pub missed_heartbeats: u32,
    /// How long raw rows and each rollup tier are kept.
    pub retention: RetentionPolicy,
    /// How often rollups gathered in memory are merged into storage.
    pub rollup_flush_interval: Duration,
    /// Alert rules, evaluation and delivery.
    pub alerting: AlertSettings,
    /// Remote write forwarding of every accepted sample; off without targets.
    pub forward: ForwardSettings,
    /// How long a request's idempotency key is remembered: a repeat within it is answered as
    /// the first was, and stores nothing.
    pub idempotency_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instance_id: format!("homepot-{:08x}", rand::random::<u32>()),
            lease_ttl: Duration::from_secs(15),
            admin_key: None,
            write_queue_capacity: 16_384,
            max_write_batch: 1_000,
            live: LiveLimits::default(),
            key_cache_ttl: DEFAULT_KEY_CACHE_TTL,
            key_revision_poll: Duration::from_secs(1),
            filter: FilterConfig { enabled: false, ..FilterConfig::default() },
            node_stale_after: Duration::from_secs(60),
            thresholds: Thresholds::default(),
            analytics: AnalyticsSettings::default(),
            heartbeat_interval: Duration::from_secs(60),
            missed_heartbeats: 3,
            retention: RetentionPolicy::default(),
            rollup_flush_interval: Duration::from_secs(10),
            alerting: AlertSettings::default(),
            forward: ForwardSettings::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// A device with what is known about it now.
#[derive(Debug, Clone)]
pub struct DeviceDetail {
    /// The registered device.
    pub device: Device,
    /// Its newest stored health check.
    pub latest_health: Option<StoredHealthCheck>,
    /// Its latest recorded state and since when.
    pub state: Option<(String, DateTime<Utc>)>,
}

/// The homepot service: cheap to clone, every clone the same service.
#[derive(Debug, Clone)]
pub struct Homepot {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    started: DateTime<Utc>,
    pipeline: Pipeline,
    request_logs: Option<RequestLogs>,
    live: Arc<RwLock<LiveStore>>,
    stats: Arc<Stats>,
    auth: Authenticator,
    nodes: Nodes,
    states: Arc<DeviceStates>,
    rollups: Arc<Rollups>,
    /// Devices known to send container data, so that each is recorded once per run.
    container_reporters: Mutex<HashSet<DeviceId>>,
    requester: RwLock<Option<Arc<dyn ContainerRequester>>>,
    alerting: Arc<Alerting>,
    notifier: Arc<dyn Notifier>,
    forward: Option<Arc<forward::Forwarder>>,
    receipts: Receipts,
}

/// The engine's running parts: its writers and background jobs. [`Engine::shutdown`]
/// commits everything accepted.
#[derive(Debug)]
pub struct Engine {
    writer: WriterTask,
    logs: Option<WriterTask>,
    jobs: Vec<JoinHandle<()>>,
    rollups: Arc<Rollups>,
    store: Arc<dyn Store>,
    /// The singleton work's leases, handed over at shutdown.
    leases: Vec<lease::Lease>,
}

impl Engine {
    /// Stops the background jobs, then commits every write and request log already queued,
    /// and the rollups gathered so far.
    pub async fn shutdown(self) {
        {
            let _no_flush = self.rollups.hold_flushes().await;
            for job in &self.jobs {
                job.abort();
            }
            for job in self.jobs {
                // Cancelled at their next await; none is inside a flush.
                let _ = job.await;
            }
        }
        self.writer.drain().await;
        if let Some(logs) = self.logs {
            logs.drain().await;
        }
        if !self.rollups.flush(self.store.as_ref(), Flush::All).await {
            tracing::error!("rollups gathered since the last flush could not be stored at shutdown");
        }
        for lease in &self.leases {
            lease.release().await;
        }
    }
}

impl Homepot {
    /// Builds the service over `store`: rebuilds device states and the live views from
    /// history, then starts the writers and the background jobs.
    ///
    /// # Errors
    /// When storage cannot be read.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Engine), EngineError> {
        let now = clock.now();
        let live = Arc::new(RwLock::new(LiveStore::new(settings.live)));
        let stats = Arc::new(Stats::default());
        let rollups = Arc::new(Rollups::default());
        let forward = if settings.forward.targets.is_empty() {
            None
        } else {
            let opened = forward::Forwarder::open(settings.forward.clone()).map_err(|e| {
                EngineError::NoTransport(format!(
                    "forwarding queue in {} cannot be opened: {e}",
                    settings.forward.queue_dir.display()
                ))
            })?;
            Some(Arc::new(opened))
        };
        let accepted = Accepted {
            live: Arc::clone(&live),
            rollups: Arc::clone(&rollups),
            clock: Arc::clone(&clock),
            forward: forward.clone(),
        };
        let (pipeline, writer) = Pipeline::start(
            Arc::clone(&store),
            accepted,
            Arc::clone(&stats),
            settings.filter,
            settings.write_queue_capacity,
            settings.max_write_batch,
        );
        let allowed_silence = settings.heartbeat_interval.saturating_mul(settings.missed_heartbeats.max(1));
        let states = Arc::new(DeviceStates::new(Arc::clone(&store), pipeline.clone(), allowed_silence, now));
        let stale_after = TimeDelta::from_std(settings.node_stale_after).unwrap_or(TimeDelta::MAX);
        let nodes = Nodes::new(settings.thresholds, stale_after);
        let windows = RestoreWindows {
            node_stale_after: stale_after,
            live_retention: TimeDelta::nanoseconds(settings.live.retention_ns),
            stored_every: TimeDelta::nanoseconds(if settings.filter.enabled { settings.filter.interval_ns } else { 0 }),
        };
        let (restored_nodes, series) = restore_views(store.as_ref(), &live, &nodes, windows, now).await?;
        tracing::info!(nodes = restored_nodes, container_series = series, "live views rebuilt from stored history");
        let (request_logs, logs) = if settings.analytics.enabled {
            let (logs, task) = RequestLogs::start(
                Arc::clone(&store),
                Arc::clone(&stats),
                settings.analytics.queue_capacity,
                settings.analytics.max_batch,
            );
            (Some(logs), Some(task))
        } else {
            (None, None)
        };
        let auth = Authenticator::new(settings.admin_key.as_ref(), Arc::clone(&store), settings.key_cache_ttl);
        let alerting = Arc::new(
            Alerting::load(
                Arc::clone(&store),
                settings.alerting.clone(),
                &settings.thresholds,
                settings.heartbeat_interval,
                now + TimeDelta::nanoseconds(settings.live.retention_ns),
            )
            .await?,
        );
        let notifier: Arc<dyn Notifier> =
            Arc::new(HttpNotifier::new(&settings.alerting.delivery).map_err(EngineError::NoTransport)?);
        let homepot = Self {
            inner: Arc::new(Inner {
                clock,
                started: now,
                pipeline,
                request_logs,
                live,
                stats,
                auth,
                nodes,
                states,
                rollups: Arc::clone(&rollups),
                container_reporters: Mutex::default(),
                requester: RwLock::default(),
                alerting,
                notifier,
                forward: forward.clone(),
                receipts: Receipts::new(Arc::clone(&store), settings.idempotency_window),
                store,
                settings,
            }),
        };
        let mut jobs = jobs::spawn(&homepot);
        if let Some(forward) = &forward {
            let targets = homepot.inner.settings.forward.targets.len();
            jobs.extend((0..targets).map(|i| tokio::spawn(Arc::clone(forward).send_forever(i))));
        }
        let store = Arc::clone(&homepot.inner.store);
        let leases = lease::SINGLETONS.iter().map(|name| homepot.lease(name)).collect();
        Ok((homepot, Engine { writer, logs, jobs, rollups, store, leases }))
    }

    /// What remote write forwarding has done for each target; empty when it is off.
    pub fn forward_status(&self) -> Vec<ForwardStatus> {
        self.inner.forward.as_ref().map(|f| f.status()).unwrap_or_default()
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The lease on singleton work `name`, held under this instance's id for `lease_ttl`.
    fn lease(&self, name: &'static str) -> lease::Lease {
        self.lease_for(name, Duration::ZERO)
    }

    /// The lease on singleton work `name` held for at least `period` (and `lease_ttl`): work
    /// done once per period keeps it from one round to the next.
    fn lease_for(&self, name: &'static str, period: Duration) -> lease::Lease {
        let settings = &self.inner.settings;
        lease::Lease::new(
            name,
            &settings.instance_id,
            Arc::clone(&self.inner.store),
            Arc::clone(&self.inner.clock),
            settings.lease_ttl.max(period),
        )
    }

    /// Service counters; adapters add theirs.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// How long the service has run.
    pub fn uptime(&self) -> TimeDelta {
        self.now() - self.inner.started
    }

    /// Resolves presented keys to principals.
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The holder of `presented` (see [`Authenticator::authenticate`]).
    ///
    /// # Errors
    /// 401-class errors for missing or unknown keys; storage failures.
    pub async fn authenticate(&self, presented: Option<&str>, anonymous_admin: bool) -> Result<Principal, EngineError> {
        self.inner.auth.authenticate(presented, anonymous_admin).await
    }

    /// Whether storage answers and takes writes: a ping alone misses a locked or read-only
    /// SQLite file, so a write refused in the last 30 s counts as failing.
    pub async fn storage_healthy(&self) -> bool {
        match self.inner.store.ping().await {
            Ok(()) => !self.inner.stats.writes_failing(self.now().timestamp_millis()),
            Err(error) => {
                tracing::warn!(%error, "storage check failed");
                false
            }
        }
    }

    // ---- the live view ----

    /// The live view, with series past their retention dropped first.
    pub fn live(&self) -> RwLockReadGuard<'_, LiveStore> {
        let now_ns = nanos(self.now());
        self.inner.live.write().unwrap_or_else(std::sync::PoisonError::into_inner).evict_expired(now_ns);
        self.inner.live.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Clears the live view (of `name` only, when given); history is kept. How many series
    /// were cleared.
    pub fn clear_live(&self, name: Option<&str>) -> usize {
        self.inner.live.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear(name)
    }

    // ---- devices and keys ----

    /// `raw` as a registered device's id, or [`EngineError::DeviceNotFound`].
    ///
    /// # Errors
    /// An unknown or malformed id; storage failures.
    pub async fn registered_device(&self, raw: &str) -> Result<DeviceId, EngineError> {
        let id = DeviceId::parse(raw).map_err(|_| EngineError::DeviceNotFound(raw.to_owned()))?;
        match self.inner.store.device(&id).await? {
            Some(_) => Ok(id),
            None => Err(EngineError::DeviceNotFound(raw.to_owned())),
        }
    }

    /// Registers a device with a first key, shown only in this answer.
    ///
    /// # Errors
    /// [`EngineError::Conflict`] when the id is taken; storage failures.
    pub async fn register_device(&self, new: &NewDevice) -> Result<(Device, ApiKey), EngineError> {
        let key = generate_key();
        let device = self.inner.store.register_device(new, &key.hash(), self.now()).await.map_err(|e| match e {
            StorageError::Conflict { .. } => EngineError::Conflict(format!("device '{}' already exists", new.id())),
            other => other.into(),
        })?;
        self.inner.alerting.devices_changed().await;
        tracing::info!(device_id = %device.id, "device registered");
        Ok((device, key))
    }

    /// Every registered device, ordered by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn devices(&self) -> Result<Vec<Device>, EngineError> {
        Ok(self.inner.store.devices().await?)
    }

    /// A page of the fleet: devices with their latest check and state, filtered, sorted and
    /// continued from a cursor.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn fleet(&self, query: &FleetQuery) -> Result<FleetPage, EngineError> {
        Ok(self.inner.store.fleet(query).await?)
    }

    /// A registered device, if it is.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn device(&self, id: &DeviceId) -> Result<Option<Device>, EngineError> {
        Ok(self.inner.store.device(id).await?)
    }

    /// A device with its newest check and its latest state.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; storage failures.
    pub async fn device_detail(&self, raw: &str) -> Result<DeviceDetail, EngineError> {
        let id = DeviceId::parse(raw).map_err(|_| EngineError::DeviceNotFound(raw.to_owned()))?;
        let store = &self.inner.store;
        let device = store.device(&id).await?.ok_or_else(|| EngineError::DeviceNotFound(raw.to_owned()))?;
        let latest_health = store.latest_health(&id).await?;
        let state = store
            .state_history(id.as_str(), DateTime::<Utc>::UNIX_EPOCH, 1)
            .await?
            .pop()
            .map(|change| (change.new_state, change.timestamp));
        Ok(DeviceDetail { device, latest_health, state })
    }

    /// Removes a device with its keys and health checks; its keys stop working at once.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; storage failures.
    pub async fn remove_device(&self, raw: &str) -> Result<(), EngineError> {
        let id = DeviceId::parse(raw).map_err(|_| EngineError::DeviceNotFound(raw.to_owned()))?;
        self.inner.store.remove_device(&id).await.map_err(|e| match e {
            StorageError::NotFound { .. } => EngineError::DeviceNotFound(raw.to_owned()),
            other => other.into(),
        })?;
        self.inner.auth.keys_changed();
        self.inner.alerting.devices_changed().await;
        tracing::info!(device_id = %id, "device removed");
        Ok(())
    }

    /// Issues a key of `role` (a device key when `device` is given), shown only in this
    /// answer. Existing keys stay valid until revoked.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; storage failures.
    pub async fn issue_key(&self, role: Role, device: Option<DeviceId>) -> Result<(KeyInfo, ApiKey), EngineError> {
        let key = generate_key();
        let created_at = self.now();
        let new = NewKey { hash: key.hash(), role, device_id: device.clone(), created_at };
        let id = self.inner.store.insert_key(&new).await.map_err(|e| match (e, &device) {
            (StorageError::NotFound { .. }, Some(device)) => EngineError::DeviceNotFound(device.to_string()),
            (other, _) => other.into(),
        })?;
        tracing::info!(key_id = id.0, role = role.as_str(), device_id = ?device.as_ref().map(DeviceId::as_str), "key issued");
        Ok((KeyInfo { id, role, device_id: device, created_at }, key))
    }

    /// Unrevoked keys of `device`, or of no device (admin and read keys).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, EngineError> {
        Ok(self.inner.store.keys(device).await?)
    }

    /// Revokes a key; it stops working with the next request. The last admin key cannot be
    /// revoked unless an admin key is configured outside storage.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for no such key; [`EngineError::Conflict`] for the last
    /// admin key; storage failures.
    pub async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>) -> Result<(), EngineError> {
        let admin_configured = self.inner.auth.has_configured_admin();
        homepot_storage::keys::revoke_key(&*self.inner.store, id, device, admin_configured, self.now()).await.map_err(
            |e| match e {
                StorageError::NotFound { .. } => EngineError::NotFound(match device {
                    Some(device) => format!("API key {} not found for device '{device}'", id.0),
                    None => format!("API key {} not found", id.0),
                }),
                StorageError::Conflict { .. } => EngineError::Conflict(
                    "This is the last admin key: issue another or configure HOMEPOT_ADMIN_KEY before revoking it"
                        .to_owned(),
                ),
                other => other.into(),
            },
        )?;
        self.inner.auth.keys_changed();
        tracing::info!(key_id = id.0, "key revoked");
        Ok(())
    }

    // ---- health checks ----

    /// Records a validated health check: through the SmartDataFilter, durable before this
    /// returns when stored, and into the device's state. It is stored at its own
    /// `checked_at`, when it has one, else at its acceptance time. With an idempotency `key`
    /// already used within the window, nothing is stored and the first answer is returned.
    /// Returns what became of it and its acceptance time.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; a `checked_at` out of bounds (`Invalid`); a full
    /// queue; storage failures.
    pub async fn record_health(
        &self,
        device: DeviceId,
        check: HealthCheck,
        key: Option<&IdempotencyKey>,
    ) -> Result<(HealthWrite, DateTime<Utc>), EngineError> {
        let accepted_at = self.now();
        let max_age = self.inner.settings.retention.raw.map(|d| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX));
        let checked_at = check.sample_time(accepted_at, max_age).map_err(|e| EngineError::invalid("body", e))?;
        let device_text = device.to_string();
        let is_healthy = check.report().is_healthy;
        let error = check.report().error_message.clone();
        let write = async |ticket: Option<&Ticket>| {
            let new = NewHealthCheck { device_id: device, checked_at, check, receipt: None };
            let write = self.inner.pipeline.write_health(new, ticket).await.map_err(|e| match e {
                EngineError::Storage(ref storage) if matches!(**storage, StorageError::NotFound { .. }) => {
                    EngineError::DeviceNotFound(device_text.clone())
                }
                other => other,
            })?;
            self.inner.alerting.observe_health(&device_text, is_healthy, accepted_at);
            self.inner.states.observe_health(&device_text, is_healthy, error.as_deref(), accepted_at).await;
            Ok((write, accepted_at))
        };
        self.once(key, accepted_at, write, |r| Ok((r.health()?, r.accepted_at()))).await
    }

    /// A device's checks accepted within the last `hours`, newest first, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn health_history(
        &self,
        device: &DeviceId,
        hours: u32,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, EngineError> {
        let since = self.now() - TimeDelta::hours(i64::from(hours));
        Ok(self.inner.store.health_since(device, since, limit).await?)
    }

    // ---- metrics ----

    /// Writes points that `owner` (a key's fingerprint, or a transport's name) sent: through
    /// the SmartDataFilter, durable before this returns. With an idempotency `key` already
    /// used within the window, nothing is stored and the first answer is returned.
    ///
    /// # Errors
    /// [`EngineError::SeriesLimit`] (nothing stored); a full queue; storage failures.
    pub async fn write_points(
        &self,
        owner: &str,
        points: Vec<Point>,
        key: Option<&IdempotencyKey>,
    ) -> Result<PointsWrite, EngineError> {
        self.once(
            key,
            self.now(),
            async |ticket| self.inner.pipeline.write_points(owner, points, ticket).await,
            |r| r.points(),
        )
        .await
    }

    /// Runs `write` once per idempotency key: a repeat within the window gets `replay` of the
    /// first's receipt; a fresh keyed request hands `write` the ticket its receipt is made of.
    async fn once<T>(
        &self,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
        write: impl AsyncFnOnce(Option<&Ticket>) -> Result<T, EngineError>,
        replay: impl FnOnce(&receipts::Repeat) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(key) = key else { return write(None).await };
        match self.inner.receipts.claim(key, now).await? {
            Claimed::Repeat(repeat) => replay(&repeat),
            Claimed::Fresh(claim) => match write(Some(&claim.ticket)).await {
                // Another instance stored the key's first use while this one ran.
                Err(EngineError::Storage(error)) if matches!(*error, StorageError::Conflict { .. }) => {
                    match self.inner.receipts.repeat(key, now).await? {
                        Some(repeat) => replay(&repeat),
                        None => Err(EngineError::Storage(error)),
                    }
                }
                written => written,
            },
        }
    }

    /// Points named `name` within the last `hours` whose tags include every pair of `tags`,
    /// newest first, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn metric_history(
        &self,
        name: &str,
        hours: u32,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, EngineError> {
        let since_ns = nanos(self.now() - TimeDelta::hours(i64::from(hours)));
        Ok(self.inner.store.points_since(name, since_ns, tags, limit).await?)
    }

    // ---- gateway nodes ----

    /// Records a node's report: its points are written (placed at the acceptance time: node
    /// clocks drift), then the node view and its events are updated. The acceptance time.
    ///
    /// # Errors
    /// As [`Homepot::write_points`].
    pub async fn record_node_report(
        &self,
        owner: &str,
        node: &DeviceId,
        report: NodeReport,
        key: Option<&IdempotencyKey>,
    ) -> Result<DateTime<Utc>, EngineError> {
        let accepted_at = self.now();
        let write = async |ticket: Option<&Ticket>| {
            self.inner.pipeline.write_points(owner, report.points(node, nanos(accepted_at)), ticket).await?;
            self.inner.nodes.record(node.as_str(), report, accepted_at);
            Ok(accepted_at)
        };
        self.once(key, accepted_at, write, |r| r.points().map(|_| r.accepted_at())).await
    }

    /// The nodes whose labels match every filter, with the cluster summary.
    pub fn cluster(&self, filters: &[(String, String)]) -> ClusterView {
        self.inner.nodes.cluster(filters, self.now())
    }

    /// Node events from now on.
    pub fn node_events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.nodes.subscribe()
    }

    // ---- container metrics ----

    /// Writes a data message's measurements for `device` and remembers that it sends
    /// container data. How many measurements were accepted.
    ///
    /// # Errors
    /// As [`Homepot::write_points`].
    pub async fn record_container_data(
        &self,
        owner: &str,
        device: &DeviceId,
        data: &MetricsData,
        key: Option<&IdempotencyKey>,
    ) -> Result<usize, EngineError> {
        let accepted = data.snapshot.iter().map(|s| s.measurements.len()).sum();
        self.write_points(owner, data.points(), key).await?;
        self.note_container_reporter(device).await;
        Ok(accepted)
    }

    /// Records, once per run, that `device` sends container data.
    async fn note_container_reporter(&self, device: &DeviceId) {
        let reporters = || self.inner.container_reporters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reporters().insert(device.clone()) {
            return;
        }
        if let Err(error) = self.inner.store.mark_container_reporter(device, self.now()).await {
            tracing::warn!(%error, %device, "could not record a device as sending container data");
            reporters().remove(device);
        }
    }

    /// The registered devices that have sent container data, ordered by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn container_reporters(&self) -> Result<Vec<DeviceId>, EngineError> {
        Ok(self.inner.store.container_reporters().await?)
    }

    /// Makes `requester` the transport that carries metrics requests to devices.
    pub fn set_container_requester(&self, requester: Arc<dyn ContainerRequester>) {
        *self.inner.requester.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(requester);
    }

    /// Asks a registered device for container metrics and waits for its answer.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; [`EngineError::NoTransport`] when no transport is
    /// registered; [`EngineError::Timeout`]; storage failures.
    pub async fn request_container_metrics(&self, command: &RequestCommand) -> Result<DeviceAnswer, EngineError> {
        self.registered_device(command.device_id.as_str()).await?;
        let requester = self.inner.requester.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(requester) = requester else {
            return Err(EngineError::NoTransport(
                "No MQTT bridge runs on this server: start it with --mqtt-url".to_owned(),
            ));
        };
        match requester.request(&command.thing_id(), command.frequency_ms, &command.filters).await {
            Ok(answer) => Ok(answer),
            Err(RequestError::Timeout) => {
                Err(EngineError::Timeout(format!("Device '{}' did not answer in time", command.device_id)))
            }
            Err(RequestError::NotSent(error)) => {
                tracing::warn!(%error, device = %command.device_id, "metrics request not sent");
                Err(EngineError::NoTransport("The MQTT bridge could not send the request, retry later".to_owned()))
            }
        }
    }

    // ---- analytics ----

    /// Whether analytics collection is on.
    pub fn analytics_enabled(&self) -> bool {
        self.inner.settings.analytics.enabled
    }

    /// `Ok` when analytics collection is on, else [`EngineError::NotFound`] saying it is off.
    ///
    /// # Errors
    /// When analytics are off.
    pub fn require_analytics(&self) -> Result<(), EngineError> {
        if self.analytics_enabled() {
            Ok(())
        } else {
            Err(EngineError::NotFound(
                "Analytics collection is disabled on this server (ANALYTICS_ENABLED=false)".to_owned(),
            ))
        }
    }

    /// Queues a request log; never waits (a full queue drops and counts it).
    pub fn log_request(&self, log: RequestLog) {
        if let Some(logs) = &self.inner.request_logs {
            logs.log(log);
        }
    }

    async fn record(&self, record: AnalyticsRecord) -> Result<RecordId, EngineError> {
        self.require_analytics()?;
        self.inner.pipeline.write_record(record).await
    }

    /// Stores a frontend user's activity.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] when analytics are off; storage failures.
    pub async fn record_user_activity(&self, activity: UserActivity) -> Result<RecordId, EngineError> {
        self.record(AnalyticsRecord::UserActivity(activity)).await
    }

    /// Stores a categorised error.
    ///
    /// # Errors
    /// As [`Homepot::record_user_activity`].
    pub async fn record_error_log(&self, error: ErrorLog) -> Result<RecordId, EngineError> {
        self.record(AnalyticsRecord::ErrorLog(error)).await
    }

    /// Stores a job's outcome.
    ///
    /// # Errors
    /// As [`Homepot::record_user_activity`].
    pub async fn record_job_outcome(&self, outcome: JobOutcome) -> Result<RecordId, EngineError> {
        self.record(AnalyticsRecord::JobOutcome(outcome)).await
    }

    /// Stores a state change a client reports for a registered device; later transitions
    /// start from it.
    ///
    /// # Errors
    /// As [`Homepot::record_user_activity`]; [`EngineError::DeviceNotFound`].
    pub async fn record_state_change(&self, change: StateChange) -> Result<RecordId, EngineError> {
        self.require_analytics()?;
        self.registered_device(&change.device_id).await?;
        let (device, state) = (change.device_id.clone(), change.new_state.clone());
        let id = self.record(AnalyticsRecord::StateChange(change)).await?;
        self.inner.states.observe_posted(&device, &state);
        Ok(id)
    }

    fn since(&self, hours: u32) -> DateTime<Utc> {
        self.now() - TimeDelta::hours(i64::from(hours))
    }

    /// Request counts and latencies per route template and method over the last `hours`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn api_performance(
        &self,
        hours: u32,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointPerformance>, EngineError> {
        let parts = self.inner.store.request_latencies(self.since(hours), endpoint).await?;
        Ok(summarize_performance(&parts))
    }

    /// Job outcome counts per job type and status over the last `hours`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn job_outcomes(&self, hours: u32, job_type: Option<&str>) -> Result<Vec<JobStatusCount>, EngineError> {
        Ok(self.inner.store.job_status_counts(self.since(hours), job_type).await?)
    }

    /// Error counts per category and severity over the last `hours`, per bucket of `bucket`
    /// if given.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn error_trends(
        &self,
        hours: u32,
        category: Option<&str>,
        bucket: Option<Tier>,
    ) -> Result<Vec<ErrorTrend>, EngineError> {
        Ok(self.inner.store.error_trends(self.since(hours), category, bucket.map(Tier::seconds)).await?)
    }

    /// A registered device's state changes over the last `hours`, newest first, at most
    /// `limit`.
    ///
    /// # Errors
    /// [`EngineError::DeviceNotFound`]; storage failures.
    pub async fn state_history(&self, raw: &str, hours: u32, limit: usize) -> Result<Vec<StateChange>, EngineError> {
        self.registered_device(raw).await?;
        Ok(self.inner.store.state_history(raw, self.since(hours), limit).await?)
    }
    // ---- alerting ----

    /// Evaluates every alert rule now (the evaluation job does this every interval).
    ///
    /// # Errors
    /// Storage failures; nothing changed is then stored or announced.
    pub async fn evaluate_alerts(&self) -> Result<CycleReport, EngineError> {
        self.inner.alerting.cycle(&self.inner.live, self.now()).await
    }

    /// Attempts every notification that is due now (the delivery job does this continually);
    /// how many were attempted.
    pub async fn deliver_notifications(&self) -> usize {
        self.inner.alerting.deliver_due(self.inner.notifier.as_ref(), self.inner.clock.as_ref()).await
    }

    /// Alert changes from now on.
    pub fn alert_updates(&self) -> broadcast::Receiver<AlertUpdate> {
        self.inner.alerting.updates.subscribe()
    }

    /// Every stored configuration of `kind` (rules, silences, receivers), ordered by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn alert_configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, EngineError> {
        self.inner.alerting.configs(kind).await
    }

    /// Reads and stores a rule document; `id` (from a path) must agree with the body's.
    ///
    /// # Errors
    /// [`EngineError::Invalid`] naming each bad field; storage failures.
    pub async fn put_alert_rule(&self, document: &serde_json::Value, id: Option<&str>) -> Result<Rule, EngineError> {
        self.inner.alerting.put_rule(document, id).await
    }

    /// One rule.
    ///
    /// # Errors
    /// [`EngineError::NotFound`]; storage failures.
    pub async fn alert_rule(&self, id: &str) -> Result<Rule, EngineError> {
        self.inner.alerting.rule(id).await
    }

    /// Deletes a rule, silence or receiver. A deleted rule's open alerts resolve at the next
    /// evaluation.
    ///
    /// # Errors
    /// [`EngineError::NotFound`]; storage failures.
    pub async fn delete_alert_config(&self, kind: ConfigKind, id: &str) -> Result<(), EngineError> {
        self.inner.alerting.delete(kind, id).await
    }

    /// Reads and stores a silence.
    ///
    /// # Errors
    /// [`EngineError::Invalid`]; storage failures.
    pub async fn add_silence(&self, document: &serde_json::Value) -> Result<Silence, EngineError> {
        self.inner.alerting.add_silence(document, self.now()).await
    }

    /// Reads and stores a receiver; `id` (from a path) must agree with the body's.
    ///
    /// # Errors
    /// [`EngineError::Invalid`] (a URL that is not http(s), say); storage failures.
    pub async fn put_receiver(&self, document: &serde_json::Value, id: Option<&str>) -> Result<Receiver, EngineError> {
        self.inner.alerting.put_receiver(document, id).await
    }

    /// Alerts, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, EngineError> {
        self.inner.alerting.alerts(query).await
    }

    /// One alert and its timeline.
    ///
    /// # Errors
    /// [`EngineError::NotFound`]; storage failures.
    pub async fn alert(&self, id: &str) -> Result<(Alert, Vec<AlertEvent>), EngineError> {
        self.inner.alerting.timeline(id).await
    }

    /// Acknowledges an open alert: it keeps firing until it resolves, without repeats.
    ///
    /// # Errors
    /// [`EngineError::NotFound`]; [`EngineError::Conflict`] for a resolved alert; storage
    /// failures.
    pub async fn ack_alert(&self, id: &str, by: String, note: Option<String>) -> Result<Alert, EngineError> {
        self.inner.alerting.ack(id, by, note, self.now()).await
    }

    /// Notifications with their delivery state, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn alert_notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, EngineError> {
        self.inner.alerting.notifications(query).await
    }
}
