//! [`InMemoryStore`]: every storage trait over plain maps, proven by the same conformance kit
//! as the SQLite and PostgreSQL backends. It keeps nothing across restarts, so it suits
//! tests, demos and embedding services that keep their own data elsewhere; not production.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use crate::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use crate::export::{ExportCursor, ExportKind, ExportPage, ExportQuery, ExportRecord};
use crate::fleet::{FleetDevice, FleetPage, FleetQuery, LatestHealth, fleet_order};
use crate::{
    AlertStore, AnalyticsStore, DeviceStore, ExportStore, HealthCheckId, HealthStore, KeyId, KeyInfo, KeyStore,
    LeaseStore, MetricStore, NewHealthCheck, NewKey, NewReceipt, PresenceStore, Receipt, ReceiptStore, RecordId,
    RollupDelta, RollupStore, SeriesId, SeriesKey, SilentDevice, StorageError, Store, StoredBucket, StoredHealthCheck,
    StoredKey, StoredSeries,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::alert::{Alert, AlertEvent, DeliveryState, Notification};
use homepot_core::analytics::{
    EndpointLatency, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, RequestLog, StateChange, UserActivity,
};
use homepot_core::rollup::{Aggregate, Tier};
use homepot_core::{Device, DeviceId, KeyHash, NewDevice, Point, Role};

#[derive(Debug, Default)]
struct Tables {
    devices: BTreeMap<DeviceId, Device>,
    keys: Vec<KeyRow>,
    health: Vec<StoredHealthCheck>,
    points: Vec<Point>,
    receipts: HashMap<(String, String), Receipt>,
    requests: Vec<RequestLog>,
    states: Vec<StateChange>,
    jobs: Vec<JobOutcome>,
    errors: Vec<ErrorLog>,
    activities: Vec<UserActivity>,
    container_reporters: BTreeSet<DeviceId>,
    series: Vec<StoredSeries>,
    series_ids: HashMap<SeriesKey, SeriesId>,
    buckets: BTreeMap<(SeriesId, Tier, i64), Aggregate>,
    alert_configs: BTreeMap<(ConfigKind, String), AlertConfig>,
    alerts: BTreeMap<String, Alert>,
    alert_events: Vec<AlertEvent>,
    /// In the order queued.
    outbox: Vec<Notification>,
    next_id: i64,
    key_revision: u64,
    /// Holder and end of each lease.
    leases: HashMap<String, (String, DateTime<Utc>)>,
    /// When each device was last seen.
    seen: HashMap<DeviceId, DateTime<Utc>>,
}

#[derive(Debug)]
struct KeyRow {
    key: StoredKey,
    created_at: DateTime<Utc>,
    revoked: bool,
}

impl Tables {
    fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Each device's newest state change; the later stored of equal times wins.
    fn current_states(&self) -> HashMap<&str, &StateChange> {
        let mut states: HashMap<&str, &StateChange> = HashMap::new();
        for change in &self.states {
            let newest = states.entry(change.device_id.as_str()).or_insert(change);
            if change.timestamp >= newest.timestamp {
                *newest = change;
            }
        }
        states
    }
}

/// All storage traits over in-process maps behind one mutex.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    tables: Mutex<Tables>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated: every method
        // checks first and mutates last.
        self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl DeviceStore for InMemoryStore {
    async fn register_device(
        &self,
        new: &NewDevice,
        key: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Device, StorageError> {
        let mut t = self.tables();
        if t.devices.contains_key(new.id()) {
            return Err(StorageError::conflict(format!("device '{}'", new.id())));
        }
        let device = new.clone().into_device(now);
        let id = KeyId(t.next_id());
        let key = StoredKey { id, hash: *key, role: Role::Device, device_id: Some(device.id.clone()) };
        t.keys.push(KeyRow { key, created_at: now, revoked: false });
        t.devices.insert(device.id.clone(), device.clone());
        Ok(device)
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError> {
        Ok(self.tables().devices.get(id).cloned())
    }

    async fn devices(&self) -> Result<Vec<Device>, StorageError> {
        Ok(self.tables().devices.values().cloned().collect())
    }

    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError> {
        let mut t = self.tables();
        if t.devices.remove(id).is_none() {
            return Err(StorageError::not_found(format!("device '{id}'")));
        }
        t.keys.retain(|k| k.key.device_id.as_ref() != Some(id));
        t.key_revision += 1;
        t.health.retain(|h| &h.device_id != id);
        t.container_reporters.remove(id);
        Ok(())
    }

    async fn mark_container_reporter(&self, id: &DeviceId, _at: DateTime<Utc>) -> Result<(), StorageError> {
        let mut t = self.tables();
        if t.devices.contains_key(id) {
            t.container_reporters.insert(id.clone());
        }
        Ok(())
    }

    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError> {
        Ok(self.tables().container_reporters.iter().cloned().collect())
    }

    async fn fleet(&self, query: &FleetQuery) -> Result<FleetPage, StorageError> {
        let t = self.tables();
        let mut latest: HashMap<&DeviceId, &StoredHealthCheck> = HashMap::new();
        for check in &t.health {
            let newest = latest.entry(&check.device_id).or_insert(check);
            if (check.checked_at, check.id) >= (newest.checked_at, newest.id) {
                *newest = check;
            }
        }
        let states = t.current_states();
        let key = query.sort;
        let mut devices: Vec<FleetDevice> = t
            .devices
            .values()
            .map(|device| FleetDevice {
                device: device.clone(),
                latest: latest.get(&device.id).map(|c| LatestHealth {
                    checked_at: c.checked_at,
                    is_healthy: c.is_healthy,
                    response_time_ms: c.response_time_ms,
                    cpu_percent: number(c, "cpu_percent"),
                    memory_percent: number(c, "memory_percent"),
                    disk_percent: number(c, "disk_percent"),
                }),
                state: states.get(device.id.as_str()).map(|c| (c.new_state.clone(), c.timestamp)),
            })
            .filter(|d| d.matches(query))
            .collect();
        devices.sort_by(|a, b| {
            let (x, y) = (a.sort_value(key), b.sort_value(key));
            fleet_order((&x, a.device.id.as_str()), (&y, b.device.id.as_str()), query.descending)
        });
        if let Some(after) = &query.after {
            devices.retain(|d| {
                let value = d.sort_value(key);
                fleet_order((&value, d.device.id.as_str()), (&after.value, after.device_id.as_str()), query.descending)
                    == std::cmp::Ordering::Greater
            });
        }
        devices.truncate(query.limit.saturating_add(1));
        Ok(FleetPage::from_sorted(devices, query))
    }
}

/// A figure of a stored check's `system` group.
fn number(check: &StoredHealthCheck, field: &str) -> Option<f64> {
    check.response_data.get("system").and_then(|s| s.get(field)).and_then(serde_json::Value::as_f64)
}

#[async_trait]
impl KeyStore for InMemoryStore {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError> {
        let mut t = self.tables();
        if let Some(device) = &key.device_id
            && !t.devices.contains_key(device)
        {
            return Err(StorageError::not_found(format!("device '{device}'")));
        }
        if t.keys.iter().any(|k| k.key.hash == key.hash) {
            return Err(StorageError::conflict("api key"));
        }
        let id = KeyId(t.next_id());
        let stored = StoredKey { id, hash: key.hash, role: key.role, device_id: key.device_id.clone() };
        t.keys.push(KeyRow { key: stored, created_at: key.created_at, revoked: false });
        Ok(id)
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError> {
        Ok(self.tables().keys.iter().find(|k| !k.revoked && k.key.hash.matches(hash)).map(|k| k.key.clone()))
    }

    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError> {
        Ok(self.tables().keys.iter().any(|k| !k.revoked && k.key.role == role))
    }

    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError> {
        Ok(self
            .tables()
            .keys
            .iter()
            .filter(|k| !k.revoked && k.key.device_id.as_ref() == device)
            .map(|k| KeyInfo {
                id: k.key.id,
                role: k.key.role,
                device_id: k.key.device_id.clone(),
                created_at: k.created_at,
            })
            .collect())
    }

    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, _now: DateTime<Utc>) -> Result<(), StorageError> {
        let mut t = self.tables();
        let row = t.keys.iter_mut().find(|k| !k.revoked && k.key.id == id && k.key.device_id.as_ref() == device);
        match row {
            Some(row) => {
                row.revoked = true;
                t.key_revision += 1;
                Ok(())
            }
            None => Err(StorageError::not_found(format!("key {}", id.0))),
        }
    }

    async fn key_revision(&self) -> Result<u64, StorageError> {
        Ok(self.tables().key_revision)
    }
}

#[async_trait]
impl HealthStore for InMemoryStore {
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError> {
        let mut t = self.tables();
        if let Some(missing) = batch.iter().find(|c| !t.devices.contains_key(&c.device_id)) {
            return Err(StorageError::not_found(format!("device '{}'", missing.device_id)));
        }
        t.check_receipts(batch.iter().filter_map(|c| c.receipt.as_ref()))?;
        let mut ids = Vec::with_capacity(batch.len());
        for item in batch {
            let id = HealthCheckId(t.next_id());
            let report = item.check.report();
            t.health.push(StoredHealthCheck {
                id,
                device_id: item.device_id.clone(),
                is_healthy: report.is_healthy,
                response_time_ms: report.response_time_ms,
                status_code: report.status_code,
                endpoint: report.endpoint.clone(),
                response_data: item.check.document(),
                error_message: report.error_message.clone(),
                checked_at: item.checked_at,
            });
            ids.push(id);
            if let Some(receipt) = &item.receipt {
                t.keep_receipt(receipt, Some(id));
            }
        }
        Ok(ids)
    }

    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        let t = self.tables();
        let mut found: Vec<StoredHealthCheck> =
            t.health.iter().filter(|h| &h.device_id == device && h.checked_at >= since).cloned().collect();
        found.sort_by_key(|h| std::cmp::Reverse((h.checked_at, h.id)));
        found.truncate(limit);
        Ok(found)
    }

    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError> {
        let t = self.tables();
        Ok(t.health.iter().filter(|h| &h.device_id == device).max_by_key(|h| (h.checked_at, h.id)).cloned())
    }

    async fn purge_health(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        max_rows: u64,
    ) -> Result<u64, StorageError> {
        Ok(purge(&mut self.tables().health, |h| h.checked_at >= from && h.checked_at < before, max_rows))
    }
}

impl Tables {
    /// Fails when any of `receipts` finds its key still taken.
    fn check_receipts<'a>(&self, receipts: impl IntoIterator<Item = &'a NewReceipt>) -> Result<(), StorageError> {
        for receipt in receipts {
            let stored = self.receipts.get(&(receipt.scope.clone(), receipt.key.clone()));
            if stored.is_some_and(|s| s.accepted_at >= receipt.replaces_before) {
                return Err(StorageError::conflict(format!("idempotency key '{}' is taken", receipt.key)));
            }
        }
        Ok(())
    }

    fn keep_receipt(&mut self, receipt: &NewReceipt, health_id: Option<HealthCheckId>) {
        let stored = Receipt { accepted_at: receipt.accepted_at, answer: receipt.answer.clone(), health_id };
        self.receipts.insert((receipt.scope.clone(), receipt.key.clone()), stored);
    }
}

#[async_trait]
impl ReceiptStore for InMemoryStore {
    async fn receipt(&self, scope: &str, key: &str) -> Result<Option<Receipt>, StorageError> {
        Ok(self.tables().receipts.get(&(scope.to_owned(), key.to_owned())).cloned())
    }

    async fn purge_receipts(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        let mut t = self.tables();
        let old: Vec<(String, String)> = t
            .receipts
            .iter()
            .filter(|(_, r)| r.accepted_at < before)
            .map(|(k, _)| k.clone())
            .take(usize::try_from(max_rows).unwrap_or(usize::MAX))
            .collect();
        for key in &old {
            t.receipts.remove(key);
        }
        Ok(old.len() as u64)
    }
}

#[async_trait]
impl MetricStore for InMemoryStore {
    async fn insert_points(&self, batch: &[Point], receipts: &[NewReceipt]) -> Result<(), StorageError> {
        let mut t = self.tables();
        t.check_receipts(receipts)?;
        t.points.extend_from_slice(batch);
        for receipt in receipts {
            t.keep_receipt(receipt, None);
        }
        Ok(())
    }

    async fn points_since(
        &self,
        name: &str,
        since_ns: i64,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, StorageError> {
        let t = self.tables();
        // Index order breaks ties between equal times: later inserts count as newer.
        let mut found: Vec<(usize, &Point)> = t
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.name() == name && p.timestamp_ns() >= since_ns && tags.iter().all(|pair| p.tags().contains(pair))
            })
            .collect();
        found.sort_by_key(|(i, p)| std::cmp::Reverse((p.timestamp_ns(), *i)));
        Ok(found.into_iter().take(limit).map(|(_, p)| p.clone()).collect())
    }

    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError> {
        let t = self.tables();
        let mut latest: HashMap<(&str, &[(String, String)]), &Point> = HashMap::new();
        // In insertion order, so a later-stored point of equal time replaces an earlier one.
        for p in t.points.iter().filter(|p| names.contains(&p.name()) && p.timestamp_ns() >= since_ns) {
            let newest = latest.entry((p.name(), p.tags())).or_insert(p);
            if p.timestamp_ns() >= newest.timestamp_ns() {
                *newest = p;
            }
        }
        Ok(latest.into_values().cloned().collect())
    }

    async fn purge_points(&self, from_ns: i64, before_ns: i64, max_rows: u64) -> Result<u64, StorageError> {
        let old = |p: &Point| p.timestamp_ns() >= from_ns && p.timestamp_ns() < before_ns;
        Ok(purge(&mut self.tables().points, old, max_rows))
    }
}

