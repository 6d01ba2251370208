//! The conformance kit: one public async check per storage contract, runnable against any
//! backend. A third-party backend proves itself with:
//!
//! ```ignore
//! homepot_storage::conformance::run_all(&MyStore::new()).await;
//! ```
//!
//! Each check works in its own namespace of device ids, so the kit can run against a shared,
//! non-empty database and several runs can share one at once. Checks panic on a violation.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use homepot_core::alert::{
    Alert, AlertEvent, AlertState, DeliveryState, EventKind, Notification, NotificationKind, Receiver, Rule,
    Severity as AlertSeverity, Silence,
};
use homepot_core::analytics::{
    ErrorLog, JobOutcome, JobStatus, RequestLog, Severity, StateChange, UserActivity, summarize_jobs,
    summarize_performance,
};
use homepot_core::rollup::{Aggregate, Tier};
use homepot_core::{
    ApiKey, DeviceId, FieldValue, HealthCheck, HealthReport, MetricType, NewDevice, Point, Role, SystemMetrics,
};
use serde_json::{Map, Value, json};

use crate::alerts::{AlertChange, AlertConfig, AlertQuery, ConfigKind, NotificationQuery};
use crate::export::{ExportKind, ExportQuery, ExportRecord};
use crate::fleet::{FleetDevice, FleetQuery, FleetSortKey, fleet_order};
use crate::{NewHealthCheck, NewKey, NewReceipt, Receipt, RollupDelta, SeriesKey, StorageError, Store, StoredBucket};

/// Runs every check in this module.
pub async fn run_all<S: Store + ?Sized>(store: &S) {
    registers_and_reads_devices(store).await;
    refuses_duplicate_devices(store).await;
    remembers_container_reporters(store).await;
    finds_keys_by_hash(store).await;
    lists_and_revokes_keys(store).await;
    key_revision_grows_when_keys_stop_being_valid(store).await;
    stores_health_checks_in_order(store).await;
    reads_health_newest_first_within_window(store).await;
    refuses_health_for_unknown_devices(store).await;
    removes_devices_with_their_keys_and_health(store).await;
    stores_points_with_their_types(store).await;
    filters_point_history_by_time_tags_and_limit(store).await;
    finds_the_newest_point_of_each_series(store).await;
    answers_ping(store).await;
    aggregates_request_logs(store).await;
    concurrent_request_logs_add_up(store).await;
    reads_state_history_newest_first(store).await;
    counts_job_outcomes_and_errors(store).await;
    purges_old_analytics_in_batches(store).await;
    purges_old_health_checks_and_points(store).await;
    merges_rollups_exactly(store).await;
    concurrent_merges_into_one_bucket_add_up(store).await;
    finds_series_and_reads_bucket_ranges(store).await;
    purges_old_rollups_by_tier(store).await;
    pages_the_fleet_by_any_latest_figure(store).await;
    exports_tables_in_time_order_by_pages(store).await;
    keeps_alert_configuration(store).await;
    stores_alert_transitions_atomically(store).await;
    keeps_receipts_with_their_data(store).await;
    leases_have_one_holder_at_a_time(store).await;
    changes_state_by_compare_and_set(store).await;
    shares_presence_between_processes(store).await;
}

static NAMESPACE: AtomicU64 = AtomicU64::new(0);

/// A device id no other check or run uses.
fn unique_device(label: &str) -> DeviceId {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let n = NAMESPACE.fetch_add(1, Ordering::Relaxed);
    DeviceId::parse(&format!("conformance-{label}-{nanos:x}-{n}")).expect("generated ids are valid")
}

fn fresh_key() -> ApiKey {
    let mut bytes = [0u8; 32];
    let n = NAMESPACE.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes();
    bytes[..8].copy_from_slice(&n);
    bytes[8..16].copy_from_slice(&nanos);
    bytes[16..24].copy_from_slice(&rand::random::<u64>().to_le_bytes());
    ApiKey::from_entropy(bytes)
}

/// A fixed, microsecond-precise instant, as every backend must keep microseconds.
fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_763_546_400 + seconds, 123_456_000).single().expect("valid instant")
}

fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::microseconds(1)).expect("microsecond truncation")
}

async fn register<S: Store + ?Sized>(store: &S, id: &DeviceId) -> ApiKey {
    let key = fresh_key();
    store.register_device(&NewDevice::with_id(id.clone()), &key.hash(), now()).await.expect("register device");
    key
}

fn check(cpu: f64, healthy: bool) -> HealthCheck {
    let mut report = HealthReport::minimal(healthy, 120);
    report.endpoint = Some("/health".to_owned());
    report.response_data.insert("version".to_owned(), json!("1.2.3"));
    report.response_data.insert("nested".to_owned(), json!({"a": [1, 2, {"b": null}]}));
    report.system = Some(SystemMetrics { cpu_percent: Some(cpu), memory_used_mb: Some(1024), ..Default::default() });
    HealthCheck::validate(report).expect("valid check")
}

/// A registered device reads back with every field, and shows up in the listing.
pub async fn registers_and_reads_devices<S: Store + ?Sized>(store: &S) {
    let id = unique_device("reads");
    let labels = [("zone".to_owned(), "zone-1".to_owned()), ("env".to_owned(), "production".to_owned())].into();
    let new = NewDevice::parse(id.as_str(), Some("Till 1".into()), Some("pos-terminal".into()), labels).expect("valid");
    let created = now();
    let device = store.register_device(&new, &fresh_key().hash(), created).await.expect("register");
    assert_eq!(device.id, id);
    let read = store.device(&id).await.expect("read").expect("device exists");
    assert_eq!(read, device);
    assert_eq!(read.labels.as_map()["zone"], "zone-1");
    assert_eq!(read.name.as_deref(), Some("Till 1"));
    assert_eq!(read.created_at, created);
    assert!(store.devices().await.expect("list").iter().any(|d| d.id == id));
    assert!(store.device(&unique_device("absent")).await.expect("read").is_none());
}

/// A device's keys list oldest first without their hashes; a revoked key is no longer found,
/// listed or revocable, and a key is revoked only through its owner.
pub async fn lists_and_revokes_keys<S: Store + ?Sized>(store: &S) {
    let (id, other) = (unique_device("rotate"), unique_device("rotate-other"));
    let first = register(store, &id).await;
    register(store, &other).await;
    let second = fresh_key();
    let created = now();
    let second_id = store
        .insert_key(&NewKey {
            hash: second.hash(),
            role: Role::Device,
            device_id: Some(id.clone()),
            created_at: created,
        })
        .await
        .expect("second key");
    let keys = store.keys(Some(&id)).await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(keys[0].id < keys[1].id && keys[1].id == second_id, "oldest first: {keys:?}");
    assert_eq!((keys[1].role, keys[1].device_id.as_ref(), keys[1].created_at), (Role::Device, Some(&id), created));
    let first_id = keys[0].id;

    let err = store.revoke_key(first_id, Some(&other), now()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "only through its own device: {err:?}");
    let err = store.revoke_key(first_id, None, now()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "a device key is not a key of no device: {err:?}");
    store.revoke_key(first_id, Some(&id), now()).await.expect("revoke");
    assert!(store.key_by_hash(&first.hash()).await.expect("lookup").is_none(), "revoked at once");
    assert!(store.key_by_hash(&second.hash()).await.expect("lookup").is_some(), "the new key works");
    assert_eq!(store.keys(Some(&id)).await.expect("keys").iter().map(|k| k.id).collect::<Vec<_>>(), vec![second_id]);
    let err = store.revoke_key(first_id, Some(&id), now()).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "revoking twice: {err:?}");

    let reader = fresh_key();
    let reader_id = store
        .insert_key(&NewKey { hash: reader.hash(), role: Role::Read, device_id: None, created_at: now() })
        .await
        .expect("read key");
    assert!(store.keys(None).await.expect("keys").iter().any(|k| k.id == reader_id && k.role == Role::Read));
    store.revoke_key(reader_id, None, now()).await.expect("revoke read key");
    assert!(store.key_by_hash(&reader.hash()).await.expect("lookup").is_none());
    assert!(store.keys(Some(&unique_device("nobody"))).await.expect("keys").is_empty());
}

/// The key revision grows with every revocation and device removal, so that servers which
/// remember keys learn of it; issuing a key is not such a change. (Only growth is checked:
/// other runs may share the database.)
pub async fn key_revision_grows_when_keys_stop_being_valid<S: Store + ?Sized>(store: &S) {
    let id = unique_device("revision");
    register(store, &id).await;
    let before = store.key_revision().await.expect("revision");
    let extra = store
        .insert_key(&NewKey {
            hash: fresh_key().hash(),
            role: Role::Device,
            device_id: Some(id.clone()),
            created_at: now(),
        })
        .await
        .expect("second key");
    store.revoke_key(extra, Some(&id), now()).await.expect("revoke");
    let revoked = store.key_revision().await.expect("revision");
    assert!(revoked > before, "a revocation grows the revision: {before} -> {revoked}");
    store.remove_device(&id).await.expect("remove");
    let removed = store.key_revision().await.expect("revision");
    assert!(removed > revoked, "removing a device with its keys grows the revision: {revoked} -> {removed}");
}

/// A lease has one holder until it runs out or is released: its holder renews it, others are
/// refused while it runs, and take it over once it has run out.
pub async fn leases_have_one_holder_at_a_time<S: Store + ?Sized>(store: &S) {
    let lease = unique_device("lease").to_string();
    let t0 = now();
    let later = |seconds: i64| t0 + Duration::seconds(seconds);
    assert!(store.acquire_lease(&lease, "a", t0, later(15)).await.expect("acquire"), "a free lease is taken");
    assert!(!store.acquire_lease(&lease, "b", later(1), later(16)).await.expect("acquire"), "b waits while a's runs");
    assert!(store.acquire_lease(&lease, "a", later(10), later(25)).await.expect("renew"), "its holder renews it");
    assert!(!store.acquire_lease(&lease, "b", later(20), later(35)).await.expect("acquire"), "renewed: still a's");
    assert!(store.acquire_lease(&lease, "b", later(26), later(41)).await.expect("acquire"), "run out: b takes it");
    assert!(!store.acquire_lease(&lease, "a", later(27), later(42)).await.expect("acquire"), "a lost it");
    store.release_lease(&lease, "a").await.expect("release");
    assert!(!store.acquire_lease(&lease, "c", later(28), later(43)).await.expect("acquire"), "only its holder ends it");
    store.release_lease(&lease, "b").await.expect("release");
    assert!(store.acquire_lease(&lease, "c", later(29), later(44)).await.expect("acquire"), "released: c takes it");
}

