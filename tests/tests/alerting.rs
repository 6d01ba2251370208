//! The alerting engine on every backend, with a manual clock: each rule kind, hysteresis,
//! `for`, acknowledgement, silences, repeats, and a restart that keeps pending timers and
//! re-fires nothing. Notifications go to a real webhook receiver.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::alert::{AlertState, DeliveryState, EventKind, NotificationKind};
use homepot_core::analytics::RequestLog;
use homepot_core::{DeviceId, FieldValue, HealthCheck, HealthReport, MetricType, NewDevice, Point, SystemMetrics};
use homepot_engine::{AlertSettings, DeliveryPolicy, Engine, Homepot, ManualClock, Settings};
use homepot_storage::Store;
use homepot_storage::alerts::{AlertQuery, NotificationQuery};
use homepot_tests::webhook::Webhook;
use homepot_tests::{Backend, open_isolated_store};
use serde_json::{Value, json};

struct Harness {
    homepot: Homepot,
    engine: Option<Engine>,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    hook: Webhook,
    _dir: Option<tempfile::TempDir>,
}

fn settings() -> Settings {
    Settings {
        heartbeat_interval: Duration::from_secs(60),
        alerting: AlertSettings {
            // Cycles run when the test says so.
            evaluation_interval: Duration::from_secs(86_400),
            delivery: DeliveryPolicy { poll_interval: Duration::from_millis(50), ..DeliveryPolicy::default() },
            ..AlertSettings::default()
        },
        ..Settings::default()
    }
}

fn start_time() -> DateTime<Utc> {
    // Now, so that the live view keeps what is written.
    Utc::now()
}

impl Harness {
    async fn start(backend: Backend, test: &str) -> Option<Self> {
        let (store, dir) = open_isolated_store(backend, test).await?;
        let store: Arc<dyn Store> = Arc::new(store);
        let clock = Arc::new(ManualClock::new(start_time()));
        let (homepot, engine) = Homepot::start(Arc::clone(&store), settings(), clock.clone()).await.expect("start");
        let hook = Webhook::start().await;
        let harness = Self { homepot, engine: Some(engine), clock, store, hook, _dir: dir };
        harness.put("/receivers", json!({"id": "hook", "url": harness.hook.url(), "repeat_interval": "10m"})).await;
        Some(harness)
    }

    async fn restart(&mut self) {
        self.engine.take().expect("running").shutdown().await;
        let (homepot, engine) =
            Homepot::start(Arc::clone(&self.store), settings(), self.clock.clone()).await.expect("restart");
        self.homepot = homepot;
        self.engine = Some(engine);
    }