#[async_trait]
impl RollupStore for InMemoryStore {
    async fn merge_rollups(&self, deltas: &[RollupDelta]) -> Result<(), StorageError> {
        let mut t = self.tables();
        for delta in deltas {
            let id = match t.series_ids.get(&delta.series) {
                Some(id) => *id,
                None => {
                    let id = SeriesId(t.next_id());
                    t.series_ids.insert(delta.series.clone(), id);
                    t.series.push(StoredSeries { id, key: delta.series.clone() });
                    id
                }
            };
            t.buckets
                .entry((id, delta.tier, delta.start))
                .and_modify(|a| a.merge(&delta.aggregate))
                .or_insert(delta.aggregate);
        }
        Ok(())
    }

    async fn find_series(
        &self,
        names: &[&str],
        field: &str,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StorageError> {
        let t = self.tables();
        Ok(t.series
            .iter()
            .filter(|s| {
                names.contains(&s.key.name.as_str())
                    && s.key.field == field
                    && tags.iter().all(|pair| s.key.tags.contains(pair))
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn series_names(&self) -> Result<Vec<(String, String)>, StorageError> {
        let names: std::collections::BTreeSet<(String, String)> =
            self.tables().series.iter().map(|s| (s.key.name.clone(), s.key.field.clone())).collect();
        Ok(names.into_iter().collect())
    }

    async fn rollup_buckets(
        &self,
        series: &[SeriesId],
        tier: Tier,
        from_s: i64,
        to_s: i64,
    ) -> Result<Vec<StoredBucket>, StorageError> {
        if from_s >= to_s {
            return Ok(Vec::new());
        }
        let t = self.tables();
        let mut ids = series.to_vec();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids
            .into_iter()
            .flat_map(|id| {
                t.buckets
                    .range((id, tier, from_s)..(id, tier, to_s))
                    .map(move |(&(_, _, start), aggregate)| StoredBucket { series: id, start, aggregate: *aggregate })
            })
            .collect())
    }

    async fn purge_rollups(&self, tier: Tier, before_s: i64, max_rows: u64) -> Result<u64, StorageError> {
        let mut t = self.tables();
        let old: Vec<(SeriesId, Tier, i64)> = t
            .buckets
            .keys()
            .filter(|(_, bucket_tier, start)| *bucket_tier == tier && *start < before_s)
            .take(usize::try_from(max_rows).unwrap_or(usize::MAX))
            .copied()
            .collect();
        for key in &old {
            t.buckets.remove(key);
        }
        Ok(old.len() as u64)
    }

    async fn oldest_bucket(&self, tier: Tier) -> Result<Option<i64>, StorageError> {
        Ok(self.tables().buckets.keys().filter(|(_, t, _)| *t == tier).map(|(_, _, start)| *start).min())
    }
}

#[async_trait]
impl ExportStore for InMemoryStore {
    // Rows without an id of their own (points, analytics records) use their position, which
    // a purge during an export shifts: rows sharing the cursor's instant may then be skipped.
    async fn export_page(
        &self,
        query: &ExportQuery,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<ExportPage, StorageError> {
        let t = self.tables();
        let device = |id: Option<&str>| query.device.as_deref().is_none_or(|wanted| id == Some(wanted));
        let name = |n: &str| query.name.as_deref().is_none_or(|wanted| n == wanted);
        let at = |time: DateTime<Utc>| crate::export::nanos(time);
        let position = |i: usize| i64::try_from(i).unwrap_or(i64::MAX);
        let rows: Vec<(ExportCursor, ExportRecord)> = match query.kind {
            ExportKind::Health => t
                .health
                .iter()
                .filter(|h| device(Some(h.device_id.as_str())))
                .map(|h| (ExportCursor { at_ns: at(h.checked_at), id: h.id.0 }, ExportRecord::Health(h.clone())))
                .collect(),
            ExportKind::Metrics => t
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| name(p.name()) && query.device_tag_matches(p.tags()))
                .map(|(i, p)| {
                    (ExportCursor { at_ns: p.timestamp_ns(), id: position(i) }, ExportRecord::Metric(p.clone()))
                })
                .collect(),
            ExportKind::Rollups => t
                .buckets
                .iter()
                .filter(|((_, tier, _), _)| *tier == query.tier)
                .filter_map(|(&(id, tier, start), aggregate)| {
                    let series = &t.series.iter().find(|s| s.id == id)?.key;
                    (name(&series.name) && query.device_tag_matches(&series.tags)).then(|| {
                        let cursor = ExportCursor { at_ns: start.saturating_mul(1_000_000_000), id: id.0 };
                        (cursor, ExportRecord::Rollup { series: series.clone(), tier, start, aggregate: *aggregate })
                    })
                })
                .collect(),
            ExportKind::RequestLogs => t
                .requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (ExportCursor { at_ns: at(r.timestamp), id: position(i) }, ExportRecord::RequestLog(r.clone()))
                })
                .collect(),
            ExportKind::StateChanges => t
                .states
                .iter()
                .enumerate()
                .filter(|(_, c)| device(Some(&c.device_id)))
                .map(|(i, c)| {
                    (ExportCursor { at_ns: at(c.timestamp), id: position(i) }, ExportRecord::StateChange(c.clone()))
                })
                .collect(),
            ExportKind::JobOutcomes => t
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| device(j.device_id.as_deref()))
                .map(|(i, j)| {
                    (ExportCursor { at_ns: at(j.timestamp), id: position(i) }, ExportRecord::JobOutcome(j.clone()))
                })
                .collect(),
            ExportKind::ErrorLogs => t
                .errors
                .iter()
                .enumerate()
                .filter(|(_, e)| device(e.device_id.as_deref()))
                .map(|(i, e)| {
                    (ExportCursor { at_ns: at(e.timestamp), id: position(i) }, ExportRecord::ErrorLog(e.clone()))
                })
                .collect(),
            ExportKind::UserActivity => t
                .activities
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    (ExportCursor { at_ns: at(a.timestamp), id: position(i) }, ExportRecord::UserActivity(a.clone()))
                })
                .collect(),
        };
        drop(t);
        let (from_ns, to_ns) = query.range_ns();
        let mut rows: Vec<(ExportCursor, ExportRecord)> = rows
            .into_iter()
            .filter(|(cursor, _)| cursor.at_ns >= from_ns && cursor.at_ns < to_ns && after.is_none_or(|a| *cursor > a))
            .collect();
        rows.sort_by_key(|(cursor, _)| *cursor);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(|(cursor, _)| *cursor) } else { None };
        Ok(ExportPage { rows: rows.into_iter().map(|(_, record)| record).collect(), next })
    }
}