fn transition(device: &DeviceId, seconds: i64, previous: Option<&str>, new: &str) -> StateChange {
    StateChange {
        timestamp: at(seconds),
        device_id: device.to_string(),
        previous_state: previous.map(str::to_owned),
        new_state: new.to_owned(),
        changed_by: "system".into(),
        recorded_by: Some("system".into()),
        reason: Some(format!("conformance {seconds}")),
        metadata: Map::new(),
    }
}

/// A transition is stored only from the device's current state: of the same transition
/// tried many times at once, exactly one is stored; unknown devices are skipped.
pub async fn changes_state_by_compare_and_set<S: Store + ?Sized>(store: &S) {
    let device = unique_device("cas");
    register(store, &device).await;
    let t = |seconds, previous, new| transition(&device, seconds, previous, new);
    let batch = [
        t(0, Some("online"), "offline"),
        t(1, None, "online"),
        t(2, None, "online"),
        t(3, Some("online"), "unhealthy"),
    ];
    let ids = store.apply_transitions(&batch).await.expect("apply");
    let applied: Vec<bool> = ids.iter().map(Option::is_some).collect();
    assert_eq!(applied, [false, true, false, true], "each from the state the earlier ones left");
    let stranger = unique_device("cas-unknown");
    let ids = store.apply_transitions(&[transition(&stranger, 0, None, "online")]).await.expect("apply");
    assert_eq!(ids, [None], "an unregistered device has no state to change");
    assert!(store.apply_transitions(&[]).await.expect("empty").is_empty());

    let tries: Vec<[StateChange; 1]> = (0..16).map(|_| [t(4, Some("unhealthy"), "offline")]).collect();
    let results = futures_util::future::join_all(tries.iter().map(|batch| store.apply_transitions(batch))).await;
    let stored = results.into_iter().map(|r| r.expect("concurrent apply")).filter(|ids| ids[0].is_some()).count();
    assert_eq!(stored, 1, "the same transition from sixteen callers at once is stored once");

    let history = store.state_history(device.as_str(), DateTime::<Utc>::UNIX_EPOCH, 10).await.expect("history");
    let states: Vec<&str> = history.iter().map(|c| c.new_state.as_str()).collect();
    assert_eq!(states, ["offline", "unhealthy", "online"], "only what applied is history");
}

/// Last-seen times only move forward; silent devices are found by them (or, never seen, by
/// their state's time), offline ones never; recent state changes are listed.
pub async fn shares_presence_between_processes<S: Store + ?Sized>(store: &S) {
    let seen = unique_device("seen");
    let never_seen = unique_device("unseen");
    let gone = unique_device("gone");
    for device in [&seen, &never_seen, &gone] {
        register(store, device).await;
    }
    let ids = store
        .apply_transitions(&[
            transition(&seen, 100, None, "online"),
            transition(&never_seen, 120, None, "unhealthy"),
            transition(&gone, 100, None, "online"),
            transition(&gone, 101, Some("online"), "offline"),
        ])
        .await
        .expect("apply");
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    let stranger = unique_device("seen-unknown");
    store
        .mark_seen(&[(seen.clone(), at(110)), (seen.clone(), at(105)), (stranger, at(110)), (gone.clone(), at(90))])
        .await
        .expect("mark seen");
    store.mark_seen(&[(seen.clone(), at(108))]).await.expect("an older sighting");
    store.mark_seen(&[]).await.expect("none");

    let mine = [&seen, &never_seen, &gone];
    let silent = |before: DateTime<Utc>| async move {
        let all = store.silent_devices(before, usize::MAX).await.expect("silent devices");
        all.into_iter().filter(|d| mine.contains(&&d.device_id)).collect::<Vec<_>>()
    };
    assert_eq!(silent(at(110)).await, [], "seen at 110 is not silent before it; offline never is");
    let found = silent(at(110) + Duration::microseconds(1)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((&found[0].device_id, found[0].state.as_str(), found[0].last_seen), (&seen, "online", at(110)));
    let found = silent(at(121)).await;
    let order: Vec<(&DeviceId, &str, DateTime<Utc>)> =
        found.iter().map(|d| (&d.device_id, d.state.as_str(), d.last_seen)).collect();
    assert_eq!(order, [(&seen, "online", at(110)), (&never_seen, "unhealthy", at(120))], "longest silent first");

    let recent = |since| async move {
        let all = store.states_since(since).await.expect("states since");
        let mut found: Vec<(DeviceId, String)> = all.into_iter().filter(|(d, _)| mine.contains(&d)).collect();
        found.sort();
        found
    };
    let mut expected = vec![
        (gone.clone(), "offline".to_owned()),
        (never_seen.clone(), "unhealthy".to_owned()),
        (seen.clone(), "online".to_owned()),
    ];
    expected.sort();
    assert_eq!(recent(at(100)).await, expected);
    assert_eq!(recent(at(101)).await.len(), 2, "seen's state is older");
    assert_eq!(recent(at(121)).await, []);
}

/// Registering an existing id is a conflict and leaves the first registration intact.
pub async fn refuses_duplicate_devices<S: Store + ?Sized>(store: &S) {
    let id = unique_device("dup");
    let first = register(store, &id).await;
    let second = fresh_key();
    let err = store.register_device(&NewDevice::with_id(id.clone()), &second.hash(), now()).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "expected Conflict, got {err:?}");
    assert!(store.key_by_hash(&first.hash()).await.expect("lookup").is_some());
    assert!(store.key_by_hash(&second.hash()).await.expect("lookup").is_none(), "a refused registration stores no key");
}

/// Keys are found by hash with their role and device; unknown hashes find nothing.
pub async fn finds_keys_by_hash<S: Store + ?Sized>(store: &S) {
    let id = unique_device("keys");
    let device_key = register(store, &id).await;
    let found = store.key_by_hash(&device_key.hash()).await.expect("lookup").expect("device key");
    assert_eq!(found.role, Role::Device);
    assert_eq!(found.device_id.as_ref(), Some(&id));
    assert!(found.hash.matches(&device_key.hash()));

    let admin = fresh_key();
    store
        .insert_key(&NewKey { hash: admin.hash(), role: Role::Admin, device_id: None, created_at: now() })
        .await
        .expect("insert admin key");
    let found = store.key_by_hash(&admin.hash()).await.expect("lookup").expect("admin key");
    assert_eq!((found.role, found.device_id), (Role::Admin, None));
    assert!(store.has_key_with_role(Role::Admin).await.expect("count"));
    assert!(store.key_by_hash(&fresh_key().hash()).await.expect("lookup").is_none());

    let orphan = NewKey {
        hash: fresh_key().hash(),
        role: Role::Device,
        device_id: Some(unique_device("none")),
        created_at: now(),
    };
    assert!(matches!(store.insert_key(&orphan).await, Err(StorageError::NotFound { .. })));
}

/// A batch is stored with ids in batch order, and each check reads back intact.
pub async fn stores_health_checks_in_order<S: Store + ?Sized>(store: &S) {
    let (a, b) = (unique_device("batch-a"), unique_device("batch-b"));
    register(store, &a).await;
    register(store, &b).await;
    let batch: Vec<NewHealthCheck> = (0..5)
        .map(|i| NewHealthCheck {
            device_id: if i % 2 == 0 { a.clone() } else { b.clone() },
            checked_at: at(i),
            check: check(10.0 * i as f64, i != 3),
            receipt: None,
        })
        .collect();
    let ids = store.insert_health(&batch).await.expect("insert");
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids follow batch order: {ids:?}");

    let read = store.health_since(&b, at(-1), 10).await.expect("read");
    assert_eq!(read.iter().map(|h| h.id).collect::<Vec<_>>(), vec![ids[3], ids[1]]);
    let newest = &read[0];
    assert_eq!(newest.checked_at, at(3));
    assert!(!newest.is_healthy);
    assert_eq!(newest.response_time_ms, 120);
    assert_eq!(newest.status_code, 200);
    assert_eq!(newest.endpoint.as_deref(), Some("/health"));
    assert_eq!(
        serde_json::Value::Object(newest.response_data.clone()),
        serde_json::Value::Object(batch[3].check.document())
    );
    assert_eq!(store.latest_health(&a).await.expect("latest").map(|h| h.id), Some(ids[4]));
    assert_eq!(store.insert_health(&[]).await.expect("empty batch"), Vec::new());
}

/// `health_since` honours the window and the limit and orders newest first.
pub async fn reads_health_newest_first_within_window<S: Store + ?Sized>(store: &S) {
    let id = unique_device("window");
    register(store, &id).await;
    let batch: Vec<NewHealthCheck> = (0..10)
        .map(|i| NewHealthCheck {
            device_id: id.clone(),
            checked_at: at(i * 60),
            check: check(1.0, true),
            receipt: None,
        })
        .collect();
    store.insert_health(&batch).await.expect("insert");
    let read = store.health_since(&id, at(5 * 60), 100).await.expect("read");
    assert_eq!(
        read.iter().map(|h| h.checked_at).collect::<Vec<_>>(),
        (5..10).rev().map(|i| at(i * 60)).collect::<Vec<_>>()
    );
    assert_eq!(store.health_since(&id, at(0), 3).await.expect("read").len(), 3);
    assert_eq!(store.health_since(&id, at(0), usize::MAX).await.expect("no limit").len(), 10, "usize::MAX is no limit");
    assert!(store.health_since(&unique_device("nobody"), at(0), 3).await.expect("read").is_empty());
    assert!(store.latest_health(&unique_device("nobody")).await.expect("read").is_none());
}