    async fn put(&self, what: &str, document: Value) {
        match what {
            "/rules" => drop(self.homepot.put_alert_rule(&document, None).await.expect("rule")),
            "/receivers" => drop(self.homepot.put_receiver(&document, None).await.expect("receiver")),
            _ => drop(self.homepot.add_silence(&document).await.expect("silence")),
        }
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    async fn evaluate(&self) {
        self.homepot.evaluate_alerts().await.expect("evaluation");
    }

    async fn device(&self, id: &str) -> DeviceId {
        let device = DeviceId::parse(id).unwrap();
        self.homepot.register_device(&NewDevice::with_id(device.clone())).await.expect("register");
        device
    }

    async fn report(&self, device: &DeviceId, healthy: bool, cpu: f64) {
        let mut report = HealthReport::minimal(healthy, 20);
        report.system = Some(SystemMetrics { cpu_percent: Some(cpu), ..SystemMetrics::default() });
        self.homepot
            .record_health(device.clone(), HealthCheck::validate(report).unwrap(), None)
            .await
            .expect("recorded");
    }

    /// (state, value) of the alerts of `rule`, newest first.
    async fn alerts(&self, rule: &str) -> Vec<(AlertState, Option<f64>, String)> {
        let query = AlertQuery { rule_id: Some(rule.into()), limit: 100, ..AlertQuery::default() };
        let alerts = self.homepot.alerts(&query).await.expect("alerts");
        alerts.into_iter().map(|a| (a.state, a.value, a.subject)).collect()
    }

    async fn states(&self, rule: &str) -> Vec<AlertState> {
        self.alerts(rule).await.into_iter().map(|a| a.0).collect()
    }

    /// (kind, delivery state) of every notification about `rule`'s alerts, oldest first.
    async fn notifications(&self, rule: &str) -> Vec<(NotificationKind, DeliveryState)> {
        let query = NotificationQuery { limit: 1_000, ..NotificationQuery::default() };
        let mut all = self.homepot.alert_notifications(&query).await.expect("notifications");
        all.retain(|n| n.alert.rule_id == rule);
        all.reverse();
        all.into_iter().map(|n| (n.kind, n.state)).collect()
    }

    async fn shutdown(mut self) {
        self.engine.take().expect("running").shutdown().await;
    }
}

async fn threshold_with_hysteresis_and_for(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "cpu", "kind": "threshold", "series": {"name": "device_system", "field": "cpu_percent"},
        "op": ">", "value": 90, "clear": 80, "for": "2m", "severity": "major"}),
    )
    .await;
    let pos = h.device("pos-1").await;
    h.report(&pos, true, 95.0).await;
    h.evaluate().await;
    assert_eq!(h.states("cpu").await, [AlertState::Pending], "breached, not yet for 2m");
    h.advance(60);
    h.report(&pos, true, 85.0).await;
    h.evaluate().await;
    assert_eq!(h.states("cpu").await, [AlertState::Pending], "inside the band: still pending");
    h.advance(60);
    h.evaluate().await;
    assert_eq!(h.alerts("cpu").await, [(AlertState::Firing, Some(85.0), "pos-1".into())]);
    h.report(&pos, true, 81.0).await;
    h.advance(30);
    h.evaluate().await;
    assert_eq!(h.states("cpu").await, [AlertState::Firing], "hysteresis: 81 is above clear");
    h.report(&pos, true, 79.0).await;
    h.evaluate().await;
    assert_eq!(h.states("cpu").await, [AlertState::Resolved]);
    assert_eq!(
        h.notifications("cpu").await.iter().map(|n| n.0).collect::<Vec<_>>(),
        [NotificationKind::Firing, NotificationKind::Resolved]
    );
    let id =
        h.homepot.alerts(&AlertQuery { rule_id: Some("cpu".into()), limit: 1, ..AlertQuery::default() }).await.unwrap()
            [0]
        .id
        .clone();
    let (alert, timeline) = h.homepot.alert(&id).await.expect("timeline");
    assert_eq!(
        timeline.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Pending, EventKind::Firing, EventKind::Resolved]
    );
    assert_eq!(alert.fired_at.unwrap() - alert.started_at, TimeDelta::seconds(120));

    // A breach that clears before `for` never fires and leaves nothing behind.
    h.report(&pos, true, 99.0).await;
    h.evaluate().await;
    h.report(&pos, true, 50.0).await;
    h.advance(10);
    h.evaluate().await;
    assert_eq!(h.states("cpu").await, [AlertState::Resolved], "the pending blip was discarded");

    // A series that stops (its device gone quiet past the live retention) resolves as no data.
    let quiet = h.device("pos-quiet").await;
    h.report(&quiet, true, 99.0).await;
    h.evaluate().await;
    h.advance(120);
    h.report(&quiet, true, 99.0).await;
    h.evaluate().await;
    let quiet_state = || async {
        let query = AlertQuery { device_id: Some("pos-quiet".into()), limit: 5, ..AlertQuery::default() };
        h.homepot.alerts(&query).await.unwrap().into_iter().map(|a| a.state).collect::<Vec<_>>()
    };
    assert_eq!(quiet_state().await, [AlertState::Firing]);
    h.advance(301);
    h.evaluate().await;
    assert_eq!(quiet_state().await, [AlertState::Resolved], "no data for longer than the live retention");
    h.report(&pos, true, 50.0).await;

    // The webhook got both messages, with the incident's start, end and duration.
    let received = h.hook.wait_for(10, |r| r.len() >= 4).await;
    let received: Vec<Value> = received.into_iter().filter(|b| b["alert"]["device_id"] == "pos-1").collect();
    let statuses: Vec<&str> = received.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    assert_eq!(received[1]["alert"]["duration_seconds"], 150);
    assert!(received[1]["alert"]["ends_at"].is_string() && received[0]["alert"]["ends_at"].is_null());
}

