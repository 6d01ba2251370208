//! The request log's write path. Adapters build a [`RequestLog`] after answering and hand it
//! over with [`RequestLogs::log`], which never waits: when the queue is full the log is
//! dropped and counted. The writer lets logs gather for a moment (fewer, larger transactions
//! leave the database's write lock to ingest) and stores them in batches; a failed batch is
//! dropped and counted too. The request itself is never affected.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use homepot_core::analytics::RequestLog;
use homepot_storage::Store;

use crate::stats::Stats;
use crate::writer::{BatchWriter, Commit, WriterTask};

/// How long the writer lets logs accumulate before a write that would not fill a batch.
const LINGER: Duration = Duration::from_millis(100);

/// The sending side of the request log.
#[derive(Debug, Clone)]
pub(crate) struct RequestLogs {
    writer: BatchWriter<RequestLog>,
    stats: Arc<Stats>,
}

impl RequestLogs {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        stats: Arc<Stats>,
        capacity: usize,
        max_batch: usize,
    ) -> (Self, WriterTask) {
        let store_logs = StoreLogs { store, stats: Arc::clone(&stats) };
        let (writer, task) = BatchWriter::spawn(store_logs, capacity, max_batch, Some(LINGER));
        (Self { writer, stats }, task)
    }

    /// Queues `log`, or drops and counts it when the queue is full.
    pub(crate) fn log(&self, log: RequestLog) {
        if self.writer.try_send(log).is_err() {
            self.stats.analytics_dropped(1);
        }
    }
}

struct StoreLogs {
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
}

#[async_trait]
impl Commit<RequestLog> for StoreLogs {
    async fn commit(&mut self, batch: Vec<RequestLog>) {
        match self.store.insert_request_logs(&batch).await {
            Ok(()) => self.stats.analytics_logged(batch.len()),
            Err(error) => {
                tracing::warn!(%error, dropped = batch.len(), "request logs not stored");
                self.stats.analytics_dropped(batch.len());
            }
        }
    }
}