/// A batch naming an unregistered device stores nothing at all.
pub async fn refuses_health_for_unknown_devices<S: Store + ?Sized>(store: &S) {
    let known = unique_device("known");
    register(store, &known).await;
    let batch = vec![
        NewHealthCheck { device_id: known.clone(), checked_at: at(0), check: check(1.0, true), receipt: None },
        NewHealthCheck { device_id: unique_device("ghost"), checked_at: at(1), check: check(1.0, true), receipt: None },
    ];
    let err = store.insert_health(&batch).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "expected NotFound, got {err:?}");
    assert!(store.latest_health(&known).await.expect("read").is_none(), "all or nothing");
}

/// Removing a device removes its keys and its health checks; removing it again is NotFound.
pub async fn removes_devices_with_their_keys_and_health<S: Store + ?Sized>(store: &S) {
    let id = unique_device("remove");
    let key = register(store, &id).await;
    store
        .insert_health(&[NewHealthCheck {
            device_id: id.clone(),
            checked_at: at(0),
            check: check(1.0, true),
            receipt: None,
        }])
        .await
        .expect("insert");
    store.remove_device(&id).await.expect("remove");
    assert!(store.device(&id).await.expect("read").is_none());
    assert!(store.key_by_hash(&key.hash()).await.expect("lookup").is_none(), "keys go with their device");
    assert!(store.latest_health(&id).await.expect("read").is_none());
    assert!(matches!(store.remove_device(&id).await, Err(StorageError::NotFound { .. })));
    // The id is free again, and the new device starts with no history.
    register(store, &id).await;
    assert!(store.latest_health(&id).await.expect("read").is_none());
}

fn point(name: &str, tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>, time_ns: i64, kind: MetricType) -> Point {
    let tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Point::new(name.to_owned(), tags, fields, time_ns, kind).expect("valid point")
}

/// Points read back with every tag, typed field (in order), metric type and exact time.
pub async fn stores_points_with_their_types<S: Store + ?Sized>(store: &S) {
    let name = unique_device("metric").to_string();
    let batch = vec![
        point(
            &name,
            &[("host", "server1"), ("cpu", "cpu0")],
            vec![
                ("usage", FieldValue::Float(45.2)),
                ("count", FieldValue::Integer(-3)),
                ("big", FieldValue::UInteger(u64::MAX)),
                ("ok", FieldValue::Boolean(true)),
                ("note", FieldValue::String("a \"quoted\" é".to_owned())),
            ],
            1_704_067_200_123_456_789,
            MetricType::Counter,
        ),
        point(&name, &[], vec![("value", FieldValue::Float(29.97))], 1_704_067_201_000_000_001, MetricType::Gauge),
    ];
    store.insert_points(&batch, &[]).await.expect("insert points");
    let read = store.points_since(&name, 0, &[], 10).await.expect("read");
    assert_eq!(read, vec![batch[1].clone(), batch[0].clone()], "newest first, intact");
    store.insert_points(&[], &[]).await.expect("empty batch");
}

/// History honours the time window, tag filters and the limit, newest first, however the
/// points arrived and however many there are.
pub async fn filters_point_history_by_time_tags_and_limit<S: Store + ?Sized>(store: &S) {
    let name = unique_device("history").to_string();
    // 2,100 points, stored out of time order, on two hosts.
    let batch: Vec<Point> = (0..2_100i64)
        .map(|i| {
            let time = (i * 7_919) % 2_100;
            let host = if time % 2 == 0 { "even" } else { "odd" };
            point(&name, &[("host", host)], vec![("v", FieldValue::Integer(time))], time, MetricType::Gauge)
        })
        .collect();
    store.insert_points(&batch, &[]).await.expect("insert");
    let times = |points: &[Point]| points.iter().map(Point::timestamp_ns).collect::<Vec<_>>();

    let all = store.points_since(&name, 0, &[], 5_000).await.expect("read");
    assert_eq!(times(&all), (0..2_100).rev().collect::<Vec<_>>());
    let recent = store.points_since(&name, 2_000, &[], 5_000).await.expect("read");
    assert_eq!(times(&recent), (2_000..2_100).rev().collect::<Vec<_>>());
    let odd = store.points_since(&name, 0, &[("host".to_owned(), "odd".to_owned())], 1_500).await.expect("read");
    assert_eq!(times(&odd), (0..2_100).rev().filter(|t| t % 2 == 1).collect::<Vec<_>>());
    let few = store.points_since(&name, 0, &[("host".to_owned(), "even".to_owned())], 3).await.expect("read");
    assert_eq!(times(&few), [2_098, 2_096, 2_094]);
    let none = store.points_since(&name, 0, &[("host".to_owned(), "absent".to_owned())], 3).await.expect("read");
    assert!(none.is_empty());
    assert!(store.points_since("no-such-metric", 0, &[], 3).await.expect("read").is_empty());
}

/// `latest_points` gives one point per series (name and exact tags): the newest at or after
/// the window's start, the later-stored one of equal times, however they arrived.
pub async fn finds_the_newest_point_of_each_series<S: Store + ?Sized>(store: &S) {
    let (a, b) = (unique_device("latest-a").to_string(), unique_device("latest-b").to_string());
    let value = |v: i64| vec![("v", FieldValue::Integer(v))];
    let batch = vec![
        point(&a, &[("host", "x")], value(1), 3_000, MetricType::Gauge),
        point(&a, &[("host", "x")], value(2), 1_000, MetricType::Gauge),
        point(&a, &[("host", "y")], value(3), 500, MetricType::Gauge),
        point(&a, &[("host", "x"), ("zone", "1")], value(4), 2_000, MetricType::Gauge),
        point(&b, &[], value(5), 2_500, MetricType::Counter),
    ];
    store.insert_points(&batch, &[]).await.expect("insert");
    // Out of order, in a later batch: same time as the newest `host=x`, stored after it.
    let tie = point(&a, &[("host", "x")], value(6), 3_000, MetricType::Gauge);
    store.insert_points(std::slice::from_ref(&tie), &[]).await.expect("insert");

    let mut latest = store.latest_points(&[&a, &b], 1_000).await.expect("read");
    latest.sort_by_key(Point::timestamp_ns);
    assert_eq!(latest, vec![batch[3].clone(), batch[4].clone(), tie], "one per series, host=y is too old");
    let only_b = store.latest_points(&[&b], 0).await.expect("read");
    assert_eq!(only_b, vec![batch[4].clone()]);
    assert!(store.latest_points(&[&a], 10_000).await.expect("read").is_empty());
    assert!(store.latest_points(&[], 0).await.expect("read").is_empty());
}

/// Devices marked as container reporters are listed, once each, ordered by id; unknown
/// devices are ignored and removed ones forgotten.
pub async fn remembers_container_reporters<S: Store + ?Sized>(store: &S) {
    let (a, b) = (unique_device("reporter-b"), unique_device("reporter-a"));
    for id in [&a, &b] {
        register(store, id).await;
    }
    let ours = |all: Vec<DeviceId>| all.into_iter().filter(|d| *d == a || *d == b).collect::<Vec<_>>();
    assert!(ours(store.container_reporters().await.expect("list")).is_empty());
    for id in [&a, &b, &a] {
        store.mark_container_reporter(id, now()).await.expect("mark");
    }
    store.mark_container_reporter(&unique_device("reporter-ghost"), now()).await.expect("an unknown device is ignored");
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(ours(store.container_reporters().await.expect("list")), expected);
    store.remove_device(&a).await.expect("remove");
    assert_eq!(ours(store.container_reporters().await.expect("list")), vec![b]);
}

/// A reachable store answers `ping`.
pub async fn answers_ping<S: Store + ?Sized>(store: &S) {
    store.ping().await.expect("ping");
}

fn request_log(endpoint: &str, at: DateTime<Utc>, ms: f64, status: u16) -> RequestLog {
    RequestLog {
        timestamp: at,
        endpoint: endpoint.to_owned(),
        method: "GET".to_owned(),
        status_code: status,
        response_time_ms: ms,
        user_id: Some("key:0123456789abcdef".to_owned()),
        ip_address: Some("127.0.0.1".to_owned()),
        user_agent: None,
        error_message: (status >= 400).then(|| "failed".to_owned()),
        request_size_bytes: Some(10),
        response_size_bytes: None,
    }
}

