//! Several processes on one database (homepot instances behind a balancer, or a server and the
//! CLI): what each of them merges into the rollups must add up exactly, device states change
//! once whichever instance sees the change, an idempotency key stores once whichever instances
//! its retries reach, and singleton work (the alert outbox's delivery)
//! is done by one instance at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use homepot_core::analytics::StateChange;
use homepot_core::filter::FilterConfig;
use homepot_core::rollup::{Aggregate, Tier};
use homepot_core::{DeviceId, FieldValue, HealthCheck, HealthReport, MetricType, NewDevice, Point};
use homepot_engine::{
    AlertSettings, AnalyticsSettings, DeliveryPolicy, Homepot, IdempotencyKey, Settings, SystemClock,
};
use homepot_storage::retention::RetentionPolicy;
use homepot_storage::{
    DeviceStore, HealthStore, NewHealthCheck, PresenceStore, RollupDelta, RollupStore, SeriesKey, Store,
};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::webhook::Webhook;
use homepot_tests::{Backend, open_isolated_store, open_store, postgres_url, unique};
use serde_json::json;

/// Processes that each merge this many one-sample deltas into the same buckets.
const PROCESSES: usize = 2;
const TASKS_PER_PROCESS: usize = 4;
const MERGES_PER_TASK: usize = 25;

#[tokio::test]
async fn postgres_concurrent_merges_into_one_bucket_add_up() {
    let Some((first, second, _)) =
        two_processes(Backend::Postgres, "postgres_concurrent_merges_into_one_bucket_add_up").await
    else {
        return;
    };
    merges_add_up(vec![Arc::new(first), Arc::new(second)]).await;
}

#[tokio::test]
async fn sqlite_concurrent_merges_into_one_bucket_add_up() {
    let (first, second, _dir) = two_processes(Backend::Sqlite, "shared_database").await.expect("SQLite");
    merges_add_up(vec![Arc::new(first), Arc::new(second)]).await;
}

/// Two connections to one database, as two processes have: on SQLite each with its own pool
/// and write lock; `None` when the backend is not configured.
async fn two_processes(backend: Backend, test: &str) -> Option<(SeaOrmStore, SeaOrmStore, Option<tempfile::TempDir>)> {
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(postgres_url(test)?),
    };
    // Connects after the shared helper, which runs the migrations once.
    let (first, dir) = open_store(backend, test).await?;
    let url = url
        .unwrap_or_else(|| format!("sqlite://{}", dir.as_ref().expect("a file").path().join("homepot.db").display()));
    let second = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("a second process");
    Some((first, second, dir))
}