/// Removes at most `max` items for which `old` holds, oldest first (they were pushed in order).
fn purge<T>(items: &mut Vec<T>, old: impl Fn(&T) -> bool, max: u64) -> u64 {
    let mut removed = 0;
    items.retain(|item| {
        let drop = removed < max && old(item);
        removed += u64::from(drop);
        !drop
    });
    removed
}

#[async_trait]
impl AnalyticsStore for InMemoryStore {
    async fn insert_request_logs(&self, batch: &[RequestLog]) -> Result<(), StorageError> {
        self.tables().requests.extend_from_slice(batch);
        Ok(())
    }

    async fn insert_state_change(&self, change: &StateChange) -> Result<RecordId, StorageError> {
        let mut t = self.tables();
        t.states.push(change.clone());
        Ok(RecordId(t.next_id()))
    }

    async fn insert_job_outcome(&self, outcome: &JobOutcome) -> Result<RecordId, StorageError> {
        let mut t = self.tables();
        t.jobs.push(outcome.clone());
        Ok(RecordId(t.next_id()))
    }

    async fn insert_error_log(&self, error: &ErrorLog) -> Result<RecordId, StorageError> {
        let mut t = self.tables();
        t.errors.push(error.clone());
        Ok(RecordId(t.next_id()))
    }