fn metadata(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Request logs of a window, written in several batches across hours, sum per endpoint with
/// exact counts, extremes and mean, and a p95 within one latency bucket; logs before the
/// window (even in the same hour) and other endpoints stay out.
pub async fn aggregates_request_logs<S: Store + ?Sized>(store: &S) {
    let endpoint = format!("/{}/{{id}}", unique_device("endpoint"));
    let base = now() - Duration::hours(5);
    // Log i (1..=100) at base + i * 174 s, taking i ms: five hours, some hours split by the window.
    let at = |i: i64| base + Duration::seconds(i * 174);
    let mut logs: Vec<RequestLog> = (1..=100).map(|i| request_log(&endpoint, at(i), i as f64, 200)).collect();
    logs[0].status_code = 404;
    logs[99].status_code = 500;
    for batch in [&logs[..17], &logs[17..60], &logs[60..]] {
        store.insert_request_logs(batch).await.expect("insert logs");
    }
    let summary = summarize_performance(&store.request_latencies(base, Some(&endpoint)).await.expect("latencies"));
    assert_eq!(summary.len(), 1, "{summary:?}");
    let s = &summary[0];
    assert_eq!((s.request_count, s.error_count, s.server_error_count), (100, 2, 1));
    assert_eq!((s.min_response_time_ms, s.max_response_time_ms), (1.0, 100.0));
    assert!((s.avg_response_time_ms - 50.5).abs() < 1e-9, "{}", s.avg_response_time_ms);
    assert!((95.0..=104.0).contains(&s.p95_response_time_ms), "{}", s.p95_response_time_ms);

    // A window starting between logs 49 and 50 holds logs 50..=100.
    let since = at(50) - Duration::seconds(30);
    let summary = summarize_performance(&store.request_latencies(since, Some(&endpoint)).await.expect("latencies"));
    let s = &summary[0];
    assert_eq!((s.request_count, s.error_count, s.min_response_time_ms, s.max_response_time_ms), (51, 1, 50.0, 100.0));
    assert!((s.avg_response_time_ms - 75.0).abs() < 1e-9, "{}", s.avg_response_time_ms);
    assert!((98.0..=107.0).contains(&s.p95_response_time_ms), "{}", s.p95_response_time_ms);

    let all = store.request_latencies(since, None).await.expect("all latencies");
    assert!(all.iter().any(|g| g.endpoint == endpoint));
    assert!(
        store
            .request_latencies(now() + Duration::minutes(1), Some(&endpoint))
            .await
            .expect("empty")
            .iter()
            .all(|p| p.count == 0)
    );
    store.insert_request_logs(&[]).await.expect("an empty batch is fine");

    // However a backend rounds what it keeps, the percentile stays within the extremes.
    let odd = format!("/{}", unique_device("odd"));
    store.insert_request_logs(&[request_log(&odd, now(), 2.6149, 200)]).await.expect("insert");
    let s = &summarize_performance(&store.request_latencies(since, Some(&odd)).await.expect("latencies"))[0];
    assert!(
        s.p95_response_time_ms <= s.max_response_time_ms,
        "p95 {} > max {}",
        s.p95_response_time_ms,
        s.max_response_time_ms
    );
}

/// Batches of the same endpoint and hour written at once (several server processes on one
/// database) are all counted: no write is lost or refused.
pub async fn concurrent_request_logs_add_up<S: Store + ?Sized>(store: &S) {
    let endpoint = format!("/{}", unique_device("concurrent"));
    let since = now() - Duration::minutes(1);
    let batch: Vec<RequestLog> = (0..50).map(|i| request_log(&endpoint, now(), f64::from(i), 200)).collect();
    let writes: Vec<_> = (0..8).map(|_| store.insert_request_logs(&batch)).collect();
    for result in futures_join_all(writes).await {
        result.expect("concurrent insert");
    }
    let summary = summarize_performance(&store.request_latencies(since, Some(&endpoint)).await.expect("latencies"));
    assert_eq!(summary[0].request_count, 400);
}

/// Polls every future to completion concurrently (the kit avoids a futures dependency).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

/// A device's state changes read back newest first within the window, metadata intact, and
/// the newest one is its latest state.
pub async fn reads_state_history_newest_first<S: Store + ?Sized>(store: &S) {
    let device = unique_device("states").to_string();
    let change = |seconds: i64, previous: Option<&str>, new: &str| StateChange {
        timestamp: at(seconds),
        device_id: device.clone(),
        previous_state: previous.map(str::to_owned),
        new_state: new.to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: Some("system".to_owned()),
        reason: Some(format!("reason {seconds}")),
        metadata: metadata(json!({"last_seen": "2025-12-01T10:00:00Z", "n": [seconds, {"deep": true}]})),
    };
    let changes =
        [change(0, None, "online"), change(10, Some("online"), "unhealthy"), change(20, Some("unhealthy"), "offline")];
    for c in &changes {
        store.insert_state_change(c).await.expect("insert state change");
    }
    let history = store.state_history(&device, at(5), 10).await.expect("history");
    assert_eq!(history, vec![changes[2].clone(), changes[1].clone()]);
    assert_eq!(store.state_history(&device, at(0), 1).await.expect("history"), vec![changes[2].clone()]);
    assert_eq!(store.state_history(&device, at(0), usize::MAX).await.expect("no limit").len(), 3);
    assert!(store.state_history(&unique_device("none").to_string(), at(0), 10).await.expect("history").is_empty());

    // A batch: ids in batch order, each change stored, the latest state the batch's last.
    let other = unique_device("states-batch").to_string();
    let batch: Vec<StateChange> = (0..5)
        .map(|i| StateChange {
            device_id: if i % 2 == 0 { device.clone() } else { other.clone() },
            ..change(30 + i, Some("offline"), if i < 4 { "online" } else { "unhealthy" })
        })
        .collect();
    let ids = store.insert_state_changes(&batch).await.expect("insert a batch");
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids follow batch order: {ids:?}");
    assert_eq!(
        store.state_history(&other, at(0), 10).await.expect("history"),
        vec![batch[3].clone(), batch[1].clone()]
    );
    let latest = store.state_history(&device, at(0), 1).await.expect("history");
    assert_eq!(latest, vec![batch[4].clone()], "the newest is the batch's last");
    assert_eq!(store.insert_state_changes(&[]).await.expect("empty batch"), Vec::new());
}

/// Job outcomes count per type and status with their mean duration; error logs per category
/// and severity; user activity is accepted.
pub async fn counts_job_outcomes_and_errors<S: Store + ?Sized>(store: &S) {
    let job_type = unique_device("job").to_string();
    let since = now() - Duration::minutes(5);
    let job = |status: JobStatus, duration_ms: Option<i64>| JobOutcome {
        timestamp: now(),
        job_id: "job-1".to_owned(),
        job_type: job_type.clone(),
        device_id: Some("device-123".to_owned()),
        status,
        duration_ms,
        error_code: None,
        error_message: None,
        retry_count: 1,
        initiated_by: Some("user@example.com".to_owned()),
        metadata: metadata(json!({"attempt": 2})),
    };
    for outcome in [
        job(JobStatus::Success, Some(1_000)),
        job(JobStatus::Success, Some(3_000)),
        job(JobStatus::Success, None),
        job(JobStatus::Timeout, Some(30_000)),
    ] {
        store.insert_job_outcome(&outcome).await.expect("insert job outcome");
    }
    let counts = store.job_status_counts(since, Some(&job_type)).await.expect("job counts");
    let got: Vec<(&str, u64, Option<f64>)> =
        counts.iter().map(|c| (c.status.as_str(), c.count, c.avg_duration_ms)).collect();
    assert_eq!(got, vec![("success", 3, Some(2_000.0)), ("timeout", 1, Some(30_000.0))]);
    assert_eq!(summarize_jobs(&counts)[0].success_rate_percent, 75.0);

    let category = unique_device("category").to_string();
    let error = |severity: Severity| ErrorLog {
        timestamp: now(),
        category: category.clone(),
        severity,
        error_code: Some("E1".to_owned()),
        error_message: "boom".to_owned(),
        stack_trace: None,
        endpoint: None,
        user_id: None,
        device_id: None,
        context: metadata(json!({"url": "/"})),
        resolved: false,
    };
    for severity in [Severity::Error, Severity::Critical, Severity::Error] {
        store.insert_error_log(&error(severity)).await.expect("insert error log");
    }
    let trends = store.error_trends(since, Some(&category), None).await.expect("error trends");
    let got: Vec<(&str, u64)> = trends.iter().map(|t| (t.severity.as_str(), t.count)).collect();
    assert_eq!(got, vec![("critical", 1), ("error", 2)]);
    assert!(trends.iter().all(|t| t.bucket.is_none()));
    let later = now() + Duration::minutes(1);
    assert!(store.error_trends(later, Some(&category), None).await.expect("trends").is_empty());
    // Per hour: two more errors, an hour and a half earlier, land in their own bucket.
    let earlier = now() - Duration::minutes(90);
    for severity in [Severity::Error, Severity::Warning] {
        store.insert_error_log(&ErrorLog { timestamp: earlier, ..error(severity) }).await.expect("insert error log");
    }
    let hourly =
        store.error_trends(earlier - Duration::minutes(1), Some(&category), Some(3_600)).await.expect("trends");
    let hour = |t: DateTime<Utc>| t.timestamp().div_euclid(3_600) * 3_600;
    let got: Vec<(Option<i64>, &str, u64)> = hourly.iter().map(|t| (t.bucket, t.severity.as_str(), t.count)).collect();
    assert_eq!(
        got,
        vec![
            (Some(hour(earlier)), "error", 1),
            (Some(hour(earlier)), "warning", 1),
            (Some(hour(now())), "critical", 1),
            (Some(hour(now())), "error", 2),
        ]
    );

    let activity = UserActivity {
        timestamp: now(),
        user_id: "key:0123456789abcdef".to_owned(),
        session_id: Some("s-1".to_owned()),
        activity_type: "page_view".to_owned(),
        page_url: Some("/dashboard".to_owned()),
        element_id: None,
        search_query: None,
        duration_ms: Some(1_500),
        metadata: Map::new(),
    };
    let first = store.insert_user_activity(&activity).await.expect("insert activity");
    let second = store.insert_user_activity(&activity).await.expect("insert activity");
    assert_ne!(first, second);
}

/// Purging deletes at most the given rows per table per call, and repeated calls remove
/// every record older than the cutoff while newer ones stay.
pub async fn purges_old_analytics_in_batches<S: Store + ?Sized>(store: &S) {
    let device = unique_device("purge").to_string();
    let old = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).single().expect("valid instant");
    let cutoff = old + Duration::days(1);
    let change = |timestamp| StateChange {
        timestamp,
        device_id: device.clone(),
        previous_state: None,
        new_state: "online".to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: Some("system".to_owned()),
        reason: None,
        metadata: Map::new(),
    };
    for _ in 0..3 {
        store.insert_state_change(&change(old)).await.expect("insert");
    }
    store.insert_state_change(&change(now())).await.expect("insert");
    let endpoint = format!("/{device}");
    store
        .insert_request_logs(&[request_log(&endpoint, old, 1.0, 200), request_log(&endpoint, now(), 1.0, 200)])
        .await
        .expect("insert logs");
    let deleted = store.purge_analytics(cutoff, 1).await.expect("purge");
    assert_eq!(store.purge_analytics(old - Duration::days(365), u64::MAX).await.expect("no limit"), 0);
    assert!((1..=5).contains(&deleted), "one row per table at most, deleted {deleted}");
    crate::retention::purge_before(store, cutoff).await.expect("purge all");
    let history = store.state_history(&device, old - Duration::days(1), 10).await.expect("history");
    assert_eq!(history.len(), 1, "only the recent change stays");
    let parts = store.request_latencies(old - Duration::days(1), Some(&endpoint)).await.expect("latencies");
    assert_eq!(parts.iter().map(|g| g.count).sum::<u64>(), 1, "only the recent log stays");
}

/// An instant long before any other check's data (1950), so purging up to it touches only
/// what the purge checks wrote, even in a shared database.
fn ancient(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1950, 1, 1, 0, 0, 0).single().expect("valid instant") + Duration::seconds(seconds)
}

