//! The journal backend against the whole conformance kit, across reopenings, through a crash's
//! torn write, and under the engine.

use std::io::Write;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use homepot_core::analytics::StateChange;
use homepot_core::{DeviceId, FieldValue, HealthCheck, HealthReport, KeyHash, NewDevice, Point, Role};
use homepot_engine::{Homepot, Settings, SystemClock};
use homepot_journal_store::{JournalStore, OpenError};
use homepot_storage::AnalyticsStore;
use homepot_storage::conformance;
use homepot_storage::{DeviceStore, HealthStore, KeyStore, MetricStore, NewHealthCheck, NewKey, StorageError, Store};

fn device(id: &str) -> NewDevice {
    NewDevice::with_id(DeviceId::parse(id).expect("valid id"))
}

fn check(healthy: bool) -> HealthCheck {
    HealthCheck::validate(HealthReport::minimal(healthy, 12)).expect("valid")
}

#[tokio::test]
async fn conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = JournalStore::open(dir.path().join("journal.jsonl")).await.expect("open");
    conformance::run_all(&store).await;

    // Everything the kit wrote comes back after a reopen, answer for answer.
    let devices = store.devices().await.expect("devices");
    let keys = store.keys(None).await.expect("keys");
    drop(store);
    let reopened = JournalStore::open(dir.path().join("journal.jsonl")).await.expect("reopen");
    assert_eq!(reopened.devices().await.expect("devices"), devices);
    assert_eq!(reopened.keys(None).await.expect("keys"), keys);
}

#[tokio::test]
async fn what_was_acknowledged_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let pos = DeviceId::parse("pos-1").unwrap();

    let store = JournalStore::open(&path).await.expect("open");
    store.register_device(&device("pos-1"), &KeyHash::of("device-key"), now).await.expect("registered");
    // Refused, journaled, and refused again on replay: ids stay aligned.
    let refused = store.register_device(&device("pos-1"), &KeyHash::of("other"), now).await;
    assert!(matches!(refused, Err(StorageError::Conflict { .. })), "{refused:?}");
    let read_key = NewKey { hash: KeyHash::of("reader"), role: Role::Read, device_id: None, created_at: now };
    let read_id = store.insert_key(&read_key).await.expect("key");
    let ids = store
        .insert_health(&[NewHealthCheck {
            device_id: pos.clone(),
            checked_at: now,
            check: check(false),
            receipt: None,
        }])
        .await
        .expect("stored");
    let point = Point::new(
        "cpu".into(),
        vec![("host".into(), "a".into())],
        vec![("v".into(), FieldValue::Float(1.5))],
        7,
        Default::default(),
    )
    .expect("valid");
    store.insert_points(std::slice::from_ref(&point), &[]).await.expect("points");
    let change = StateChange {
        timestamp: now,
        device_id: "pos-1".into(),
        previous_state: None,
        new_state: "online".into(),
        changed_by: "system".into(),
        recorded_by: Some("system".into()),
        reason: None,
        metadata: serde_json::Map::new(),
    };
    store.insert_state_change(&change).await.expect("state");
    drop(store);

    let store = JournalStore::open(&path).await.expect("reopen");
    let latest = store.latest_health(&pos).await.expect("read").expect("a check");
    assert_eq!(latest.id, ids[0]);
    assert!(!latest.is_healthy);
    assert_eq!(store.key_by_hash(&KeyHash::of("reader")).await.unwrap().map(|k| k.id), Some(read_id));
    assert!(store.key_by_hash(&KeyHash::of("other")).await.unwrap().is_none(), "the refused key stays refused");
    assert_eq!(store.points_since("cpu", 0, &[], 10).await.unwrap(), vec![point]);
    assert_eq!(store.state_history(&change.device_id, change.timestamp, 10).await.unwrap(), vec![change]);
    // New records continue after the replayed ones.
    let next = NewKey { hash: KeyHash::of("second reader"), ..read_key };
    assert!(store.insert_key(&next).await.expect("key").0 > read_id.0);
}

#[tokio::test]
async fn a_torn_last_line_is_cut_and_writing_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    let now = Utc::now();
    let store = JournalStore::open(&path).await.expect("open");
    store.register_device(&device("edge-1"), &KeyHash::of("k1"), now).await.expect("registered");
    drop(store);
    // A crash halfway through an append: never acknowledged, so it must not count.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"op":"register_device","device":{"device_id":"ed"#).unwrap();
    drop(file);

    let store = JournalStore::open(&path).await.expect("a torn tail is not corruption");
    assert_eq!(store.devices().await.unwrap().len(), 1);
    store.register_device(&device("edge-2"), &KeyHash::of("k2"), now).await.expect("registered");
    drop(store);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() == 2, "{text}");
    let store = JournalStore::open(&path).await.expect("reopen");
    assert_eq!(store.devices().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_altered_line_refuses_to_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    let store = JournalStore::open(&path).await.expect("open");
    store.register_device(&device("pos-1"), &KeyHash::of("k1"), Utc::now()).await.expect("registered");
    store.register_device(&device("pos-2"), &KeyHash::of("k2"), Utc::now()).await.expect("registered");
    drop(store);
    let text = std::fs::read_to_string(&path).unwrap().replacen("pos-1", "pos 1", 1);
    std::fs::write(&path, text).unwrap();

    match JournalStore::open(&path).await {
        Err(OpenError::Corrupt { line, reason }) => {
            assert_eq!(line, 1);
            assert!(reason.contains("device_id"), "{reason}");
        }
        other => panic!("expected a corrupt journal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_engine_runs_on_it_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.jsonl");
    let pos = DeviceId::parse("pos-7").unwrap();

    let store = Arc::new(JournalStore::open(&path).await.expect("open"));
    let (homepot, engine) = Homepot::start(store, Settings::default(), Arc::new(SystemClock)).await.expect("start");
    homepot.register_device(&device("pos-7")).await.expect("registered");
    let (write, _) = homepot.record_health(pos.clone(), check(true), None).await.expect("recorded");
    engine.shutdown().await;
    drop(homepot);

    let store = Arc::new(JournalStore::open(&path).await.expect("reopen"));
    store.ping().await.expect("answers");
    let (homepot, engine) = Homepot::start(store, Settings::default(), Arc::new(SystemClock)).await.expect("restart");
    let checks = homepot.health_history(&pos, 1, 10).await.expect("history");
    assert_eq!(checks.iter().map(|c| c.id.0).collect::<Vec<_>>(), vec![write.answer().0]);
    engine.shutdown().await;
}
