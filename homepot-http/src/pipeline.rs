//! The ingest pipeline's write path. Every adapter hands validated domain values to
//! [`Pipeline`]; one writer task commits whatever has queued up (group commit: one
//! transaction per kind of record) and answers each request only once its data is durable.

use std::sync::Arc;

use homepot_core::Point;
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

type Reply<T> = oneshot::Sender<Result<T, Arc<StorageError>>>;

/// One request's records, waiting for the writer.
enum Job {
    // Boxed: a health check is ~400 bytes, and every queue slot is as large as the largest job.
    Health(Box<NewHealthCheck>, Reply<HealthCheckId>),
    Points(Vec<Point>, Reply<()>),
}

/// The sending side of the write path.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    jobs: mpsc::Sender<Job>,
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
    /// Starts the writer task. `capacity` bounds queued requests; `max_batch` bounds the
    /// requests committed together.
    pub(crate) fn start(store: Arc<dyn Store>, capacity: usize, max_batch: usize) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_writer(store, rx, stop_rx, max_batch.max(1)));
        (Self { jobs: tx }, WriterHandle { stop, task })
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(job(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })?;
        match answer.await {
            Ok(result) => result.map_err(WriteError::Storage),
            Err(_) => Err(WriteError::Stopped),
        }
    }

    /// Queues a health check and waits until it is durable.
    pub(crate) async fn write_health(&self, check: NewHealthCheck) -> Result<HealthCheckId, WriteError> {
        self.submit(|reply| Job::Health(Box::new(check), reply)).await
    }

    /// Queues metric points and waits until they are durable.
    pub(crate) async fn write_points(&self, points: Vec<Point>) -> Result<(), WriteError> {
        if points.is_empty() {
            return Ok(());
        }
        self.submit(|reply| Job::Points(points, reply)).await
    }
}

async fn run_writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
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
        let mut health = Vec::new();
        let mut points = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(job) = next.take() {
            match job {
                Job::Health(check, reply) => health.push((*check, reply)),
                Job::Points(batch, reply) => points.push((batch, reply)),
            }
            taken += 1;
            if taken < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if !health.is_empty() {
            commit_health(store.as_ref(), health).await;
        }
        if !points.is_empty() {
            commit_points(store.as_ref(), points).await;
        }
    }
}

fn fail_all<T>(replies: impl IntoIterator<Item = Reply<T>>, error: StorageError) {
    let error = Arc::new(error);
    for reply in replies {
        let _ = reply.send(Err(Arc::clone(&error)));
    }
}

async fn commit_health(store: &dyn Store, jobs: Vec<(NewHealthCheck, Reply<HealthCheckId>)>) {
    let (checks, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    match store.insert_health(&checks).await {
        Ok(ids) if ids.len() == replies.len() => {
            for (reply, id) in replies.into_iter().zip(ids) {
                let _ = reply.send(Ok(id));
            }
        }
        Ok(ids) => {
            let error = StorageError::backend(format!(
                "backend returned {} ids for {} health checks",
                ids.len(),
                replies.len()
            ));
            tracing::error!(%error, "storage contract violated");
            fail_all(replies, error);
        }
        // One unknown device must not fail the checks that shared its transaction.
        Err(StorageError::NotFound { .. }) if checks.len() > 1 => {
            for (check, reply) in checks.into_iter().zip(replies) {
                let result = store.insert_health(std::slice::from_ref(&check)).await.and_then(|ids| {
                    ids.first()
                        .copied()
                        .ok_or_else(|| StorageError::backend("backend returned no id for a stored check"))
                });
                let _ = reply.send(result.map_err(Arc::new));
            }
        }
        Err(error) => {
            tracing::warn!(%error, batch = checks.len(), "health batch not stored");
            fail_all(replies, error);
        }
    }
}

async fn commit_points(store: &dyn Store, jobs: Vec<(Vec<Point>, Reply<()>)>) {
    let (batches, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    let all: Vec<Point> = batches.into_iter().flatten().collect();
    match store.insert_points(&all).await {
        Ok(()) => {
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
        Err(error) => {
            tracing::warn!(%error, points = all.len(), "metric points not stored");
            fail_all(replies, error);
        }
    }
}
