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
use homepot_core::{
    ApiKey, DeviceId, FieldValue, HealthCheck, HealthReport, MetricType, NewDevice, Point, Role, SystemMetrics,
};
use serde_json::json;

use crate::{NewHealthCheck, NewKey, StorageError, Store};

/// Runs every check in this module.
pub async fn run_all<S: Store + ?Sized>(store: &S) {
    registers_and_reads_devices(store).await;
    refuses_duplicate_devices(store).await;
    finds_keys_by_hash(store).await;
    stores_health_checks_in_order(store).await;
    reads_health_newest_first_within_window(store).await;
    refuses_health_for_unknown_devices(store).await;
    removes_devices_with_their_keys_and_health(store).await;
    stores_points_with_their_types(store).await;
    filters_point_history_by_time_tags_and_limit(store).await;
    answers_ping(store).await;
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
        .map(|i| NewHealthCheck { device_id: id.clone(), checked_at: at(i * 60), check: check(1.0, true) })
        .collect();
    store.insert_health(&batch).await.expect("insert");
    let read = store.health_since(&id, at(5 * 60), 100).await.expect("read");
    assert_eq!(
        read.iter().map(|h| h.checked_at).collect::<Vec<_>>(),
        (5..10).rev().map(|i| at(i * 60)).collect::<Vec<_>>()
    );
    assert_eq!(store.health_since(&id, at(0), 3).await.expect("read").len(), 3);
    assert!(store.health_since(&unique_device("nobody"), at(0), 3).await.expect("read").is_empty());
    assert!(store.latest_health(&unique_device("nobody")).await.expect("read").is_none());
}

/// A batch naming an unregistered device stores nothing at all.
pub async fn refuses_health_for_unknown_devices<S: Store + ?Sized>(store: &S) {
    let known = unique_device("known");
    register(store, &known).await;
    let batch = vec![
        NewHealthCheck { device_id: known.clone(), checked_at: at(0), check: check(1.0, true) },
        NewHealthCheck { device_id: unique_device("ghost"), checked_at: at(1), check: check(1.0, true) },
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
        .insert_health(&[NewHealthCheck { device_id: id.clone(), checked_at: at(0), check: check(1.0, true) }])
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
    store.insert_points(&batch).await.expect("insert points");
    let read = store.points_since(&name, 0, &[], 10).await.expect("read");
    assert_eq!(read, vec![batch[1].clone(), batch[0].clone()], "newest first, intact");
    store.insert_points(&[]).await.expect("empty batch");
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
    store.insert_points(&batch).await.expect("insert");
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

/// A reachable store answers `ping`.
pub async fn answers_ping<S: Store + ?Sized>(store: &S) {
    store.ping().await.expect("ping");
}