    async fn insert_user_activity(&self, activity: &UserActivity) -> Result<RecordId, StorageError> {
        let mut t = self.tables();
        t.activities.push(activity.clone());
        Ok(RecordId(t.next_id()))
    }

    async fn request_latencies(
        &self,
        since: DateTime<Utc>,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointLatency>, StorageError> {
        let mut parts: BTreeMap<(String, String), EndpointLatency> = BTreeMap::new();
        for log in self.tables().requests.iter().filter(|l| l.timestamp >= since) {
            if endpoint.is_some_and(|e| e != log.endpoint) {
                continue;
            }
            parts
                .entry((log.endpoint.clone(), log.method.clone()))
                .or_insert_with(|| EndpointLatency::new(&log.endpoint, &log.method))
                .record(log.response_time_ms, log.status_code);
        }
        Ok(parts.into_values().collect())
    }

    async fn job_status_counts(
        &self,
        since: DateTime<Utc>,
        job_type: Option<&str>,
    ) -> Result<Vec<JobStatusCount>, StorageError> {
        // (count, sum of durations, how many had one) per (type, status)
        let mut groups: BTreeMap<(String, String), (u64, f64, u64)> = BTreeMap::new();
        for job in self.tables().jobs.iter().filter(|j| j.timestamp >= since) {
            if job_type.is_some_and(|t| t != job.job_type) {
                continue;
            }
            let g = groups.entry((job.job_type.clone(), job.status.as_str().to_owned())).or_default();
            g.0 += 1;
            if let Some(ms) = job.duration_ms {
                g.1 += ms as f64;
                g.2 += 1;
            }
        }
        Ok(groups
            .into_iter()
            .map(|((job_type, status), (count, sum, timed))| JobStatusCount {
                job_type,
                status,
                count,
                avg_duration_ms: (timed > 0).then(|| sum / timed as f64),
            })
            .collect())
    }

    async fn error_trends(
        &self,
        since: DateTime<Utc>,
        category: Option<&str>,
        bucket_s: Option<i64>,
    ) -> Result<Vec<ErrorTrend>, StorageError> {
        let mut groups: BTreeMap<(Option<i64>, String, String), u64> = BTreeMap::new();
        for error in self.tables().errors.iter().filter(|e| e.timestamp >= since) {
            if category.is_some_and(|c| c != error.category) {
                continue;
            }
            let bucket = bucket_s.map(|width| error.timestamp.timestamp().div_euclid(width) * width);
            *groups.entry((bucket, error.category.clone(), error.severity.as_str().to_owned())).or_default() += 1;
        }
        Ok(groups
            .into_iter()
            .map(|((bucket, category, severity), count)| ErrorTrend { bucket, category, severity, count })
            .collect())
    }

    async fn state_history(
        &self,
        device_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StateChange>, StorageError> {
        let t = self.tables();
        let mut found: Vec<StateChange> =
            t.states.iter().filter(|c| c.device_id == device_id && c.timestamp >= since).cloned().collect();
        // Insertion order breaks timestamp ties, as ids do in SQL.
        found.reverse();
        found.sort_by_key(|c| std::cmp::Reverse(c.timestamp));
        found.truncate(limit);
        Ok(found)
    }

    async fn purge_analytics(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        let mut t = self.tables();
        Ok(purge(&mut t.requests, |r| r.timestamp < before, max_rows)
            + purge(&mut t.states, |r| r.timestamp < before, max_rows)
            + purge(&mut t.jobs, |r| r.timestamp < before, max_rows)
            + purge(&mut t.errors, |r| r.timestamp < before, max_rows)
            + purge(&mut t.activities, |r| r.timestamp < before, max_rows))
    }
}

#[async_trait]
impl LeaseStore for InMemoryStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let mut t = self.tables();
        match t.leases.get(name) {
            Some((current, ends)) if current != holder && *ends >= now => Ok(false),
            _ => {
                t.leases.insert(name.to_owned(), (holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let mut t = self.tables();
        if t.leases.get(name).is_some_and(|(current, _)| current == holder) {
            t.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl PresenceStore for InMemoryStore {
    async fn apply_transitions(&self, batch: &[StateChange]) -> Result<Vec<Option<RecordId>>, StorageError> {
        let mut t = self.tables();
        let mut ids = Vec::with_capacity(batch.len());
        for change in batch {
            let registered = DeviceId::parse(&change.device_id).is_ok_and(|id| t.devices.contains_key(&id));
            let current = t.current_states().get(change.device_id.as_str()).map(|c| c.new_state.clone());
            if registered && current == change.previous_state {
                t.states.push(change.clone());
                ids.push(Some(RecordId(t.next_id())));
            } else {
                ids.push(None);
            }
        }
        Ok(ids)
    }

    async fn mark_seen(&self, seen: &[(DeviceId, DateTime<Utc>)]) -> Result<(), StorageError> {
        let mut t = self.tables();
        for (device, at) in seen {
            if t.devices.contains_key(device) {
                let last = t.seen.entry(device.clone()).or_insert(*at);
                *last = (*last).max(*at);
            }
        }
        Ok(())
    }

    async fn silent_devices(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<SilentDevice>, StorageError> {
        let t = self.tables();
        let mut silent: Vec<SilentDevice> = t
            .current_states()
            .into_iter()
            .filter(|(_, change)| change.new_state != "offline")
            .filter_map(|(device, change)| {
                let id = t.devices.get_key_value(&DeviceId::parse(device).ok()?)?.0;
                let last_seen = t.seen.get(id).copied().unwrap_or(change.timestamp);
                (last_seen < before).then(|| SilentDevice {
                    device_id: id.clone(),
                    state: change.new_state.clone(),
                    last_seen,
                })
            })
            .collect();
        silent.sort_by(|a, b| (a.last_seen, &a.device_id).cmp(&(b.last_seen, &b.device_id)));
        silent.truncate(limit);
        Ok(silent)
    }

    async fn states_since(&self, since: DateTime<Utc>) -> Result<Vec<(DeviceId, String)>, StorageError> {
        let t = self.tables();
        Ok(t.current_states()
            .into_values()
            .filter(|change| change.timestamp >= since)
            .filter_map(|change| {
                let id = DeviceId::parse(&change.device_id).ok().filter(|id| t.devices.contains_key(id))?;
                Some((id, change.new_state.clone()))
            })
            .collect())
    }
}

#[async_trait]
impl AlertStore for InMemoryStore {
    async fn put_alert_config(&self, config: &AlertConfig) -> Result<(), StorageError> {
        self.tables().alert_configs.insert((config.kind(), config.id().to_owned()), config.clone());
        Ok(())
    }

    async fn delete_alert_config(&self, kind: ConfigKind, id: &str) -> Result<(), StorageError> {
        match self.tables().alert_configs.remove(&(kind, id.to_owned())) {
            Some(_) => Ok(()),
            None => Err(StorageError::not_found(format!("{} '{id}'", kind.as_str()))),
        }
    }

    async fn alert_configs(&self, kind: ConfigKind) -> Result<Vec<AlertConfig>, StorageError> {
        Ok(self
            .tables()
            .alert_configs
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn apply_alert_changes(&self, changes: &[AlertChange]) -> Result<(), StorageError> {
        let mut t = self.tables();
        // Checked before anything changes: all or nothing.
        let mut open: HashMap<(&str, &str), &str> = t
            .alerts
            .values()
            .filter(|a| a.state.is_open())
            .map(|a| ((a.rule_id.as_str(), a.subject.as_str()), a.id.as_str()))
            .collect();
        for change in changes {
            let alert = &change.alert;
            let key = (alert.rule_id.as_str(), alert.subject.as_str());
            if change.discard || !alert.state.is_open() {
                open.remove(&key);
            } else if open.insert(key, &alert.id).is_some_and(|other| other != alert.id) {
                return Err(StorageError::conflict(format!("an open alert of rule '{}' for '{}'", key.0, key.1)));
            }
        }
        for change in changes {
            let id = change.alert.id.clone();
            if change.discard {
                t.alerts.remove(&id);
                t.alert_events.retain(|e| e.alert_id != id);
            } else {
                t.alerts.insert(id, change.alert.clone());
            }
            t.alert_events.extend(change.event.clone());
            t.outbox.extend(change.notifications.iter().cloned());
        }
        Ok(())
    }

    async fn open_alerts(&self) -> Result<Vec<Alert>, StorageError> {
        Ok(self.tables().alerts.values().filter(|a| a.state.is_open()).cloned().collect())
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StorageError> {
        let t = self.tables();
        let mut found: Vec<Alert> = t.alerts.values().filter(|a| query.matches(a)).cloned().collect();
        found.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
        found.truncate(query.limit);
        Ok(found)
    }

    async fn alert_timeline(&self, id: &str) -> Result<Option<(Alert, Vec<AlertEvent>)>, StorageError> {
        let t = self.tables();
        Ok(t.alerts.get(id).map(|a| (a.clone(), t.alert_events.iter().filter(|e| e.alert_id == id).cloned().collect())))
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<Notification>, StorageError> {
        Ok(self.tables().outbox.iter().filter(|n| n.state == DeliveryState::Pending).take(limit).cloned().collect())
    }

    async fn update_notification(&self, notification: &Notification) -> Result<(), StorageError> {
        let mut t = self.tables();
        let stored = t
            .outbox
            .iter_mut()
            .find(|n| n.id == notification.id)
            .ok_or_else(|| StorageError::not_found(format!("notification '{}'", notification.id)))?;
        *stored = notification.clone();
        Ok(())
    }

    async fn notifications(&self, query: &NotificationQuery) -> Result<Vec<Notification>, StorageError> {
        Ok(self.tables().outbox.iter().rev().filter(|n| query.matches(n)).take(query.limit).cloned().collect())
    }
}

#[async_trait]
impl Store for InMemoryStore {
    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
