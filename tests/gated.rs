//! [`Gate`]: a store layer that holds request-log writes until the test opens it, to show
//! that a stalled analytics store never holds up requests.

use std::sync::Arc;

use async_trait::async_trait;
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use homepot_storage::{StorageError, Store};
use tokio::sync::Semaphore;

/// Lets request-log writes through only once opened; every other operation passes.
#[derive(Debug)]
pub struct Gate {
    permits: Semaphore,
}

impl Gate {
    /// `inner` behind a closed gate, and the gate.
    pub fn around(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Arc<Gate>) {
        let gate = Arc::new(Gate { permits: Semaphore::new(0) });
        (Arc::new(Layered::new(inner, gate.clone())), gate)
    }

    /// Lets every waiting and future request-log write through.
    pub fn open(&self) {
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl StoreLayer for Gate {
    async fn before(&self, operation: Operation) -> Result<(), StorageError> {
        if operation == Operation::InsertRequestLogs {
            self.permits.acquire().await.map_err(StorageError::backend)?.forget();
        }
        Ok(())
    }
}