/// Raw health checks and points within `[from, before)` go in bounded batches; older and
/// newer ones stay.
pub async fn purges_old_health_checks_and_points<S: Store + ?Sized>(store: &S) {
    let device = unique_device("purge-raw");
    register(store, &device).await;
    let new =
        |checked_at| NewHealthCheck { device_id: device.clone(), checked_at, check: check(10.0, true), receipt: None };
    let times = [ancient(0), ancient(60), ancient(120), ancient(180), now()];
    store.insert_health(&times.map(new)).await.expect("insert");
    let (from, cutoff) = (ancient(60), ancient(3_600));
    let deleted = store.purge_health(from, cutoff, 2).await.expect("purge");
    assert!((1..=2).contains(&deleted), "at most the batch size, deleted {deleted}");
    while store.purge_health(from, cutoff, 2).await.expect("purge") > 0 {}
    let mut left: Vec<_> = store.health_since(&device, ancient(-1), 10).await.expect("read");
    left.sort_by_key(|c| c.checked_at);
    assert_eq!(left.iter().map(|c| c.checked_at).collect::<Vec<_>>(), [times[0], times[4]], "outside the range");

    let name = unique_device("purge-points").to_string();
    let ns = |time: DateTime<Utc>| time.timestamp_nanos_opt().expect("in range");
    let points: Vec<Point> = [ancient(0), ancient(60), ancient(61), now()]
        .into_iter()
        .map(|t| point(&name, &[], vec![("v", FieldValue::Integer(1))], ns(t), MetricType::Gauge))
        .collect();
    store.insert_points(&points, &[]).await.expect("insert");
    let deleted = store.purge_points(ns(from), ns(cutoff), 1).await.expect("purge");
    assert_eq!(deleted, 1, "one point per call with a batch of one");
    while store.purge_points(ns(from), ns(cutoff), 1_000).await.expect("purge") > 0 {}
    let mut left = store.points_since(&name, i64::MIN, &[], 10).await.expect("read");
    left.sort_by_key(Point::timestamp_ns);
    assert_eq!(left, vec![points[0].clone(), points[3].clone()]);
}

fn series(name: &str, field: &str, tags: &[(&str, &str)]) -> SeriesKey {
    let tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    SeriesKey { name: name.to_owned(), tags, field: field.to_owned() }
}

fn samples(values: &[(f64, i64)]) -> Aggregate {
    let mut aggregate = Aggregate::sample(values[0].0, values[0].1);
    for (value, time_ns) in &values[1..] {
        aggregate.merge(&Aggregate::sample(*value, *time_ns));
    }
    aggregate
}

/// Merges into the same buckets at once (several instances, or a flush beside an export)
/// each count: a backend that reads a bucket and writes back the merge must keep others from
/// doing the same in between.
pub async fn concurrent_merges_into_one_bucket_add_up<S: Store + ?Sized>(store: &S) {
    const MERGES: usize = 32;
    let name = unique_device("contended").to_string();
    let key = series(&name, "value", &[]);
    let start = 86_400 * 20_000;
    // A first merge creates the buckets: the rest all read and write back existing rows.
    let deltas = |i: usize| -> Vec<RollupDelta> {
        let sample = Aggregate::sample(1.0, start * 1_000_000_000 + i as i64);
        [Tier::Minute, Tier::Hour, Tier::Day]
            .into_iter()
            .map(|tier| RollupDelta { series: key.clone(), tier, start, aggregate: sample })
            .collect()
    };
    store.merge_rollups(&deltas(0)).await.expect("merge");
    let batches: Vec<Vec<RollupDelta>> = (1..MERGES).map(deltas).collect();
    for merged in futures_util::future::join_all(batches.iter().map(|d| store.merge_rollups(d))).await {
        merged.expect("concurrent merge");
    }
    let found = store.find_series(&[&name], "value", &[], 10).await.expect("find");
    assert_eq!(found.len(), 1, "{found:?}");
    for tier in [Tier::Minute, Tier::Hour, Tier::Day] {
        let buckets = store.rollup_buckets(&[found[0].id], tier, start, start + 1).await.expect("read");
        assert_eq!(buckets.len(), 1, "{tier:?}");
        assert_eq!(buckets[0].aggregate.count, MERGES as u64, "{tier:?}: every concurrent merge counted");
    }
}

/// Deltas merge into what is stored exactly as `Aggregate::merge` does, per series, tier and
/// bucket, however many arrive in one call.
pub async fn merges_rollups_exactly<S: Store + ?Sized>(store: &S) {
    let name = unique_device("rollup").to_string();
    let cpu = series(&name, "cpu", &[("host", "a")]);
    let delta = |tier, start, aggregate| RollupDelta { series: cpu.clone(), tier, start, aggregate };
    let first = samples(&[(0.1, 1_000), (-0.0, 3_000)]);
    let second = samples(&[(0.2, 2_000), (1e15, 2_000), (-7.5, 500)]);
    store.merge_rollups(&[delta(Tier::Minute, 60, first), delta(Tier::Hour, 0, first)]).await.expect("merge");
    store.merge_rollups(&[delta(Tier::Minute, 60, second)]).await.expect("merge again");
    store.merge_rollups(&[]).await.expect("nothing to merge");

    let found = store.find_series(&[&name], "cpu", &[], 10).await.expect("find");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, cpu);
    let id = found[0].id;
    let mut merged = first;
    merged.merge(&second);
    let minutes = store.rollup_buckets(&[id], Tier::Minute, 0, 3_600).await.expect("read");
    assert_eq!(minutes, vec![StoredBucket { series: id, start: 60, aggregate: merged }]);
    let hours = store.rollup_buckets(&[id], Tier::Hour, 0, 3_600).await.expect("read");
    assert_eq!(hours, vec![StoredBucket { series: id, start: 0, aggregate: first }]);
    assert_eq!(minutes[0].aggregate.sum, merged.sum, "the sum is exact, not a float");

    // Many series and buckets in one call, some repeated within it.
    let deltas: Vec<RollupDelta> = (0..900i64)
        .map(|i| RollupDelta {
            series: series(&name, "load", &[("host", &format!("h{}", i % 300))]),
            tier: Tier::Minute,
            start: (i / 300) * 60,
            aggregate: Aggregate::sample(i as f64, i),
        })
        .chain((0..300).map(|i| RollupDelta {
            series: series(&name, "load", &[("host", &format!("h{i}"))]),
            tier: Tier::Minute,
            start: 0,
            aggregate: Aggregate::sample(-1.0, 10_000),
        }))
        .collect();
    store.merge_rollups(&deltas).await.expect("merge a large batch");
    let load = store.find_series(&[&name], "load", &[], 1_000).await.expect("find");
    assert_eq!(load.len(), 300);
    let ids: Vec<_> = load.iter().map(|s| s.id).collect();
    let buckets = store.rollup_buckets(&ids, Tier::Minute, 0, 180).await.expect("read");
    assert_eq!(buckets.len(), 900);
    assert_eq!(buckets.iter().map(|b| b.aggregate.count).sum::<u64>(), 1_200);
    let ordered = buckets.windows(2).all(|w| (w[0].series, w[0].start) < (w[1].series, w[1].start));
    assert!(ordered, "ordered by series, then start");
}

/// Series are found by names, field and a subset of their tags; bucket ranges include their
/// start and exclude their end.
pub async fn finds_series_and_reads_bucket_ranges<S: Store + ?Sized>(store: &S) {
    let (a, b) = (unique_device("series-a").to_string(), unique_device("series-b").to_string());
    let keys = [
        series(&a, "value", &[("host", "x"), ("zone", "1")]),
        series(&a, "value", &[("host", "y")]),
        series(&a, "other", &[("host", "x")]),
        series(&b, "value", &[("host", "x")]),
        // Tags whose text holds what a backend's pattern matching treats specially.
        series(&b, "value", &[("host", "a%b_c\\d\"e")]),
        series(&b, "value", &[("host", "aXbYc\\d\"e")]),
        series(&b, "value", &[("host", "X")]),
    ];
    let deltas: Vec<RollupDelta> = keys
        .iter()
        .flat_map(|key| {
            [0i64, 3_600, 7_200].map(|start| RollupDelta {
                series: key.clone(),
                tier: Tier::Hour,
                start,
                aggregate: Aggregate::sample(start as f64, start * 1_000_000_000),
            })
        })
        .collect();
    store.merge_rollups(&deltas).await.expect("merge");
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let names = |found: &[crate::StoredSeries]| found.iter().map(|s| s.key.clone()).collect::<Vec<_>>();

    let on_x = store.find_series(&[&a, &b], "value", &[pair("host", "x")], 10).await.expect("find");
    let mut expected = vec![keys[0].clone(), keys[3].clone()];
    expected.sort_by_key(|k| k.name.clone());
    let mut got = names(&on_x);
    got.sort_by_key(|k| k.name.clone());
    assert_eq!(got, expected);
    assert_eq!(store.find_series(&[&a], "value", &[], 10).await.expect("find").len(), 2);
    assert_eq!(store.find_series(&[&a], "value", &[], 1).await.expect("find").len(), 1, "limit");
    assert!(store.find_series(&[&a], "value", &[pair("host", "z")], 10).await.expect("find").is_empty());
    assert!(store.find_series(&[], "value", &[], 10).await.expect("find").is_empty());
    let catalog = store.series_names().await.expect("names");
    for wanted in [(a.clone(), "value".to_owned()), (a.clone(), "other".to_owned()), (b.clone(), "value".to_owned())] {
        assert_eq!(catalog.iter().filter(|n| **n == wanted).count(), 1, "each name and field once: {wanted:?}");
    }
    assert!(catalog.windows(2).all(|w| w[0] < w[1]), "ordered");
    for (host, expected) in [("a%b_c\\d\"e", &keys[4]), ("aXbYc\\d\"e", &keys[5]), ("X", &keys[6])] {
        let found = store.find_series(&[&b], "value", &[pair("host", host)], 10).await.expect("find");
        assert_eq!(names(&found), std::slice::from_ref(expected), "tag values match exactly: {host}");
    }

    let id = on_x[0].id;
    let starts = |buckets: Vec<StoredBucket>| buckets.into_iter().map(|b| b.start).collect::<Vec<_>>();
    let range = store.rollup_buckets(&[id], Tier::Hour, 3_600, 7_200).await.expect("read");
    assert_eq!(starts(range), [3_600], "start included, end excluded");
    assert!(store.rollup_buckets(&[id], Tier::Minute, 0, 10_000).await.expect("read").is_empty(), "other tier");
    assert!(store.rollup_buckets(&[id], Tier::Hour, 7_200, 0).await.expect("read").is_empty(), "empty range");
    assert!(store.rollup_buckets(&[], Tier::Hour, 0, 10_000).await.expect("read").is_empty());
}

