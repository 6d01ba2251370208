//! A range query answered while a flush is storing rollups counts every sample once: the
//! deltas being stored are either still unstored or already in storage, never both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use homepot_core::rollup::Agg;
use homepot_core::{FieldValue, MetricType, Point};
use homepot_engine::{Homepot, RangeQuery, SeriesSelector, Settings, SystemClock};
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use homepot_storage::{InMemoryStore, StorageError};
use tokio::sync::{Notify, Semaphore};

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

    let now = Utc::now();
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

    let query = RangeQuery {
        selector: SeriesSelector::Metric { name: "load".into(), field: "value".into(), tags: vec![] },
        from: now - TimeDelta::days(1),
        to: now + TimeDelta::days(1),
        step_s: Some(86_400),
        max_points: None,
        agg: Agg::Count,
    };
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
    let now = Utc::now();
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
    let query = RangeQuery {
        selector: SeriesSelector::Metric { name: "held".into(), field: "value".into(), tags: vec![] },
        from: now - TimeDelta::days(1),
        to: now + TimeDelta::days(1),
        step_s: Some(86_400),
        max_points: None,
        agg: Agg::Count,
    };
    let answer = homepot.query_range(&query).await.expect("answered");
    let count: f64 = answer.series.iter().flat_map(|s| &s.points).map(|(_, v)| v).sum();
    assert_eq!(count, 5.0, "each sample once: {answer:?}");
    engine.shutdown().await;
}