async fn absent_devices_including_ones_that_never_reported(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "silent", "kind": "absent", "heartbeats": 2, "severity": "critical",
        "scope": {"labels": {"site": "berlin"}}}),
    )
    .await;
    let never = DeviceId::parse("never-1").unwrap();
    let labels = [("site".to_owned(), "berlin".to_owned())].into();
    let new = NewDevice::parse(never.as_str(), None, None, labels).unwrap();
    h.homepot.register_device(&new).await.expect("register");
    let talker = NewDevice::parse("talker-1", None, None, [("site".to_owned(), "berlin".to_owned())].into()).unwrap();
    h.homepot.register_device(&talker).await.expect("register");
    let elsewhere = h.device("elsewhere-1").await;
    h.evaluate().await;
    assert!(h.states("silent").await.is_empty());
    h.advance(100);
    h.report(&DeviceId::parse("talker-1").unwrap(), true, 10.0).await;
    h.report(&elsewhere, true, 10.0).await;
    h.advance(30);
    h.evaluate().await;
    let alerts = h.alerts("silent").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0].0, alerts[0].2.as_str()), (AlertState::Firing, "never-1"), "silent for 130 s > 2 x 60 s");
    h.advance(120);
    h.evaluate().await;
    let mut firing: Vec<String> = h.alerts("silent").await.into_iter().map(|a| a.2).collect();
    firing.sort();
    assert_eq!(firing, ["never-1", "talker-1"], "out of scope: elsewhere-1");
    h.report(&never, true, 10.0).await;
    h.evaluate().await;
    let states: Vec<(AlertState, String)> = h.alerts("silent").await.into_iter().map(|a| (a.0, a.2)).collect();
    assert!(states.contains(&(AlertState::Resolved, "never-1".into())), "{states:?}");
}

async fn unhealthy_in_a_row(h: &mut Harness) {
    h.put("/rules", json!({"id": "sick", "kind": "unhealthy", "count": 3})).await;
    let pos = h.device("pos-9").await;
    for _ in 0..2 {
        h.report(&pos, false, 10.0).await;
    }
    h.report(&pos, true, 10.0).await;
    h.report(&pos, false, 10.0).await;
    h.report(&pos, false, 10.0).await;
    h.evaluate().await;
    assert!(h.states("sick").await.is_empty(), "two in a row, then healthy, then two: not three");
    h.report(&pos, false, 10.0).await;
    h.evaluate().await;
    assert_eq!(h.alerts("sick").await, [(AlertState::Firing, Some(3.0), "pos-9".into())]);
    h.report(&pos, true, 10.0).await;
    h.evaluate().await;
    assert_eq!(h.states("sick").await, [AlertState::Resolved]);
}

