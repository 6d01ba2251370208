//! The one queue-and-batch writer. Work is queued on a bounded channel; a task takes
//! whatever has queued up (at most `max_batch` items, after an optional linger that lets a
//! trickle gather), hands the batch to its [`Commit`], and repeats. Stopping refuses new
//! work, commits everything already queued, then ends: nothing accepted is lost at shutdown.
//!
//! The engine runs two of them: telemetry and analytics records, whose senders wait for the
//! commit; and the request log, which nobody waits for, so that a stalled analytics table
//! can never hold up ingest.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Stores a batch; each item carries whatever it needs to answer its sender.
#[async_trait]
pub(crate) trait Commit<J: Send>: Send + 'static {
    async fn commit(&mut self, batch: Vec<J>);
}

/// Why work was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The queue is full.
    Full,
    /// The writer has stopped.
    Stopped,
}

/// The sending side.
#[derive(Debug)]
pub(crate) struct BatchWriter<J> {
    queue: mpsc::Sender<J>,
}

impl<J> Clone for BatchWriter<J> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<J: Send + 'static> BatchWriter<J> {
    /// Starts the writer task with `commit`.
    pub(crate) fn spawn<C: Commit<J>>(
        commit: C,
        capacity: usize,
        max_batch: usize,
        linger: Option<Duration>,
    ) -> (Self, WriterTask) {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(commit, jobs, stopped, max_batch.max(1), linger));
        (Self { queue }, WriterTask { stop, task })
    }

    /// Queues `job` at once, or says why not: a full queue is refused fast rather than
    /// piling up memory.
    pub(crate) fn try_send(&self, job: J) -> Result<(), QueueError> {
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Stopped,
        })
    }

    /// Queues `job`, waiting for room: for work that must not be dropped.
    pub(crate) async fn send(&self, job: J) -> Result<(), QueueError> {
        self.queue.send(job).await.map_err(|_| QueueError::Stopped)
    }
}

/// Stops a writer: it refuses new work, commits what is queued, then ends.
#[derive(Debug)]
pub(crate) struct WriterTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WriterTask {
    pub(crate) async fn drain(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "writer task failed");
        }
    }
}

async fn run<J: Send, C: Commit<J>>(
    mut commit: C,
    mut jobs: mpsc::Receiver<J>,
    mut stop: oneshot::Receiver<()>,
    max_batch: usize,
    linger: Option<Duration>,
) {
    let mut stopping = false;
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = if stopping {
            jobs.recv_many(&mut batch, max_batch).await
        } else {
            tokio::select! {
                received = jobs.recv_many(&mut batch, max_batch) => received,
                _ = &mut stop => {
                    // Refuse new work, then commit what was already accepted.
                    stopping = true;
                    jobs.close();
                    continue;
                }
            }
        };
        if received == 0 {
            return;
        }
        if let Some(linger) = linger
            && batch.len() < max_batch
            && !stopping
        {
            tokio::time::sleep(linger).await;
            while batch.len() < max_batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        commit.commit(std::mem::replace(&mut batch, Vec::with_capacity(max_batch))).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<Vec<u32>>>>);

    #[async_trait]
    impl Commit<u32> for Record {
        async fn commit(&mut self, batch: Vec<u32>) {
            self.0.lock().unwrap().push(batch);
        }
    }

    #[tokio::test]
    async fn batches_are_bounded_and_stopping_commits_everything_queued() {
        let record = Record::default();
        let (writer, task) = BatchWriter::spawn(record.clone(), 100, 3, Some(Duration::from_millis(20)));
        for n in 0..7 {
            writer.try_send(n).unwrap();
        }
        task.drain().await;
        let batches = record.0.lock().unwrap().clone();
        assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
        assert_eq!(batches.concat(), (0..7).collect::<Vec<_>>(), "in order, nothing lost");
        assert_eq!(writer.try_send(8), Err(QueueError::Stopped));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        struct Stuck;
        #[async_trait]
        impl Commit<u32> for Stuck {
            async fn commit(&mut self, _: Vec<u32>) {
                std::future::pending::<()>().await;
            }
        }
        let (writer, _task) = BatchWriter::spawn(Stuck, 2, 1, None);
        writer.try_send(0).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.try_send(1).unwrap();
        writer.try_send(2).unwrap();
        assert_eq!(writer.try_send(3), Err(QueueError::Full));
    }
}
