//! A range query answered while a flush is storing rollups counts every sample once: the
//! deltas being stored are either still unstored or already in storage, never both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use homepot_core::rollup::{Agg, Tier};
use homepot_core::{FieldValue, MetricType, Point};
use homepot_engine::{Homepot, RangeQuery, SeriesSelector, Settings, SystemClock};
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use homepot_storage::{InMemoryStore, RollupStore, StorageError};
use tokio::sync::{Notify, Semaphore};

/// Samples of `name`'s `value` counted per day around `now`.
fn daily_count(name: &str, now: chrono::DateTime<Utc>) -> RangeQuery {
    RangeQuery {
        selector: SeriesSelector::Metric { name: name.into(), field: "value".into(), tags: vec![] },
        from: now - TimeDelta::days(1),
        to: now + TimeDelta::days(1),
        step_s: Some(86_400),
        max_points: None,
        agg: Agg::Count,
    }
}

/// Holds every rollup merge after storage has taken it, until the test lets it return.
#[derive(Debug)]
struct HeldMerges {
    merged: Notify,
    release: Semaphore,
}

#[async_trait]
impl StoreLayer for HeldMerges {
    async fn before(&self, _operation: Operation) -> Result<(), StorageError> {
        Ok(())
    }

    async fn after(&self, operation: Operation) {
        if operation == Operation::MergeRollups {
            self.merged.notify_one();
            self.release.acquire().await.expect("open").forget();
        }
    }
}

#[tokio::test]
async fn a_query_during_a_flush_counts_each_sample_once() {
    let held = Arc::new(HeldMerges { merged: Notify::new(), release: Semaphore::new(0) });
    let store = Arc::new(Layered::new(Arc::new(InMemoryStore::new()), held.clone()));
    let settings = Settings { rollup_flush_interval: Duration::from_millis(20), ..Settings::default() };
    let (homepot, engine) = Homepot::start(store, settings, Arc::new(SystemClock)).await.expect("start");

    // Two minutes ago: a settled minute, which the periodic flush merges.
    let now = Utc::now() - TimeDelta::minutes(2);
    let points = (0..4)
        .map(|i| {
            let fields = vec![("value".to_owned(), FieldValue::Float(f64::from(i)))];
            Point::new(
                "load".into(),
                vec![],
                fields,
                now.timestamp_nanos_opt().unwrap() + i64::from(i),
                MetricType::Gauge,
            )
            .unwrap()
        })
        .collect();
    homepot.write_points("test", points, None).await.expect("written");
    held.merged.notified().await;

    let query = daily_count("load", now);
    let during = tokio::spawn({
        let homepot = homepot.clone();
        let query = query.clone();
        async move { homepot.query_range(&query).await }
    });
    // The merge is in storage but not yet acknowledged while the query runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release.add_permits(Semaphore::MAX_PERMITS / 2);
    let answer = during.await.expect("joined").expect("answered");
    let count: f64 = answer.series.iter().flat_map(|s| &s.points).map(|(_, v)| v).sum();
    assert_eq!(count, 4.0, "{answer:?}");

    let after = homepot.query_range(&query).await.expect("answered");
    let count: f64 = after.series.iter().flat_map(|s| &s.points).map(|(_, v)| v).sum();
    assert_eq!(count, 4.0, "{after:?}");
    engine.shutdown().await;
}

/// Shutdown while the flush job's merge is in storage but not yet acknowledged: the job must
/// finish it, not be cut off and leave the deltas to be merged a second time.
#[tokio::test]
async fn shutdown_during_a_flush_stores_each_sample_once() {
    let held = Arc::new(HeldMerges { merged: Notify::new(), release: Semaphore::new(0) });
    let memory = Arc::new(InMemoryStore::new());
    let store = Arc::new(Layered::new(memory.clone(), held.clone()));
    let settings = Settings { rollup_flush_interval: Duration::from_millis(20), ..Settings::default() };
    let (homepot, engine) = Homepot::start(store, settings, Arc::new(SystemClock)).await.expect("start");
    let now = Utc::now() - TimeDelta::minutes(2);
    let point = |i: i64| {
        let fields = vec![("value".to_owned(), FieldValue::Float(1.0))];
        Point::new("held".into(), vec![], fields, now.timestamp_nanos_opt().unwrap() + i, MetricType::Gauge).unwrap()
    };
    homepot.write_points("test", (0..5).map(point).collect(), None).await.expect("written");
    held.merged.notified().await;
    // The job's merge is stored and held; shutdown begins, and the merge returns meanwhile.
    let release = tokio::spawn({
        let held = held.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            held.release.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    });
    engine.shutdown().await;
    release.await.unwrap();

    let (homepot, engine) = Homepot::start(memory, Settings::default(), Arc::new(SystemClock)).await.expect("restart");
    let query = daily_count("held", now);
    let answer = homepot.query_range(&query).await.expect("answered");
    let count: f64 = answer.series.iter().flat_map(|s| &s.points).map(|(_, v)| v).sum();
    assert_eq!(count, 5.0, "each sample once: {answer:?}");
    engine.shutdown().await;
}

/// The periodic flush merges settled minutes only: the current minute stays gathering (and
/// counted by queries) until it has ended, then is merged once; shutdown merges it at once.
#[tokio::test]
async fn the_current_minute_is_merged_once_it_has_settled() {
    let memory = Arc::new(InMemoryStore::new());
    let settings = Settings { rollup_flush_interval: Duration::from_millis(20), ..Settings::default() };
    let (homepot, engine) = Homepot::start(memory.clone(), settings, Arc::new(SystemClock)).await.expect("start");
    let now = Utc::now();
    let point = |name: &str, at: chrono::DateTime<Utc>| {
        let fields = vec![("value".to_owned(), FieldValue::Float(1.0))];
        Point::new(name.into(), vec![], fields, at.timestamp_nanos_opt().unwrap(), MetricType::Gauge).unwrap()
    };
    let settled = now - TimeDelta::minutes(3);
    homepot.write_points("test", vec![point("settled", settled), point("current", now)], None).await.expect("written");
    let stored = |name: &'static str| {
        let memory = memory.clone();
        async move {
            let series = memory.find_series(&[name], "value", &[], 10).await.expect("read");
            match series.first() {
                Some(s) => {
                    memory.rollup_buckets(&[s.id], Tier::Minute, i64::MIN / 2, i64::MAX / 2).await.expect("read").len()
                }
                None => 0,
            }
        }
    };
    for _ in 0..200 {
        if stored("settled").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored("settled").await, 1, "a settled minute is merged by the periodic flush");
    // Several flushes later the current minute is still only in memory, and queries count it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if Utc::now().timestamp() - Tier::Minute.bucket_start(now.timestamp()) < 60 {
        assert_eq!(stored("current").await, 0, "the current minute waits until it has settled");
    }
    let query = daily_count("current", now);
    let answer = homepot.query_range(&query).await.expect("answered");
    let count: f64 = answer.series.iter().flat_map(|s| &s.points).map(|(_, v)| v).sum();
    assert_eq!(count, 1.0, "{answer:?}");
    engine.shutdown().await;
    assert_eq!(stored("current").await, 1, "shutdown merges every minute");
}
