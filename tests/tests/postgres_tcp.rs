//! PostgreSQL over TCP must not stall on Nagle's algorithm. A driver that leaves
//! `TCP_NODELAY` unset sends a statement too large for one write in pieces, and the last
//! piece waits for the server's delayed ACK, about 40 ms on Linux: a group commit of 64 full
//! health checks (about 40 KB) took 47 ms on sqlx 0.9.0 and 3 ms on 0.8.6. This is a check for
//! that defect, not a benchmark: the limit sits at the stall itself, an order of magnitude
//! above a healthy round trip.

use std::time::{Duration, Instant};

use chrono::Utc;
use homepot_core::{DeviceId, HealthCheck, HealthReport, NewDevice};
use homepot_storage::{DeviceStore, HealthStore, NewHealthCheck, Store};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::{init, postgres_url, unique};

/// The delayed-ACK stall a round trip must stay clear of.
const STALL: Duration = Duration::from_millis(40);

/// Whether the URL reaches the server over TCP rather than a Unix socket.
fn is_tcp(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    !host.is_empty() && !url.contains("host=/") && !url.contains("host=%2F")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn round_trips_over_tcp_do_not_stall() {
    let Some(url) = postgres_url("round_trips_over_tcp_do_not_stall") else { return };
    if !is_tcp(&url) {
        eprintln!("SKIPPED round_trips_over_tcp_do_not_stall: {url} is not a TCP address");
        return;
    }
    init();
    let options = StoreOptions { max_connections: 1, ..StoreOptions::default() };
    let store = SeaOrmStore::connect(&url, &options).await.expect("open PostgreSQL");
    let device = DeviceId::parse(&unique("tcp-")).unwrap();
    let key = homepot_engine::generate_key();
    store.register_device(&NewDevice::with_id(device.clone()), &key.hash(), Utc::now()).await.unwrap();

    let mut pings = Vec::new();
    let mut inserts = Vec::new();
    for i in 0..21 {
        let started = Instant::now();
        store.ping().await.unwrap();
        pings.push(started.elapsed());
        // A full report's size: the server's group commits carry dozens of these at once.
        let mut report = HealthReport::minimal(true, i);
        report.response_data.insert("detail".to_owned(), serde_json::json!("x".repeat(600)));
        let check = NewHealthCheck {
            device_id: device.clone(),
            check: HealthCheck::validate(report).unwrap(),
            checked_at: Utc::now(),
            receipt: None,
        };
        let batch = vec![check; 64];
        let started = Instant::now();
        store.insert_health(&batch).await.unwrap();
        inserts.push(started.elapsed());
    }
    let (ping, insert) = (median(pings), median(inserts));
    eprintln!("PostgreSQL over TCP: median ping {ping:?}, median insert of 64 checks {insert:?}");
    assert!(ping < STALL, "a ping takes {ping:?}: the connection waits for delayed ACKs (TCP_NODELAY unset)");
    assert!(insert < STALL, "an insert takes {insert:?}: the connection waits for delayed ACKs (TCP_NODELAY unset)");
}

#[test]
fn tcp_urls() {
    assert!(is_tcp("postgres://postgres@127.0.0.1:5432/test"));
    assert!(is_tcp("postgres://u:p@db.example/x?sslmode=require"));
    assert!(!is_tcp("postgres:///test?host=/var/run/postgresql"));
    assert!(!is_tcp("postgres://postgres@/test?host=%2Fvar%2Frun%2Fpostgresql"));
}
