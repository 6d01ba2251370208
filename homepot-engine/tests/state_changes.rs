//! A device state change is durable when the health check that caused it is answered, however
//! slow the store is to take it: a client that reads the history right after reporting sees
//! the transition.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use homepot_core::{DeviceId, HealthCheck, HealthReport, NewDevice};
use homepot_engine::{Homepot, Settings, SystemClock};
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use homepot_storage::{InMemoryStore, StorageError};

/// Makes every state-change insert slow, so a write nobody waits for is still in flight when
/// the caller reads.
#[derive(Debug)]
struct SlowStateChanges;

#[async_trait]
impl StoreLayer for SlowStateChanges {
    async fn before(&self, operation: Operation) -> Result<(), StorageError> {
        if matches!(operation, Operation::InsertStateChange | Operation::ApplyTransitions) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_transition_a_check_causes_is_stored_before_the_check_is_answered() {
    let store = Arc::new(Layered::new(Arc::new(InMemoryStore::new()), Arc::new(SlowStateChanges)));
    let (homepot, engine) = Homepot::start(store, Settings::default(), Arc::new(SystemClock)).await.expect("start");
    let device = DeviceId::parse("till-1").unwrap();
    homepot.register_device(&NewDevice::with_id(device.clone())).await.expect("registered");

    let unhealthy = HealthReport { error_message: Some("disk full".into()), ..HealthReport::minimal(false, 5) };
    homepot.record_health(device.clone(), HealthCheck::validate(unhealthy).unwrap(), None).await.expect("recorded");
    let history = homepot.state_history("till-1", 1, 10).await.expect("history");
    assert_eq!(history.iter().map(|c| c.new_state.as_str()).collect::<Vec<_>>(), ["unhealthy"]);

    homepot.record_health(device, HealthCheck::validate(HealthReport::minimal(true, 5)).unwrap(), None).await.unwrap();
    let history = homepot.state_history("till-1", 1, 10).await.expect("history");
    assert_eq!(history.iter().map(|c| c.new_state.as_str()).collect::<Vec<_>>(), ["online", "unhealthy"]);
    engine.shutdown().await;
}