async fn rate_of_change(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "filling", "kind": "rate", "series": {"name": "disk", "field": "used_percent"},
        "op": ">", "per_hour": 5, "window": "30m"}),
    )
    .await;
    let write = |value: f64| {
        let now = h.homepot.now().timestamp_nanos_opt().unwrap();
        let tags = vec![("device_id".to_owned(), "edge-1".to_owned())];
        let point = Point::new(
            "disk".into(),
            tags,
            vec![("used_percent".into(), FieldValue::Float(value))],
            now,
            MetricType::Gauge,
        )
        .unwrap();
        h.homepot.write_points("test", vec![point], None)
    };
    // 1 % per 10 minutes: 6 %/h.
    for step in 0..=3 {
        write(50.0 + f64::from(step)).await.expect("written");
        h.evaluate().await;
        if step < 3 {
            h.advance(600);
        }
    }
    assert_eq!(h.states("filling").await, [AlertState::Firing]);
    let value = h.alerts("filling").await[0].1.unwrap();
    assert!((value - 6.0).abs() < 1e-6, "{value}");
    for _ in 0..4 {
        h.advance(600);
        write(53.0).await.expect("written");
        h.evaluate().await;
    }
    assert_eq!(h.states("filling").await, [AlertState::Resolved], "flat for 40 minutes");
}

async fn service_error_rate(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "api-errors", "kind": "service", "route": "/api/v1/devices", "method": "GET",
        "measure": "server_error_percent", "op": ">", "value": 50, "window": "10m", "min_requests": 5}),
    )
    .await;
    let log = |status: u16| RequestLog {
        timestamp: h.homepot.now(),
        endpoint: "/api/v1/devices".into(),
        method: "GET".into(),
        status_code: status,
        response_time_ms: 12.0,
        user_id: None,
        ip_address: None,
        user_agent: None,
        error_message: None,
        request_size_bytes: None,
        response_size_bytes: None,
    };
    h.store.insert_request_logs(&[log(200), log(500), log(503)]).await.expect("logs");
    h.evaluate().await;
    assert!(h.states("api-errors").await.is_empty(), "3 requests are fewer than min_requests");
    h.store.insert_request_logs(&[log(500), log(500), log(502)]).await.expect("logs");
    h.evaluate().await;
    assert_eq!(h.alerts("api-errors").await[0].2, "GET /api/v1/devices");
    assert_eq!(h.states("api-errors").await, [AlertState::Firing], "5 of 6 answered 5xx");
    h.advance(700);
    h.store.insert_request_logs(&[log(200), log(200), log(200), log(200), log(200)]).await.expect("logs");
    h.evaluate().await;
    assert_eq!(h.states("api-errors").await, [AlertState::Resolved], "the window moved on");
}

async fn ack_silence_and_repeat(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "hot", "kind": "threshold", "series": {"name": "device_system", "field": "cpu_percent"},
        "op": ">=", "value": 90, "severity": "minor"}),
    )
    .await;
    let (a, b) = (h.device("hot-a").await, h.device("hot-b").await);
    h.put("/silences", json!({"matchers": ["device_id=hot-b", "alertname=hot"], "ends_at": (h.homepot.now() + TimeDelta::hours(1)).to_rfc3339()}))
        .await;
    h.report(&a, true, 95.0).await;
    h.report(&b, true, 95.0).await;
    h.evaluate().await;
    let query = NotificationQuery { limit: 100, ..NotificationQuery::default() };
    let sent = h.homepot.alert_notifications(&query).await.unwrap();
    let state_of = |device: &str| sent.iter().find(|n| n.alert.subject == device).map(|n| n.state);
    assert_eq!(state_of("hot-b"), Some(DeliveryState::Suppressed), "silenced: recorded, not sent");
    assert_ne!(state_of("hot-a"), Some(DeliveryState::Suppressed));
    assert_eq!(h.states("hot").await, [AlertState::Firing, AlertState::Firing], "a silenced alert is still recorded");

    // Every 10 minutes a reminder, until acknowledged.
    for _ in 0..2 {
        h.advance(600);
        h.report(&a, true, 96.0).await;
        h.report(&b, true, 96.0).await;
        h.evaluate().await;
    }
    let kinds = |all: Vec<(NotificationKind, DeliveryState)>| all.into_iter().map(|n| n.0).collect::<Vec<_>>();
    let repeats = kinds(h.notifications("hot").await).iter().filter(|k| **k == NotificationKind::Repeat).count();
    assert_eq!(repeats, 2, "hot-a repeated twice; hot-b is silenced");
    let id = h
        .homepot
        .alerts(&AlertQuery { device_id: Some("hot-a".into()), limit: 1, ..AlertQuery::default() })
        .await
        .unwrap()[0]
        .id
        .clone();
    let acked = h.homepot.ack_alert(&id, "ops-1".into(), Some("rebooting".into())).await.expect("ack");
    assert_eq!(acked.state, AlertState::Firing, "acknowledged, still firing");
    h.advance(1_800);
    h.report(&a, true, 97.0).await;
    h.evaluate().await;
    let repeats = kinds(h.notifications("hot").await).iter().filter(|k| **k == NotificationKind::Repeat).count();
    assert_eq!(repeats, 2, "no reminders after the acknowledgement");
    h.report(&a, true, 10.0).await;
    h.evaluate().await;
    assert_eq!(kinds(h.notifications("hot").await).last(), Some(&NotificationKind::Resolved), "resolution still sent");
    let (_, timeline) = h.homepot.alert(&id).await.unwrap();
    assert_eq!(
        timeline.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Pending, EventKind::Firing, EventKind::Acknowledged, EventKind::Resolved]
    );
    assert_eq!(timeline[2].note.as_deref(), Some("ops-1: rebooting"));
    let again = h.homepot.ack_alert(&id, "ops-1".into(), None).await;
    assert!(matches!(again, Err(homepot_engine::EngineError::Conflict(_))), "{again:?}");
}