/// Every process merges deltas of one sample into the same minute, hour and day buckets at
/// once; each bucket must end up counting every one of them.
async fn merges_add_up(stores: Vec<Arc<SeaOrmStore>>) {
    assert_eq!(stores.len(), PROCESSES);
    let series = SeriesKey { name: unique("contended"), tags: vec![], field: "value".into() };
    let start = chrono::Utc::now().timestamp() / 86_400 * 86_400;
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..TASKS_PER_PROCESS {
            let (store, series) = (Arc::clone(store), series.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..MERGES_PER_TASK {
                    let sample = Aggregate::sample(1.0, start * 1_000_000_000 + i64::try_from(i).unwrap());
                    let deltas: Vec<RollupDelta> = [Tier::Minute, Tier::Hour, Tier::Day]
                        .into_iter()
                        .map(|tier| RollupDelta { series: series.clone(), tier, start, aggregate: sample })
                        .collect();
                    store.merge_rollups(&deltas).await.expect("merged");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("joined");
    }
    let expected = (PROCESSES * TASKS_PER_PROCESS * MERGES_PER_TASK) as u64;
    let found = stores[0].find_series(&[&series.name], "value", &[], 10).await.expect("series");
    assert_eq!(found.len(), 1, "one series, however many processes created it: {found:?}");
    for tier in [Tier::Minute, Tier::Hour, Tier::Day] {
        let buckets = stores[0].rollup_buckets(&[found[0].id], tier, start, start + 1).await.expect("buckets");
        assert_eq!(buckets.len(), 1, "{tier:?}");
        assert_eq!(buckets[0].aggregate.count, expected, "{tier:?}: every merge counted once");
        assert_eq!(buckets[0].aggregate.sum.to_f64(), expected as f64, "{tier:?}");
    }
}

#[tokio::test]
async fn sqlite_one_instance_at_a_time_delivers_notifications() {
    let (store, _dir) = open_isolated_store(Backend::Sqlite, "lease_delivery").await.expect("SQLite");
    one_instance_at_a_time_delivers_notifications(Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_one_instance_at_a_time_delivers_notifications() {
    let Some((store, _)) = open_isolated_store(Backend::Postgres, "lease_delivery").await else { return };
    one_instance_at_a_time_delivers_notifications(Arc::new(store)).await;
}

/// An instance's settings. Retention off: on the shared PostgreSQL database it would delete
/// what other tests wrote (and it deleted this file's own old-timestamped points mid-test).
fn instance(id: &str) -> Settings {
    Settings {
        instance_id: id.to_owned(),
        retention: RetentionPolicy::KEEP_ALL,
        analytics: AnalyticsSettings { retention: None, ..AnalyticsSettings::default() },
        lease_ttl: Duration::from_secs(1),
        alerting: AlertSettings {
            // Cycles run when the test says so.
            evaluation_interval: Duration::from_secs(86_400),
            delivery: DeliveryPolicy { poll_interval: Duration::from_millis(20), ..DeliveryPolicy::default() },
            ..AlertSettings::default()
        },
        ..Settings::default()
    }
}

/// Two instances read the same outbox: only the lease holder sends. A holder that died
/// without handing its lease over (its row left behind) holds up delivery only until the
/// lease runs out; then one of the living takes over, and each notification leaves once.
async fn one_instance_at_a_time_delivers_notifications(store: Arc<dyn Store>) {
    let hook = Webhook::start().await;
    let now = Utc::now();
    let dead_until = now + TimeDelta::milliseconds(1_500);
    assert!(store.acquire_lease("alert-delivery", "dead-instance", now, dead_until).await.expect("lease"));
    let (a, engine_a) = Homepot::start(Arc::clone(&store), instance("a"), Arc::new(SystemClock)).await.expect("a");
    let (b, engine_b) = Homepot::start(Arc::clone(&store), instance("b"), Arc::new(SystemClock)).await.expect("b");
    a.put_receiver(&json!({"id": "hook", "url": hook.url(), "repeat_interval": "10m"}), None).await.expect("receiver");
    a.put_alert_rule(&json!({"id": "sick", "kind": "unhealthy", "count": 1}), None).await.expect("rule");
    let device = DeviceId::parse(&unique("till-")).unwrap();
    a.register_device(&NewDevice::with_id(device.clone())).await.expect("register");
    let sick = HealthCheck::validate(HealthReport::minimal(false, 20)).unwrap();
    a.record_health(device, sick, None).await.expect("recorded");
    a.evaluate_alerts().await.expect("evaluated");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.received().is_empty(), "the dead instance's lease still runs: nobody sends");
    let received = hook.wait_for(10, |r| !r.is_empty()).await;
    assert_eq!(received.len(), 1, "taken over once the lease ran out: {received:?}");
    assert!(Utc::now() >= dead_until, "not before the lease ran out");
    // Both instances keep polling the outbox; the notification must not leave again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.received().len(), 1, "each notification leaves once");
    drop(b);
    engine_b.shutdown().await;
    engine_a.shutdown().await;
    drop(a);
}

#[tokio::test]
async fn sqlite_device_states_change_once_across_instances() {
    let (first, second, _dir) = two_processes(Backend::Sqlite, "shared_states").await.expect("SQLite");
    device_states_change_once_across_instances(Arc::new(first), Arc::new(second)).await;
}

#[tokio::test]
async fn postgres_device_states_change_once_across_instances() {
    // A database of its own: the sweep marks any silent device in it offline. One pool for
    // both instances: each statement still takes a connection of its own.
    let Some((store, _)) = open_isolated_store(Backend::Postgres, "shared_states").await else { return };
    let store: Arc<dyn Store> = Arc::new(store);
    device_states_change_once_across_instances(Arc::clone(&store), store).await;
}

/// Devices expected every 200 ms, offline after two missed.
fn fast_instance(id: &str) -> Settings {
    Settings {
        heartbeat_interval: Duration::from_millis(200),
        missed_heartbeats: 2,
        lease_ttl: Duration::from_secs(1),
        ..instance(id)
    }
}

/// A device's checks alternate between two instances (as behind a round-robin balancer):
/// each transition is recorded once, whichever instance saw it, a change one instance made
/// is known to the other within a tick, and only one instance marks the silent device
/// offline.
async fn device_states_change_once_across_instances(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let clock = Arc::new(SystemClock);
    let (a, engine_a) = Homepot::start(Arc::clone(&first), fast_instance("a"), clock.clone()).await.expect("a");
    let (b, engine_b) = Homepot::start(Arc::clone(&second), fast_instance("b"), clock).await.expect("b");
    let device = DeviceId::parse(&unique("till-")).unwrap();
    a.register_device(&NewDevice::with_id(device.clone())).await.expect("register");
    let check = |healthy: bool| HealthCheck::validate(HealthReport::minimal(healthy, 20)).unwrap();
    // Healthy, then unhealthy on b, then healthy again on a: a knows b's change once it has
    // ticked (every 100 ms here), and records the return from it.
    for (instance, healthy, pause) in [(&a, true, 50), (&b, true, 50), (&a, true, 50), (&b, false, 250), (&a, true, 50)]
    {
        instance.record_health(device.clone(), check(healthy), None).await.expect("recorded");
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let states = || async {
        let history =
            first.state_history(device.as_str(), chrono::DateTime::<Utc>::UNIX_EPOCH, 100).await.expect("read");
        history.into_iter().rev().map(|c| c.new_state).collect::<Vec<_>>()
    };
    assert_eq!(states().await, ["online", "unhealthy", "online"]);

    // Silent: both instances tick, one marks it offline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while states().await.last().map(String::as_str) != Some("offline") {
        assert!(tokio::time::Instant::now() < deadline, "never marked offline: {:?}", states().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both ticks have had their chance to mark it again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(states().await, ["online", "unhealthy", "online", "offline"]);

    // Back on both instances at once: one of them records the return.
    let (x, y) = tokio::join!(
        a.record_health(device.clone(), check(true), None),
        b.record_health(device.clone(), check(true), None)
    );
    x.expect("a recorded");
    y.expect("b recorded");
    assert_eq!(states().await, ["online", "unhealthy", "online", "offline", "online"]);
    drop((a, b));
    engine_a.shutdown().await;
    engine_b.shutdown().await;
}

#[tokio::test]
async fn sqlite_an_idempotency_key_stores_once_across_instances() {
    let (first, second, _dir) = two_processes(Backend::Sqlite, "shared_receipts").await.expect("SQLite");
    an_idempotency_key_stores_once_across_instances(Arc::new(first), Arc::new(second)).await;
}

#[tokio::test]
async fn postgres_an_idempotency_key_stores_once_across_instances() {
    let Some((first, second, _)) =
        two_processes(Backend::Postgres, "postgres_an_idempotency_key_stores_once_across_instances").await
    else {
        return;
    };
    an_idempotency_key_stores_once_across_instances(Arc::new(first), Arc::new(second)).await;
}

/// A sender's retry reaches another instance while the first request is still in flight:
/// both get the same answer, and the data is stored once.
async fn an_idempotency_key_stores_once_across_instances(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    const ROUNDS: usize = 20;
    // Every sample stored, so each answer names what it stored.
    let settings =
        |id: &str| Settings { filter: FilterConfig { enabled: false, ..FilterConfig::default() }, ..instance(id) };
    let clock = Arc::new(SystemClock);
    let (a, engine_a) = Homepot::start(Arc::clone(&first), settings("a"), clock.clone()).await.expect("a");
    let (b, engine_b) = Homepot::start(Arc::clone(&second), settings("b"), clock).await.expect("b");
    let device = DeviceId::parse(&unique("till-")).unwrap();
    a.register_device(&NewDevice::with_id(device.clone())).await.expect("register");
    let check = HealthCheck::validate(HealthReport::minimal(true, 20)).unwrap();
    for round in 0..ROUNDS {
        let key = IdempotencyKey::new(device.to_string(), &format!("check-{round}")).unwrap();
        let (x, y) = tokio::join!(
            a.record_health(device.clone(), check.clone(), Some(&key)),
            b.record_health(device.clone(), check.clone(), Some(&key))
        );
        let (x, y) = (x.expect("a answered").0, y.expect("b answered").0);
        assert_eq!(x, y, "round {round}: both instances answer with the one stored check");
    }
    let stored = first.health_since(&device, chrono::DateTime::<Utc>::UNIX_EPOCH, 1_000).await.expect("read");
    assert_eq!(stored.len(), ROUNDS, "one check per key");

    let name = unique("retried_");
    let start_ns = Utc::now().timestamp_nanos_opt().expect("now");
    for round in 0..ROUNDS {
        let key = IdempotencyKey::new("sender", &format!("{name}-{round}")).unwrap();
        let batch = || {
            let time = start_ns + round as i64;
            vec![
                Point::new(
                    name.clone(),
                    vec![],
                    vec![("value".into(), FieldValue::Float(1.0))],
                    time,
                    MetricType::Gauge,
                )
                .unwrap(),
            ]
        };
        let (x, y) =
            tokio::join!(a.write_points("sender", batch(), Some(&key)), b.write_points("sender", batch(), Some(&key)));
        assert_eq!(x.expect("a answered").stored, 1);
        assert_eq!(y.expect("b answered").stored, 1);
    }
    let points = first.points_since(&name, 0, &[], 1_000).await.expect("read");
    assert_eq!(points.len(), ROUNDS, "one batch per key");
    drop((a, b));
    engine_a.shutdown().await;
    engine_b.shutdown().await;
}

#[tokio::test]
async fn postgres_concurrent_device_writes_do_not_deadlock() {
    let Some((first, second, _)) =
        two_processes(Backend::Postgres, "postgres_concurrent_device_writes_do_not_deadlock").await
    else {
        return;
    };
    concurrent_device_writes_do_not_deadlock(Arc::new(first), Arc::new(second)).await;
}

#[tokio::test]
async fn sqlite_concurrent_device_writes_do_not_deadlock() {
    let (first, second, _dir) = two_processes(Backend::Sqlite, "shared_database").await.expect("SQLite");
    concurrent_device_writes_do_not_deadlock(Arc::new(first), Arc::new(second)).await;
}

/// Instances write the same devices' rows at once, each batch in its own order: health
/// batches (which keep each device's latest check), sightings and state transitions. Rows
/// locked in different orders deadlock on PostgreSQL, and the database fails one writer.
async fn concurrent_device_writes_do_not_deadlock(first: Arc<SeaOrmStore>, second: Arc<SeaOrmStore>) {
    const DEVICES: usize = 40;
    const ROUNDS: usize = 30;
    let devices: Vec<DeviceId> = (0..DEVICES).map(|_| DeviceId::parse(&unique("contended-")).unwrap()).collect();
    for device in &devices {
        first
            .register_device(
                &NewDevice::with_id(device.clone()),
                &homepot_core::ApiKey::from_entropy(rand::random()).hash(),
                Utc::now(),
            )
            .await
            .expect("register");
    }
    let check = HealthCheck::validate(HealthReport::minimal(true, 20)).unwrap();
    let mut tasks = Vec::new();
    for (n, store) in [&first, &second, &first, &second].into_iter().enumerate() {
        let (store, devices, check) = (Arc::clone(store), devices.clone(), check.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let mut order = devices.clone();
                order.rotate_left((round * 7 + n * 13) % DEVICES);
                if (round + n) % 2 == 0 {
                    order.reverse();
                }
                let now = Utc::now();
                let batch: Vec<NewHealthCheck> = order
                    .iter()
                    .map(|d| NewHealthCheck {
                        device_id: d.clone(),
                        checked_at: now,
                        check: check.clone(),
                        receipt: None,
                    })
                    .collect();
                store.insert_health(&batch).await.expect("health batch");
                let seen: Vec<(DeviceId, chrono::DateTime<Utc>)> = order.iter().map(|d| (d.clone(), now)).collect();
                store.mark_seen(&seen).await.expect("sightings");
                let (from, to) = if round % 2 == 0 { (None, "online") } else { (Some("online"), "unhealthy") };
                let transitions: Vec<StateChange> = order
                    .iter()
                    .map(|d| StateChange {
                        timestamp: now,
                        device_id: d.to_string(),
                        previous_state: from.map(str::to_owned),
                        new_state: to.to_owned(),
                        changed_by: "system".into(),
                        recorded_by: Some("system".into()),
                        reason: None,
                        metadata: serde_json::Map::new(),
                    })
                    .collect();
                store.apply_transitions(&transitions).await.expect("transitions");
            }
        }));
    }
    for task in tasks {
        task.await.expect("no writer failed");
    }
}
