//! The ingest pipeline's write path. Every adapter hands validated domain values to
//! [`Pipeline`]. The SmartDataFilter decides what is worth storing; what is not is only shown
//! live. One writer task commits whatever has queued up (group commit: one transaction per
//! kind of record), shows the committed data in the live store, then answers each request.
//! Nothing the filter keeps is acknowledged, or shown live, before it is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use homepot_core::Point;
use homepot_core::filter::{Decision, FilterConfig, SmartDataFilter};
use homepot_core::live::{LiveStore, SeriesLimitExceeded};

use crate::stats::Stats;
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
    /// The points would take their sender over its live series limit; nothing was stored.
    SeriesLimit(SeriesLimitExceeded),
}

type Reply<T> = oneshot::Sender<Result<T, Arc<StorageError>>>;

/// One request's records, waiting for the writer.
enum Job {
    // Boxed: a health check is ~400 bytes, and every queue slot is as large as the largest job.
    Health(Box<NewHealthCheck>, Reply<HealthCheckId>),
    Points(Vec<Point>, Arc<str>, Reply<()>),
}

/// What became of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthWrite {
    /// Stored durably under this id.
    Stored(HealthCheckId),
    /// The SmartDataFilter found nothing new: not stored; this is the last stored check.
    Filtered(HealthCheckId),
}

/// What became of a batch of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PointsWrite {
    /// Points stored durably; the rest were filtered (and only shown live).
    pub(crate) stored: usize,
}

/// The SmartDataFilter and the id of each device's last stored check, for filtered answers.
#[derive(Debug)]
struct FilterState {
    filter: SmartDataFilter,
    last_health: HashMap<String, HealthCheckId>,
}

/// The sending side of the write path.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    jobs: mpsc::Sender<Job>,
    /// Off means every sample is stored: no filter state, no per-sample work.
    filter_enabled: bool,
    filter: Arc<Mutex<FilterState>>,
    live: Arc<RwLock<LiveStore>>,
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
    pub(crate) fn start(
        store: Arc<dyn Store>,
        live: Arc<RwLock<LiveStore>>,
        stats: Arc<Stats>,
        filter: FilterConfig,
        capacity: usize,
        max_batch: usize,
    ) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop, stop_rx) = oneshot::channel();
        let writer = Writer { store, live: Arc::clone(&live), stats };
        let task = tokio::spawn(writer.run(rx, stop_rx, max_batch.max(1)));
        let filter_enabled = filter.enabled;
        let filter =
            Arc::new(Mutex::new(FilterState { filter: SmartDataFilter::new(filter), last_health: HashMap::new() }));
        (Self { jobs: tx, filter_enabled, filter, live }, WriterHandle { stop, task })
    }

    fn filter(&self) -> std::sync::MutexGuard<'_, FilterState> {
        // The filter's maps are consistent after any panic; at worst a decision is repeated.
        self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Filters a health check, then queues it and waits until it is durable. A filtered check
    /// is only shown live.
    pub(crate) async fn write_health(&self, check: NewHealthCheck) -> Result<HealthWrite, WriteError> {
        if !self.filter_enabled {
            return self.submit(|reply| Job::Health(Box::new(check), reply)).await.map(HealthWrite::Stored);
        }
        let key = format!("health/{}", check.device_id);
        let time_ns = check.checked_at.timestamp_nanos_opt().unwrap_or_default();
        {
            let mut state = self.filter();
            let decision = state.filter.decide(&key, &check.check.tracked(), time_ns);
            // Until the baseline's write is answered there is no id to point to: store this one.
            if let (Decision::Skip, Some(last)) = (decision, state.last_health.get(&key).copied()) {
                drop(state);
                show_live(&self.live, [(None, &check.check.points(&check.device_id, time_ns)[..])]);
                return Ok(HealthWrite::Filtered(last));
            }
        }
        match self.submit(|reply| Job::Health(Box::new(check), reply)).await {
            Ok(id) => {
                self.filter().last_health.insert(key, id);
                Ok(HealthWrite::Stored(id))
            }
            Err(error) => {
                // The baseline the filter recorded was never stored: start over with this series.
                let mut state = self.filter();
                state.filter.forget(&key);
                state.last_health.remove(&key);
                Err(error)
            }
        }
    }

    /// Filters points that `owner` (a key's fingerprint) sent, then queues those worth
    /// storing and waits until they are durable. Filtered points are only shown live. A batch
    /// that would take its owner over the live series limit is refused whole, before anything
    /// is stored.
    pub(crate) async fn write_points(&self, owner: &str, points: Vec<Point>) -> Result<PointsWrite, WriteError> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(owner, &points)
            .map_err(WriteError::SeriesLimit)?;
        let owner: Arc<str> = Arc::from(owner);
        if !self.filter_enabled {
            let stored = points.len();
            if stored > 0 {
                self.submit(|reply| Job::Points(points, owner, reply)).await?;
            }
            return Ok(PointsWrite { stored });
        }
        let (store, skip): (Vec<Point>, Vec<Point>) = {
            let mut state = self.filter();
            points.into_iter().partition(|p| {
                matches!(state.filter.decide(&p.series_key(), &p.tracked(), p.timestamp_ns()), Decision::Store(_))
            })
        };
        show_live(&self.live, [(Some(&*owner), &skip[..])]);
        let stored = store.len();
        if stored == 0 {
            return Ok(PointsWrite { stored });
        }
        let keys: Vec<String> = store.iter().map(Point::series_key).collect();
        match self.submit(|reply| Job::Points(store, owner, reply)).await {
            Ok(()) => Ok(PointsWrite { stored }),
            Err(error) => {
                let mut state = self.filter();
                for key in &keys {
                    state.filter.forget(key);
                }
                Err(error)
            }
        }
    }
}