async fn restart_keeps_pending_timers_and_refires_nothing(h: &mut Harness) {
    h.put(
        "/rules",
        json!({"id": "slow", "kind": "threshold", "series": {"name": "device_system", "field": "cpu_percent"},
        "op": ">", "value": 90, "for": "5m"}),
    )
    .await;
    h.put("/rules", json!({"id": "fast", "kind": "unhealthy", "count": 1})).await;
    let pos = h.device("pos-r").await;
    h.report(&pos, false, 95.0).await;
    h.evaluate().await;
    assert_eq!(h.states("slow").await, [AlertState::Pending]);
    assert_eq!(h.states("fast").await, [AlertState::Firing]);
    h.advance(180);
    h.restart().await;
    // Right after a restart the live view is empty until devices report again: no data is not
    // a clear, and neither alert may move.
    h.evaluate().await;
    assert_eq!(h.states("slow").await, [AlertState::Pending], "kept through the restart");
    assert_eq!(h.states("fast").await, [AlertState::Firing], "kept through the restart");
    h.report(&pos, false, 95.0).await;
    h.evaluate().await;
    assert_eq!(h.states("slow").await, [AlertState::Pending], "3 of 5 minutes, counted from before the restart");
    h.advance(120);
    h.report(&pos, false, 95.0).await;
    h.evaluate().await;
    assert_eq!(h.states("slow").await, [AlertState::Firing], "5 minutes after the first breach");
    assert_eq!(h.states("fast").await, [AlertState::Firing], "still the one alert");
    let firing = h.notifications("fast").await.iter().filter(|n| n.0 == NotificationKind::Firing).count();
    assert_eq!(firing, 1, "the restart re-fired nothing");
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let mut h = super::Harness::start(super::Backend::Sqlite, stringify!($name)).await.expect("SQLite");
                    super::$name(&mut h).await;
                    h.shutdown().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(mut h) = super::Harness::start(super::Backend::Postgres, stringify!($name)).await else { return };
                    super::$name(&mut h).await;
                    h.shutdown().await;
                }
            )*
        }
    };
}

scenarios!(
    threshold_with_hysteresis_and_for,
    absent_devices_including_ones_that_never_reported,
    unhealthy_in_a_row,
    rate_of_change,
    service_error_rate,
    ack_silence_and_repeat,
    restart_keeps_pending_timers_and_refires_nothing,
);