/// Purging one tier leaves the others and the newer buckets of that tier.
pub async fn purges_old_rollups_by_tier<S: Store + ?Sized>(store: &S) {
    let name = unique_device("rollup-purge").to_string();
    let key = series(&name, "value", &[]);
    let old = ancient(0).timestamp();
    let recent = now().timestamp();
    let delta = |tier: Tier, at: i64| RollupDelta {
        series: key.clone(),
        tier,
        start: tier.bucket_start(at),
        aggregate: Aggregate::sample(1.0, at * 1_000_000_000),
    };
    let deltas: Vec<RollupDelta> = Tier::ALL
        .into_iter()
        .flat_map(|tier| [delta(tier, old), delta(tier, old + 86_400), delta(tier, recent)])
        .collect();
    store.merge_rollups(&deltas).await.expect("merge");
    let cutoff = ancient(10 * 86_400).timestamp();
    assert!(store.purge_rollups(Tier::Minute, cutoff, 1).await.expect("purge") <= 1);
    while store.purge_rollups(Tier::Minute, cutoff, 100).await.expect("purge") > 0 {}
    let id = store.find_series(&[&name], "value", &[], 1).await.expect("find")[0].id;
    let count = |tier| async move { store.rollup_buckets(&[id], tier, i64::MIN, i64::MAX).await.expect("read").len() };
    assert_eq!(count(Tier::Minute).await, 1, "only the recent minute stays");
    assert_eq!(count(Tier::Hour).await, 3, "other tiers untouched");
    assert_eq!(count(Tier::Day).await, 3);
    let oldest = store.oldest_bucket(Tier::Hour).await.expect("oldest").expect("hours are stored");
    assert!(oldest <= Tier::Hour.bucket_start(old), "the 1950 hour is the oldest or older: {oldest}");
}

