//! Exactly-once ingest when another instance on the same database takes a request's
//! idempotency key while the request waits in the writer's queue: the group-committed batch
//! it shares fails only that request, which gets the first use's answer, and the other
//! requests in the batch are stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use homepot_core::filter::FilterConfig;
use homepot_core::{FieldValue, MetricType, Point};
use homepot_engine::{Homepot, IdempotencyKey, Settings, SystemClock};
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use homepot_storage::{InMemoryStore, StorageError, Store};
use tokio::sync::{Notify, Semaphore};

/// Holds the first points insert until the test lets it go, so the next requests queue up
/// into one batch behind it.
#[derive(Debug)]
struct HoldFirstInsert {
    held: AtomicBool,
    arrived: Notify,
    release: Semaphore,
}

#[async_trait]
impl StoreLayer for HoldFirstInsert {
    async fn before(&self, operation: Operation) -> Result<(), StorageError> {
        if operation == Operation::InsertPoints && !self.held.swap(true, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.release.acquire().await.map_err(StorageError::backend)?.forget();
        }
        Ok(())
    }
}

fn points(name: &str, count: usize) -> Vec<Point> {
    let start = Utc::now().timestamp_nanos_opt().expect("now");
    (0..count)
        .map(|i| {
            let fields = vec![("value".to_owned(), FieldValue::Float(i as f64))];
            Point::new(name.to_owned(), vec![], fields, start + i as i64, MetricType::Gauge).expect("a point")
        })
        .collect()
}

#[tokio::test]
async fn a_key_taken_meanwhile_fails_only_its_own_request_in_a_batch() {
    let shared: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let hold =
        Arc::new(HoldFirstInsert { held: AtomicBool::new(false), arrived: Notify::new(), release: Semaphore::new(0) });
    let settings =
        || Settings { filter: FilterConfig { enabled: false, ..FilterConfig::default() }, ..Settings::default() };
    let held_store: Arc<dyn Store> = Arc::new(Layered::new(Arc::clone(&shared), hold.clone()));
    let (here, engine_here) =
        Homepot::start(held_store, settings(), Arc::new(SystemClock)).await.expect("this instance");
    let (there, engine_there) =
        Homepot::start(Arc::clone(&shared), settings(), Arc::new(SystemClock)).await.expect("another instance");

    let first = tokio::spawn({
        let here = here.clone();
        async move { here.write_points("a", points("first", 1), None).await }
    });
    hold.arrived.notified().await;
    // Both claim their keys (nobody has used them yet) and queue behind the held insert.
    let fresh = IdempotencyKey::new("a", "fresh").unwrap();
    let taken = IdempotencyKey::new("b", "taken").unwrap();
    let queued_fresh = tokio::spawn({
        let (here, key) = (here.clone(), fresh.clone());
        async move { here.write_points("a", points("fresh", 2), Some(&key)).await }
    });
    let queued_taken = tokio::spawn({
        let (here, key) = (here.clone(), taken.clone());
        async move { here.write_points("b", points("taken", 4), Some(&key)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the other instance uses the same key, and commits first.
    let theirs = there.write_points("b", points("taken", 3), Some(&taken)).await.expect("stored there");
    assert_eq!(theirs.stored, 3);
    hold.release.add_permits(1);

    assert_eq!(first.await.unwrap().expect("the first").stored, 1);
    assert_eq!(queued_fresh.await.unwrap().expect("its batch neighbour is stored").stored, 2);
    let answer = queued_taken.await.unwrap().expect("answered from the other instance's receipt");
    assert_eq!(answer.stored, 3, "the first use's answer");
    assert_eq!(shared.points_since("fresh", 0, &[], 100).await.unwrap().len(), 2);
    assert_eq!(shared.points_since("taken", 0, &[], 100).await.unwrap().len(), 3, "only the first use's points");
    drop((here, there));
    engine_here.shutdown().await;
    engine_there.shutdown().await;
}
