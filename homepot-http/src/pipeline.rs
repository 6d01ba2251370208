//! The ingest pipeline's write path. Every adapter hands validated domain values to
//! [`Pipeline`]; one writer task commits whatever has queued up in one transaction (group
//! commit) and answers each request only once its transaction is durable.

use std::sync::Arc;

use homepot_storage::{HealthCheckId, NewHealthCheck, StorageError, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Why a write was not stored.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The queue is full: storage is not keeping up. Refused fast instead of piling up memory.
    Overloaded,
    /// The server is shutting down.
    Stopped,
    /// Storage refused or failed.
    Storage(Arc<StorageError>),
}

struct HealthJob {
    check: NewHealthCheck,
    reply: oneshot::Sender<Result<HealthCheckId, Arc<StorageError>>>,
}

/// The sending side of the write path.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    health: mpsc::Sender<HealthJob>,
}

/// Stops the writer: it refuses new work, finishes what is queued, then exits.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WriterHandle {
    pub(crate) async fn drain(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "writer task failed");
        }
    }
}

impl Pipeline {
    /// Starts the writer task. `capacity` bounds queued writes; `max_batch` bounds one commit.
    pub(crate) fn start(store: Arc<dyn Store>, capacity: usize, max_batch: usize) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(write_health(store, rx, stop_rx, max_batch.max(1)));
        (Self { health: tx }, WriterHandle { stop, task })
    }

    /// Queues a health check and waits until it is durable.
    pub(crate) async fn write_health(&self, check: NewHealthCheck) -> Result<HealthCheckId, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.health.try_send(HealthJob { check, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })?;
        match answer.await {
            Ok(result) => result.map_err(WriteError::Storage),
            Err(_) => Err(WriteError::Stopped),
        }
    }
}

async fn write_health(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<HealthJob>,
    mut stop: oneshot::Receiver<()>,
    max_batch: usize,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                job = rx.recv() => job,
                _ = &mut stop => {
                    // Refuse new work, then drain what was already accepted.
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit(store.as_ref(), jobs).await;
    }
}

async fn commit(store: &dyn Store, jobs: Vec<HealthJob>) {
    let (checks, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.check, j.reply)).unzip();
    match store.insert_health(&checks).await {
        Ok(ids) if ids.len() == replies.len() => {
            for (reply, id) in replies.into_iter().zip(ids) {
                let _ = reply.send(Ok(id));
            }
        }
        Ok(ids) => {
            let error = Arc::new(StorageError::backend(format!(
                "backend returned {} ids for {} health checks",
                ids.len(),
                replies.len()
            )));
            tracing::error!(%error, "storage contract violated");
            for reply in replies {
                let _ = reply.send(Err(Arc::clone(&error)));
            }
        }
        // One unknown device must not fail the checks that shared its transaction.
        Err(StorageError::NotFound { .. }) if checks.len() > 1 => {
            for (check, reply) in checks.into_iter().zip(replies) {
                let result = store.insert_health(std::slice::from_ref(&check)).await;
                let result = result.and_then(|ids| {
                    ids.first()
                        .copied()
                        .ok_or_else(|| StorageError::backend("backend returned no id for a stored check"))
                });
                let _ = reply.send(result.map_err(Arc::new));
            }
        }
        Err(error) => {
            tracing::warn!(%error, batch = checks.len(), "health batch not stored");
            let error = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(Arc::clone(&error)));
            }
        }
    }
}