/// The fleet: each device with its latest check (the last accepted; of equal times the last
/// stored) and newest state, filtered, sorted on every key both ways (absent values last),
/// and paged by cursor without gaps or repeats.
pub async fn pages_the_fleet_by_any_latest_figure<S: Store + ?Sized>(store: &S) {
    let namespace = unique_device("fleet").to_string();
    let id = |n: usize| DeviceId::parse(&format!("{namespace}-{n}")).expect("valid id");
    let names = [Some("Till Two"), None, Some("back office"), Some("Till one"), None, Some("kiosk")];
    let labels = ["a", "b", "a", "a", "b", "a"];
    for n in 0..6 {
        let labels = [("site".to_owned(), labels[n].to_owned())].into();
        let new = NewDevice::parse(id(n).as_str(), names[n].map(str::to_owned), None, labels).expect("valid device");
        store.register_device(&new, &fresh_key().hash(), at(n as i64)).await.expect("register");
    }
    let checked = |n: usize, cpu: Option<f64>, healthy: bool, seconds: i64| {
        let mut report = HealthReport::minimal(healthy, 10 * n as i64);
        report.system =
            cpu.map(|c| SystemMetrics { cpu_percent: Some(c), disk_percent: Some(50.0), ..Default::default() });
        NewHealthCheck {
            device_id: id(n),
            checked_at: at(seconds),
            check: HealthCheck::validate(report).expect("valid"),
            receipt: None,
        }
    };
    // Device 0: an older check is superseded; devices 1 and 2 tie on CPU; 4 reports no CPU;
    // 5 has never reported. Two checks of device 3 at one time: the later stored wins.
    store.insert_health(&[checked(0, Some(90.0), true, 10), checked(1, Some(40.0), true, 20)]).await.expect("insert");
    store
        .insert_health(&[
            checked(0, Some(15.0), false, 30),
            checked(2, Some(40.0), true, 20),
            checked(3, Some(70.0), true, 40),
        ])
        .await
        .expect("insert");
    store.insert_health(&[checked(3, Some(75.0), false, 40), checked(4, None, true, 50)]).await.expect("insert");
    for (n, state, seconds) in [(0, "online", 1), (0, "unhealthy", 31), (3, "online", 41), (3, "offline", 41)] {
        let change = StateChange {
            timestamp: at(seconds),
            device_id: id(n).to_string(),
            previous_state: None,
            new_state: state.to_owned(),
            changed_by: "system".to_owned(),
            recorded_by: Some("system".to_owned()),
            reason: None,
            metadata: Map::new(),
        };
        store.insert_state_change(&change).await.expect("state");
    }
    let query = |sort, descending| FleetQuery {
        text: Some(namespace.clone()),
        sort,
        descending,
        limit: 100,
        ..FleetQuery::default()
    };
    let all = store.fleet(&query(FleetSortKey::DeviceId, false)).await.expect("fleet");
    assert_eq!(all.devices.len(), 6);
    assert!(all.next.is_none());
    let by_id = |n: usize| all.devices.iter().find(|d| d.device.id == id(n)).expect("listed");
    let latest0 = by_id(0).latest.as_ref().expect("device 0 reported");
    assert_eq!((latest0.cpu_percent, latest0.is_healthy, latest0.checked_at), (Some(15.0), false, at(30)));
    assert_eq!(by_id(3).latest.as_ref().map(|l| (l.cpu_percent, l.is_healthy)), Some((Some(75.0), false)));
    assert_eq!(by_id(4).latest.as_ref().map(|l| l.cpu_percent), Some(None));
    assert!(by_id(5).latest.is_none());
    assert_eq!(by_id(0).state, Some(("unhealthy".to_owned(), at(31))));
    assert_eq!(by_id(3).state, Some(("offline".to_owned(), at(41))), "the later stored of equal times");
    assert_eq!(by_id(0).device.labels.as_map().get("site").map(String::as_str), Some("a"));

    let expected = |sort: FleetSortKey, descending: bool| {
        let mut devices: Vec<&FleetDevice> = all.devices.iter().collect();
        devices.sort_by(|a, b| {
            let (x, y) = (a.sort_value(sort), b.sort_value(sort));
            fleet_order((&x, a.device.id.as_str()), (&y, b.device.id.as_str()), descending)
        });
        devices.into_iter().map(|d| d.device.id.clone()).collect::<Vec<_>>()
    };
    for sort in FleetSortKey::ALL {
        for descending in [false, true] {
            let want = expected(sort, descending);
            let page = store.fleet(&query(sort, descending)).await.expect("fleet");
            let got: Vec<DeviceId> = page.devices.iter().map(|d| d.device.id.clone()).collect();
            assert_eq!(got, want, "sort {} descending {descending}", sort.as_str());
            // Pages of two, following the cursor, give the same order.
            let mut walked = Vec::new();
            let mut paged = FleetQuery { limit: 2, ..query(sort, descending) };
            loop {
                let page = store.fleet(&paged).await.expect("page");
                assert!(page.devices.len() <= 2);
                walked.extend(page.devices.iter().map(|d| d.device.id.clone()));
                match page.next {
                    Some(cursor) => paged.after = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(walked, want, "paged by {} descending {descending}", sort.as_str());
        }
    }
    let cpu_desc = expected(FleetSortKey::CpuPercent, true);
    assert_eq!(cpu_desc[..4], [id(3), id(1), id(2), id(0)], "75, 40, 40 (by id), 15, then no figure");

    let ids = |page: crate::fleet::FleetPage| page.devices.into_iter().map(|d| d.device.id).collect::<Vec<_>>();
    let filtered = |change: &dyn Fn(&mut FleetQuery)| {
        let mut q = query(FleetSortKey::DeviceId, false);
        change(&mut q);
        q
    };
    let unhealthy = store.fleet(&filtered(&|q| q.healthy = Some(false))).await.expect("fleet");
    assert_eq!(ids(unhealthy), [id(0), id(3)]);
    let offline = store.fleet(&filtered(&|q| q.state = Some("offline".to_owned()))).await.expect("fleet");
    assert_eq!(ids(offline), [id(3)]);
    let site_b =
        store.fleet(&filtered(&|q| q.labels = vec![("site".to_owned(), "b".to_owned())])).await.expect("fleet");
    assert_eq!(ids(site_b), [id(1), id(4)]);
    let till = store.fleet(&filtered(&|q| q.text = Some("TILL".to_owned()))).await.expect("fleet");
    // Other devices of a shared database may match too: look at this check's only.
    let mine: Vec<FleetDevice> =
        till.devices.into_iter().filter(|d| d.device.id.as_str().starts_with(&namespace)).collect();
    assert_eq!(mine.len(), 2, "names match without regard to ASCII case");
    assert!(mine.iter().all(|d| d.device.name.as_deref().is_some_and(|n| n.starts_with("Till"))));
    let one = store.fleet(&filtered(&|q| q.text = Some(format!("{namespace}-4")))).await.expect("fleet");
    assert_eq!(ids(one), [id(4)]);
    let percent = store.fleet(&filtered(&|q| q.text = Some("%".to_owned()))).await.expect("fleet");
    assert!(percent.devices.is_empty(), "search text is matched literally");
}

/// Every page of an export, read two rows at a time.
async fn export_all<S: Store + ?Sized>(store: &S, query: &ExportQuery) -> Vec<ExportRecord> {
    let mut rows = Vec::new();
    let mut after = None;
    for _ in 0..1_000 {
        let page = store.export_page(query, after, 2).await.expect("export page");
        assert!(page.rows.len() <= 2, "a page holds at most the rows asked for");
        rows.extend(page.rows);
        match page.next {
            Some(next) => {
                assert!(after.is_none_or(|a| next > a), "pages move forward");
                after = Some(next);
            }
            None => return rows,
        }
    }
    panic!("an export of a few rows did not end");
}

/// Exports read each table's rows in `[from, to)` oldest first (ties by row id) across pages,
/// narrowed by device and metric name where the table has them, each row exactly once.
pub async fn exports_tables_in_time_order_by_pages<S: Store + ?Sized>(store: &S) {
    let device = unique_device("export");
    register(store, &device).await;
    let other = unique_device("export-other");
    register(store, &other).await;
    let new = |device: &DeviceId, seconds: i64, cpu: f64| NewHealthCheck {
        device_id: device.clone(),
        checked_at: at(seconds),
        check: check(cpu, true),
        receipt: None,
    };
    // Three checks share an instant, so pages break inside a tie.
    store
        .insert_health(&[new(&device, 10, 1.0), new(&device, 20, 2.0), new(&device, 20, 3.0), new(&device, 20, 4.0)])
        .await
        .expect("insert");
    store.insert_health(&[new(&device, 5, 0.0), new(&device, 90, 9.0), new(&other, 20, 7.0)]).await.expect("insert");
    let query = |kind: ExportKind| ExportQuery {
        kind,
        from: at(10),
        to: at(90),
        device: Some(device.to_string()),
        name: None,
        tier: Tier::Hour,
    };
    let cpus: Vec<f64> = export_all(store, &query(ExportKind::Health))
        .await
        .into_iter()
        .map(|row| match row {
            ExportRecord::Health(check) => {
                assert_eq!(check.device_id, device);
                check.response_data["system"]["cpu_percent"].as_f64().expect("cpu")
            }
            other => panic!("a health export read {other:?}"),
        })
        .collect();
    assert_eq!(cpus, [1.0, 2.0, 3.0, 4.0], "[from, to) by time, then by id");

    let name = unique_device("export-metric").to_string();
    let ns = |seconds: i64| at(seconds).timestamp_nanos_opt().expect("in range");
    let mine = [("device_id", device.as_str())];
    let theirs = [("device_id", other.as_str())];
    let points = [
        point(&name, &mine, vec![("v", FieldValue::Integer(1))], ns(30), MetricType::Gauge),
        point(&name, &theirs, vec![("v", FieldValue::Integer(2))], ns(31), MetricType::Gauge),
        point(&name, &mine, vec![("v", FieldValue::Integer(3))], ns(30), MetricType::Gauge),
        point(&name, &mine, vec![("v", FieldValue::Integer(4))], ns(95), MetricType::Gauge),
        point("elsewhere", &mine, vec![("v", FieldValue::Integer(5))], ns(40), MetricType::Gauge),
    ];
    store.insert_points(&points, &[]).await.expect("insert");
    let named = ExportQuery { name: Some(name.clone()), ..query(ExportKind::Metrics) };
    let exported = export_all(store, &named).await;
    assert_eq!(exported, [ExportRecord::Metric(points[0].clone()), ExportRecord::Metric(points[2].clone())]);
    let everyone = ExportQuery { device: None, ..named };
    assert_eq!(export_all(store, &everyone).await.len(), 3, "without a device, every device's points");

    let hour = |n: i64| at(0).timestamp() / 3_600 * 3_600 + n * 3_600;
    let deltas: Vec<RollupDelta> = [(hour(1), 1.0), (hour(0), 2.0), (hour(5), 3.0)]
        .into_iter()
        .flat_map(|(start, value)| {
            [Tier::Hour, Tier::Minute].map(|tier| RollupDelta {
                series: series(&name, "v", &[("device_id", device.as_str())]),
                tier,
                start,
                aggregate: Aggregate::sample(value, start * 1_000_000_000),
            })
        })
        .collect();
    store.merge_rollups(&deltas).await.expect("merge");
    let buckets = ExportQuery {
        from: DateTime::from_timestamp(hour(0), 0).expect("valid"),
        to: DateTime::from_timestamp(hour(5), 0).expect("valid"),
        name: Some(name.clone()),
        ..query(ExportKind::Rollups)
    };
    let starts: Vec<(i64, f64)> = export_all(store, &buckets)
        .await
        .into_iter()
        .map(|row| match row {
            ExportRecord::Rollup { series, tier, start, aggregate } => {
                assert_eq!((series.name.as_str(), series.field.as_str(), tier), (name.as_str(), "v", Tier::Hour));
                (start, aggregate.sum.to_f64())
            }
            other => panic!("a rollup export read {other:?}"),
        })
        .collect();
    assert_eq!(starts, [(hour(0), 2.0), (hour(1), 1.0)], "one tier's buckets starting in [from, to)");

    let change = |seconds: i64, state: &str| StateChange {
        timestamp: at(seconds),
        device_id: device.to_string(),
        previous_state: None,
        new_state: state.to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: None,
        reason: None,
        metadata: metadata(json!({"n": seconds})),
    };
    for c in [change(50, "offline"), change(15, "online"), change(50, "online"), change(95, "unhealthy")] {
        store.insert_state_change(&c).await.expect("insert");
    }
    let states: Vec<(i64, String)> = export_all(store, &query(ExportKind::StateChanges))
        .await
        .into_iter()
        .map(|row| match row {
            ExportRecord::StateChange(c) => (c.metadata["n"].as_i64().expect("n"), c.new_state),
            other => panic!("a state export read {other:?}"),
        })
        .collect();
    assert_eq!(states, [(15, "online".to_owned()), (50, "offline".to_owned()), (50, "online".to_owned())]);

    let endpoint = format!("/{device}");
    let logs = [request_log(&endpoint, at(60), 2.0, 200), request_log(&endpoint, at(12), 1.0, 500)];
    store.insert_request_logs(&logs).await.expect("insert");
    let all_logs = ExportQuery { device: None, ..query(ExportKind::RequestLogs) };
    let mine: Vec<RequestLog> = export_all(store, &all_logs)
        .await
        .into_iter()
        .filter_map(|row| match row {
            ExportRecord::RequestLog(log) if log.endpoint == endpoint => Some(log),
            ExportRecord::RequestLog(_) => None,
            other => panic!("a request log export read {other:?}"),
        })
        .collect();
    assert_eq!(mine, [logs[1].clone(), logs[0].clone()]);
}

/// Rules, silences and receivers are stored by kind and id, replaced by id, listed in id
/// order and deleted.
pub async fn keeps_alert_configuration<S: Store + ?Sized>(store: &S) {
    let id = unique_device("alert-config").to_string();
    let rule = |value: f64| {
        AlertConfig::Rule(
            Rule::parse(
                &json!({"id": id, "kind": "threshold", "series": {"name": "device_system", "field": "cpu_percent"},
                "op": ">", "value": value, "clear": 70.0, "for": "5m", "severity": "major", "labels": {"team": "ops"},
                "scope": {"labels": {"site": "berlin"}}, "annotation": "{{device_id}} at {{value}}"}),
            )
            .expect("valid rule"),
        )
    };
    store.put_alert_config(&rule(90.0)).await.expect("put rule");
    store.put_alert_config(&rule(95.0)).await.expect("replace rule");
    let rules = store.alert_configs(ConfigKind::Rule).await.expect("rules");
    let ours: Vec<_> = rules.iter().filter(|c| c.id() == id).collect();
    assert_eq!(ours, [&rule(95.0)], "a rule is replaced by id and reads back whole");
    let ids: Vec<&str> = rules.iter().map(AlertConfig::id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "rules are listed in id order");
    let silence = AlertConfig::Silence(Silence {
        id: id.clone(),
        matchers: vec![homepot_core::alert::Matcher::parse("device_id=pos-1").expect("matcher")],
        starts_at: at(0),
        ends_at: at(3600),
        created_by: Some("ops".into()),
        comment: None,
    });
    let receiver = AlertConfig::Receiver(
        Receiver::parse(
            &json!({"id": id, "kind": "alertmanager", "url": "http://127.0.0.1:9093",
            "severities": ["critical"], "matchers": ["team=ops"], "repeat_interval": "1h"}),
            None,
        )
        .expect("valid receiver"),
    );
    for config in [&silence, &receiver] {
        store.put_alert_config(config).await.expect("put");
        let listed = store.alert_configs(config.kind()).await.expect("list");
        assert_eq!(listed.iter().filter(|c| c.id() == id).collect::<Vec<_>>(), [config], "kinds are kept apart");
    }
    store.delete_alert_config(ConfigKind::Silence, &id).await.expect("delete");
    assert!(store.alert_configs(ConfigKind::Silence).await.expect("list").iter().all(|c| c.id() != id));
    assert!(store.alert_configs(ConfigKind::Rule).await.expect("list").iter().any(|c| c.id() == id));
    let again = store.delete_alert_config(ConfigKind::Silence, &id).await;
    assert!(matches!(again, Err(StorageError::NotFound { .. })), "{again:?}");
    for kind in [ConfigKind::Rule, ConfigKind::Receiver] {
        store.delete_alert_config(kind, &id).await.expect("clean up");
    }
}

fn alert(id: &str, rule: &str, subject: &str, state: AlertState, started: i64) -> Alert {
    Alert {
        id: id.to_owned(),
        rule_id: rule.to_owned(),
        subject: subject.to_owned(),
        device_id: Some(subject.to_owned()),
        state,
        severity: AlertSeverity::Major,
        labels: [("alertname".to_owned(), rule.to_owned()), ("device_id".to_owned(), subject.to_owned())].into(),
        summary: format!("{subject} is hot"),
        value: Some(91.5),
        started_at: at(started),
        fired_at: (state != AlertState::Pending).then(|| at(started + 60)),
        resolved_at: (state == AlertState::Resolved).then(|| at(started + 600)),
        ack: None,
        updated_at: at(started + 600),
    }
}

fn change(alert: &Alert, kind: EventKind, receivers: &[&str]) -> AlertChange {
    let notifications = receivers
        .iter()
        .map(|receiver| Notification {
            id: format!("{}-{:?}-{receiver}", alert.id, kind),
            alert_id: alert.id.clone(),
            receiver_id: (*receiver).to_owned(),
            kind: if kind == EventKind::Resolved { NotificationKind::Resolved } else { NotificationKind::Firing },
            alert: alert.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: alert.updated_at,
            last_error: None,
            created_at: alert.updated_at,
            delivered_at: None,
        })
        .collect();
    AlertChange {
        alert: alert.clone(),
        discard: false,
        event: Some(AlertEvent {
            alert_id: alert.id.clone(),
            at: alert.updated_at,
            kind,
            value: alert.value,
            note: None,
        }),
        notifications,
    }
}

/// A transition stores the alert, its timeline entry and its notifications together; a
/// second open alert of one rule and subject is refused with nothing stored; pending alerts
/// can be discarded; the outbox keeps queue order and delivery states.
pub async fn stores_alert_transitions_atomically<S: Store + ?Sized>(store: &S) {
    let ns = unique_device("alert").to_string();
    let (rule, subject, other) = (format!("{ns}-rule"), format!("{ns}-dev"), format!("{ns}-dev2"));
    let a1 = format!("{ns}-a1");
    let pending = alert(&a1, &rule, &subject, AlertState::Pending, 0);
    store.apply_alert_changes(&[change(&pending, EventKind::Pending, &[])]).await.expect("open");
    let open = store.open_alerts().await.expect("open alerts");
    assert_eq!(open.iter().filter(|a| a.id == a1).collect::<Vec<_>>(), [&pending], "an alert reads back whole");

    // A second open alert of the same rule and subject fails the whole batch.
    let bystander = alert(&format!("{ns}-b"), &rule, &other, AlertState::Pending, 5);
    let twin = alert(&format!("{ns}-twin"), &rule, &subject, AlertState::Pending, 6);
    let refused = store
        .apply_alert_changes(&[change(&bystander, EventKind::Pending, &[]), change(&twin, EventKind::Pending, &[])])
        .await;
    assert!(matches!(refused, Err(StorageError::Conflict { .. })), "{refused:?}");
    assert!(store.alert_timeline(&bystander.id).await.expect("read").is_none(), "nothing of a refused batch is kept");

    let mut firing = pending.clone();
    firing.state = AlertState::Firing;
    firing.fired_at = Some(at(60));
    firing.updated_at = at(60);
    store.apply_alert_changes(&[change(&firing, EventKind::Firing, &["r1", "r2"])]).await.expect("fire");
    let (stored, timeline) = store.alert_timeline(&a1).await.expect("read").expect("exists");
    assert_eq!(stored, firing);
    assert_eq!(timeline.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Pending, EventKind::Firing]);
    let queued: Vec<Notification> =
        store.pending_notifications(100_000).await.expect("pending").into_iter().filter(|n| n.alert_id == a1).collect();
    assert_eq!(queued.iter().map(|n| n.receiver_id.as_str()).collect::<Vec<_>>(), ["r1", "r2"], "queue order");
    assert_eq!(queued[0].alert, firing, "a notification carries the alert as it was");

    // A pending alert that clears is discarded with its timeline.
    store.apply_alert_changes(&[change(&bystander, EventKind::Pending, &[])]).await.expect("open bystander");
    let mut discarded = change(&bystander, EventKind::Pending, &[]);
    (discarded.discard, discarded.event) = (true, None);
    store.apply_alert_changes(&[discarded]).await.expect("discard");
    assert!(store.alert_timeline(&bystander.id).await.expect("read").is_none());

    // Resolving frees the (rule, subject) for a new alert.
    let mut resolved = firing.clone();
    resolved.state = AlertState::Resolved;
    resolved.resolved_at = Some(at(600));
    resolved.updated_at = at(600);
    let next = alert(&format!("{ns}-a2"), &rule, &subject, AlertState::Firing, 700);
    store
        .apply_alert_changes(&[change(&resolved, EventKind::Resolved, &["r1"]), change(&next, EventKind::Firing, &[])])
        .await
        .expect("resolve and reopen in one batch");
    let open: Vec<String> =
        store.open_alerts().await.expect("open").into_iter().filter(|a| a.rule_id == rule).map(|a| a.id).collect();
    assert_eq!(open, std::slice::from_ref(&next.id));
    let query = AlertQuery { device_id: Some(subject.clone()), limit: 10, ..AlertQuery::default() };
    let listed: Vec<String> = store.alerts(&query).await.expect("list").into_iter().map(|a| a.id).collect();
    assert_eq!(listed, [next.id.clone(), a1.clone()], "newest start first");
    let query = AlertQuery { state: Some(AlertState::Resolved), rule_id: Some(rule.clone()), limit: 10, ..query };
    assert_eq!(store.alerts(&query).await.expect("list").len(), 1);

    // Delivery states.
    let mut delivered = queued[0].clone();
    delivered.state = DeliveryState::Delivered;
    delivered.attempts = 2;
    delivered.delivered_at = Some(at(70));
    delivered.last_error = Some("HTTP 503".into());
    store.update_notification(&delivered).await.expect("update");
    let pending_ids: Vec<String> = store
        .pending_notifications(100_000)
        .await
        .expect("pending")
        .into_iter()
        .filter(|n| n.alert_id == a1)
        .map(|n| n.id)
        .collect();
    assert_eq!(pending_ids, [queued[1].id.clone(), format!("{a1}-Resolved-r1")]);
    let query = NotificationQuery { state: Some(DeliveryState::Delivered), alert_id: Some(a1.clone()), limit: 10 };
    assert_eq!(store.notifications(&query).await.expect("list"), [delivered.clone()]);
    let query = NotificationQuery { alert_id: Some(a1.clone()), limit: 10, ..NotificationQuery::default() };
    let all: Vec<String> = store.notifications(&query).await.expect("list").into_iter().map(|n| n.id).collect();
    assert_eq!(all.first(), Some(&format!("{a1}-Resolved-r1")), "newest first");
    assert_eq!(all.len(), 3);
    let mut unknown = delivered;
    unknown.id = format!("{ns}-nope");
    assert!(matches!(store.update_notification(&unknown).await, Err(StorageError::NotFound { .. })));
}

/// A receipt whose key's earlier uses, if any, are past a one-hour window.
fn receipt(scope: &str, key: &str, accepted_at: DateTime<Utc>, answer: &str) -> NewReceipt {
    NewReceipt {
        scope: scope.to_owned(),
        key: key.to_owned(),
        accepted_at,
        answer: answer.to_owned(),
        replaces_before: accepted_at - Duration::hours(1),
    }
}

/// A receipt is stored in the transaction of its data: a health check's receipt names the
/// check's id, points' receipts (even with no points) carry their answer, a failed batch
/// leaves none, scopes are apart, a reused key replaces its receipt, and old receipts purge.
pub async fn keeps_receipts_with_their_data<S: Store + ?Sized>(store: &S) {
    let device = unique_device("receipts");
    register(store, &device).await;
    let scope = device.to_string();
    let keyed = |n: i64, key: &str| NewHealthCheck {
        device_id: device.clone(),
        checked_at: at(n),
        check: check(1.0, true),
        receipt: Some(receipt(&scope, key, at(n), "health")),
    };
    let plain = NewHealthCheck { device_id: device.clone(), checked_at: at(2), check: check(2.0, true), receipt: None };
    let ids = store.insert_health(&[keyed(0, "a"), plain, keyed(1, "b")]).await.expect("insert");
    let found = |key: &'static str| {
        let scope = scope.clone();
        async move { store.receipt(&scope, key).await.expect("read") }
    };
    assert_eq!(
        found("a").await,
        Some(Receipt { accepted_at: at(0), answer: "health".into(), health_id: Some(ids[0]) })
    );
    assert_eq!(found("b").await.and_then(|r| r.health_id), Some(ids[2]), "each receipt names its own check");
    assert_eq!(store.receipt("someone-else", "a").await.expect("read"), None, "scopes are apart");

    let ghost = NewHealthCheck { device_id: unique_device("ghost"), ..keyed(3, "c") };
    assert!(store.insert_health(&[keyed(3, "d"), ghost]).await.is_err());
    assert_eq!(found("d").await, None, "a batch that is not stored leaves no receipt");

    let name = unique_device("receipt-metric").to_string();
    let p = point(&name, &[], vec![("value", FieldValue::Float(1.0))], 1_000, MetricType::Gauge);
    store
        .insert_points(std::slice::from_ref(&p), &[receipt(&scope, "e", at(4), "{\"stored\":1}")])
        .await
        .expect("insert");
    assert_eq!(
        found("e").await,
        Some(Receipt { accepted_at: at(4), answer: "{\"stored\":1}".into(), health_id: None })
    );
    assert_eq!(store.points_since(&name, 0, &[], 10).await.expect("read").len(), 1);
    store.insert_points(&[], &[receipt(&scope, "f", at(5), "filtered")]).await.expect("receipt alone");
    assert_eq!(found("f").await.map(|r| r.answer), Some("filtered".to_owned()));

    let recent = now();
    store.insert_points(&[], &[receipt(&scope, "a", recent, "again")]).await.expect("reuse");
    assert_eq!(
        found("a").await,
        Some(Receipt { accepted_at: recent, answer: "again".into(), health_id: None }),
        "a reused key replaces its receipt"
    );

    // A key still taken (by another process that got there first) stores nothing.
    let taken = |answer: &str| receipt(&scope, "a", recent + Duration::seconds(1), answer);
    let q = point(&name, &[], vec![("value", FieldValue::Float(2.0))], 2_000, MetricType::Gauge);
    let refused = store.insert_points(std::slice::from_ref(&q), &[taken("twice")]).await;
    assert!(matches!(refused, Err(StorageError::Conflict { .. })), "{refused:?}");
    assert_eq!(store.points_since(&name, 0, &[], 10).await.expect("read").len(), 1, "its points are not stored");
    let refused = store.insert_health(&[NewHealthCheck { receipt: Some(taken("twice")), ..keyed(6, "x") }]).await;
    assert!(matches!(refused, Err(StorageError::Conflict { .. })), "{refused:?}");
    assert_eq!(found("a").await.map(|r| r.answer), Some("again".to_owned()), "the first keeps its receipt");
    let conflicts = futures_util::future::join_all((0..8).map(|i| {
        let scope = scope.clone();
        async move { store.insert_points(&[], &[receipt(&scope, "race", now(), &format!("{i}"))]).await }
    }))
    .await;
    let won = conflicts.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "of eight processes using one key at once, one stores: {conflicts:?}");

    while store.purge_receipts(at(100), 2).await.expect("purge") > 0 {}
    for key in ["b", "e", "f"] {
        assert_eq!(found(key).await, None, "receipt {key} is older than the cut");
    }
    assert!(found("a").await.is_some(), "a newer receipt stays");
}