/// The task that owns commits.
struct Writer {
    store: Arc<dyn Store>,
    live: Arc<RwLock<LiveStore>>,
    stats: Arc<Stats>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>, mut stop: oneshot::Receiver<()>, max_batch: usize) {
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
                    Job::Points(batch, owner, reply) => points.push((batch, owner, reply)),
                }
                taken += 1;
                if taken < max_batch {
                    next = rx.try_recv().ok();
                }
            }
            if !health.is_empty() {
                self.commit_health(health).await;
            }
            if !points.is_empty() {
                self.commit_points(points).await;
            }
        }
    }

    async fn commit_health(&self, jobs: Vec<(NewHealthCheck, Reply<HealthCheckId>)>) {
        let (checks, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let result = self.store.insert_health(&checks).await;
        self.note(&result);
        let stored = match result {
            Ok(ids) if ids.len() == replies.len() => ids.into_iter().map(Ok).collect(),
            Ok(ids) => {
                let error = StorageError::backend(format!(
                    "backend returned {} ids for {} health checks",
                    ids.len(),
                    replies.len()
                ));
                tracing::error!(%error, "storage contract violated");
                let error = Arc::new(error);
                vec![Err(error); replies.len()]
            }
            // One unknown device must not fail the checks that shared its transaction.
            Err(StorageError::NotFound { .. }) if checks.len() > 1 => {
                let mut results = Vec::with_capacity(checks.len());
                for check in &checks {
                    let result = self.store.insert_health(std::slice::from_ref(check)).await.and_then(|ids| {
                        ids.first()
                            .copied()
                            .ok_or_else(|| StorageError::backend("backend returned no id for a stored check"))
                    });
                    results.push(result.map_err(Arc::new));
                }
                results
            }
            Err(error) => {
                tracing::warn!(%error, batch = checks.len(), "health batch not stored");
                vec![Err(Arc::new(error)); replies.len()]
            }
        };
        let live: Vec<Point> = checks
            .iter()
            .zip(&stored)
            .filter(|(_, result)| result.is_ok())
            .flat_map(|(c, _)| c.check.points(&c.device_id, c.checked_at.timestamp_nanos_opt().unwrap_or_default()))
            .collect();
        show_live(&self.live, [(None, &live[..])]);
        for (reply, result) in replies.into_iter().zip(stored) {
            let _ = reply.send(result);
        }
    }

    /// Tells `/health` whether storage takes writes: a ping alone misses a locked or
    /// read-only file.
    fn note<T>(&self, result: &Result<T, StorageError>) {
        match result {
            Ok(_) => self.stats.write_outcome(false),
            Err(StorageError::Unavailable { .. }) => self.stats.write_outcome(true),
            Err(_) => {}
        }
    }

    async fn commit_points(&self, jobs: Vec<(Vec<Point>, Arc<str>, Reply<()>)>) {
        let mut all = Vec::with_capacity(jobs.iter().map(|(batch, _, _)| batch.len()).sum());
        let mut senders = Vec::with_capacity(jobs.len());
        for (batch, owner, reply) in jobs {
            senders.push((all.len()..all.len() + batch.len(), owner, reply));
            all.extend(batch);
        }
        let result = self.store.insert_points(&all).await;
        self.note(&result);
        match &result {
            Ok(()) => self.stats.metrics_received(all.len()),
            Err(error) => tracing::warn!(%error, points = all.len(), "metric points not stored"),
        }
        if result.is_ok() {
            show_live(&self.live, senders.iter().map(|(range, owner, _)| (Some(&**owner), &all[range.clone()])));
        }
        let result = result.map_err(Arc::new);
        for (_, _, reply) in senders {
            let _ = reply.send(result.clone());
        }
    }
}

/// Shows points in the live view: stored ones after their commit, filtered ones at once.
/// Each batch comes with its sender (`None`: the server's own points); one lock serves all.
fn show_live<'a>(live: &RwLock<LiveStore>, batches: impl IntoIterator<Item = (Option<&'a str>, &'a [Point])>) {
    let mut batches = batches.into_iter().filter(|(_, points)| !points.is_empty()).peekable();
    if batches.peek().is_none() {
        return;
    }
    let now_ns = crate::api::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    // A poisoned lock only means a reader panicked; the map itself is always consistent.
    let mut live = live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let refused: usize = batches.map(|(owner, points)| live.insert(owner, points, now_ns).refused).sum();
    if refused > 0 {
        tracing::warn!(refused, limit = live.limits().max_series, "live store full: new series refused");
    }
}
