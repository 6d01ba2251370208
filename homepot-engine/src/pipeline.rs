//! The write path every adapter uses. The SmartDataFilter decides what is worth storing; what
//! is not is only shown live. The telemetry writer commits whatever has queued up (group
//! commit: one transaction per kind of record), shows the committed data in the live store,
//! then answers each sender. Analytics records and device state changes take the same path.
//! Nothing the filter keeps is acknowledged, or shown live, before it is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use homepot_core::Point;
use homepot_core::analytics::{ErrorLog, JobOutcome, StateChange, UserActivity};
use homepot_core::filter::{Decision, FilterConfig, SmartDataFilter};
use homepot_core::live::LiveStore;
use homepot_storage::{HealthCheckId, NewHealthCheck, NewReceipt, RecordId, StorageError, Store};
use tokio::sync::oneshot;

use crate::clock::{Clock, nanos};
use crate::error::EngineError;
use crate::receipts::{Answer, Ticket};
use crate::rollups::Rollups;
use crate::stats::Stats;
use crate::writer::{BatchWriter, Commit, QueueError, WriterTask};

type Reply<T> = oneshot::Sender<Result<T, Arc<StorageError>>>;

/// Points from one sender, with its request's receipt.
type PointsJob = (Vec<Point>, Arc<str>, Option<NewReceipt>, Reply<()>);

/// An analytics record for the write path.
#[derive(Debug, Clone)]
pub(crate) enum AnalyticsRecord {
    StateChange(StateChange),
    JobOutcome(JobOutcome),
    ErrorLog(ErrorLog),
    UserActivity(UserActivity),
}

/// One sender's records, waiting for the writer.
enum Job {
    // Boxed: a health check is ~400 bytes, and every queue slot is as large as the largest job.
    Health(Box<NewHealthCheck>, Reply<HealthCheckId>),
    /// Points (maybe none) and the receipt of the request that sent them, if it had a key.
    Points(Vec<Point>, Arc<str>, Option<NewReceipt>, Reply<()>),
    Record(Box<AnalyticsRecord>, Reply<RecordId>),
    /// A state change the engine decided, stored only from the state it was decided from.
    Transition(Box<StateChange>, Reply<Option<RecordId>>),
}

/// What became of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthWrite {
    /// Stored durably under this id.
    Stored(HealthCheckId),
    /// The SmartDataFilter found nothing new: not stored; this is the last stored check.
    Filtered(HealthCheckId),
}

impl HealthWrite {
    /// The id to answer with, and whether this check was stored.
    pub fn answer(self) -> (i64, bool) {
        match self {
            HealthWrite::Stored(id) => (id.0, true),
            HealthWrite::Filtered(id) => (id.0, false),
        }
    }
}

/// What became of a batch of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointsWrite {
    /// Points stored durably; the rest were filtered (and only shown live).
    pub stored: usize,
}

/// The SmartDataFilter and the id of each device's last stored check, for filtered answers.
#[derive(Debug)]
struct FilterState {
    filter: SmartDataFilter,
    last_health: HashMap<String, HealthCheckId>,
}

/// Where accepted samples go besides storage: the live view and the rollups. Stored
/// samples arrive after their commit, filtered ones at once.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub(crate) live: Arc<RwLock<LiveStore>>,
    pub(crate) rollups: Arc<Rollups>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Remote write forwarding, when targets are configured.
    pub(crate) forward: Option<Arc<crate::forward::Forwarder>>,
}

impl Accepted {
    /// Shows batches of points live, each with its sender (`None`: the server's own points),
    /// under one lock, folds them into the rollups, and queues them for forwarding, durably,
    /// before returning: so their senders are answered only once that is done.
    async fn accept<'a>(&self, batches: impl IntoIterator<Item = (Option<&'a str>, &'a [Point])>) {
        let batches: Vec<(Option<&str>, &[Point])> =
            batches.into_iter().filter(|(_, points)| !points.is_empty()).collect();
        if batches.is_empty() {
            return;
        }
        for (_, points) in &batches {
            self.rollups.observe(points);
        }
        let now_ns = nanos(self.clock.now());
        {
            // A poisoned lock only means a reader panicked; the map itself is always consistent.
            let mut live = self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let refused: usize =
                batches.iter().map(|(owner, points)| live.insert(*owner, points, now_ns).refused).sum();
            if refused > 0 {
                tracing::warn!(refused, limit = live.limits().max_series, "live store full: new series refused");
            }
        }
        if let Some(forward) = &self.forward {
            let points: Vec<&[Point]> = batches.iter().map(|(_, points)| *points).collect();
            forward.append(&points).await;
        }
    }
}

/// The sending side of the write path.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    writer: BatchWriter<Job>,
    /// Off means every sample is stored: no filter state, no per-sample work.
    filter_enabled: bool,
    filter: Arc<Mutex<FilterState>>,
    accepted: Accepted,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Health(..) => "Job::Health",
            Job::Points(..) => "Job::Points",
            Job::Record(..) => "Job::Record",
            Job::Transition(..) => "Job::Transition",
        })
    }
}

fn queue_error(error: QueueError) -> EngineError {
    match error {
        QueueError::Full => EngineError::Overloaded,
        QueueError::Stopped => EngineError::Stopped,
    }
}

impl Pipeline {
    /// Starts the telemetry writer. `capacity` bounds queued senders; `max_batch` bounds
    /// those committed together.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        accepted: Accepted,
        stats: Arc<Stats>,
        filter: FilterConfig,
        capacity: usize,
        max_batch: usize,
    ) -> (Self, WriterTask) {
        let committer = Telemetry { store, accepted: accepted.clone(), stats };
        let (writer, task) = BatchWriter::spawn(committer, capacity, max_batch, None);
        let filter_enabled = filter.enabled;
        let filter =
            Arc::new(Mutex::new(FilterState { filter: SmartDataFilter::new(filter), last_health: HashMap::new() }));
        (Self { writer, filter_enabled, filter, accepted }, task)
    }

    fn filter(&self) -> std::sync::MutexGuard<'_, FilterState> {
        // The filter's maps are consistent after any panic; at worst a decision is repeated.
        self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.writer.try_send(job(reply)).map_err(queue_error)?;
        answered(answer).await
    }

    /// Filters a health check, then queues it and waits until it is durable. A filtered check
    /// is only shown live. With a `ticket`, its receipt is stored with the check (or alone,
    /// for a filtered check, before it is shown).
    pub(crate) async fn write_health(
        &self,
        mut check: NewHealthCheck,
        ticket: Option<&Ticket>,
    ) -> Result<HealthWrite, EngineError> {
        check.receipt = ticket.map(|t| t.receipt(Answer::HealthStored));
        if !self.filter_enabled {
            return self.submit(|reply| Job::Health(Box::new(check), reply)).await.map(HealthWrite::Stored);
        }
        let key = format!("health/{}", check.device_id);
        let time_ns = nanos(check.checked_at);
        let skipped = {
            let mut state = self.filter();
            let decision = state.filter.decide(&key, &check.check.tracked(), time_ns);
            // Until the baseline's write is answered there is no id to point to: store this one.
            match (decision, state.last_health.get(&key).copied()) {
                (Decision::Skip, Some(last)) => Some(last),
                _ => None,
            }
        };
        if let Some(last) = skipped {
            if let Some(ticket) = ticket {
                let receipt = ticket.receipt(Answer::HealthFiltered(last.0));
                self.submit(|reply| Job::Points(Vec::new(), Arc::from(""), Some(receipt), reply)).await?;
            }
            self.accepted.accept([(None, &check.check.points(&check.device_id, time_ns)[..])]).await;
            return Ok(HealthWrite::Filtered(last));
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
    /// is stored. With a `ticket`, its receipt is stored with the points, and the filtered
    /// ones are shown only once it is: a retry after a failure must not count them twice.
    pub(crate) async fn write_points(
        &self,
        owner: &str,
        points: Vec<Point>,
        ticket: Option<&Ticket>,
    ) -> Result<PointsWrite, EngineError> {
        self.accepted.live.read().unwrap_or_else(std::sync::PoisonError::into_inner).admit(owner, &points)?;
        let owner: Arc<str> = Arc::from(owner);
        if !self.filter_enabled {
            let stored = points.len();
            let receipt = ticket.map(|t| t.receipt(Answer::Points(stored)));
            if stored > 0 || receipt.is_some() {
                self.submit(|reply| Job::Points(points, owner, receipt, reply)).await?;
            }
            return Ok(PointsWrite { stored });
        }
        let (store, skip): (Vec<Point>, Vec<Point>) = {
            let mut state = self.filter();
            points.into_iter().partition(|p| {
                matches!(state.filter.decide(&p.series_key(), &p.tracked(), p.timestamp_ns()), Decision::Store(_))
            })
        };
        let stored = store.len();
        let receipt = ticket.map(|t| t.receipt(Answer::Points(stored)));
        if receipt.is_none() {
            self.accepted.accept([(Some(&*owner), &skip[..])]).await;
            if stored == 0 {
                return Ok(PointsWrite { stored });
            }
        }
        let keys: Vec<String> = store.iter().map(Point::series_key).collect();
        match self.submit(|reply| Job::Points(store, owner.clone(), receipt, reply)).await {
            Ok(()) => {
                if ticket.is_some() {
                    self.accepted.accept([(Some(&*owner), &skip[..])]).await;
                }
                Ok(PointsWrite { stored })
            }
            Err(error) => {
                let mut state = self.filter();
                for key in &keys {
                    state.filter.forget(key);
                }
                Err(error)
            }
        }
    }

    /// Queues an analytics record and waits until it is durable.
    pub(crate) async fn write_record(&self, record: AnalyticsRecord) -> Result<RecordId, EngineError> {
        self.submit(|reply| Job::Record(Box::new(record), reply)).await
    }

    /// Queues a device's state transition, waiting for room, and waits until it is durable:
    /// `None` when the device's stored state was no longer the transition's previous state
    /// (another instance, or a client, changed it first) and nothing was stored.
    pub(crate) async fn write_transition(&self, change: StateChange) -> Result<Option<RecordId>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(Job::Transition(Box::new(change), reply)).await.map_err(queue_error)?;
        answered(answer).await
    }
}

/// What the writer answered for one job.
async fn answered<T>(answer: oneshot::Receiver<Result<T, Arc<StorageError>>>) -> Result<T, EngineError> {
    match answer.await {
        Ok(result) => result.map_err(EngineError::Storage),
        Err(_) => Err(EngineError::Stopped),
    }
}

/// A batch's answer split into one per job: an error, or an answer count that breaks the
/// storage contract, fails them all.
fn per_job<T: Clone>(
    result: Result<Vec<T>, StorageError>,
    jobs: usize,
    what: &str,
) -> Vec<Result<T, Arc<StorageError>>> {
    match result {
        Ok(answers) if answers.len() == jobs => answers.into_iter().map(Ok).collect(),
        Ok(answers) => {
            let error = StorageError::backend(format!("backend returned {} answers for {jobs} {what}", answers.len()));
            tracing::error!(%error, "storage contract violated");
            vec![Err(Arc::new(error)); jobs]
        }
        Err(error) => vec![Err(Arc::new(error)); jobs],
    }
}

/// The telemetry writer's commit: one transaction per kind of record.
struct Telemetry {
    store: Arc<dyn Store>,
    accepted: Accepted,
    stats: Arc<Stats>,
}

#[async_trait]
impl Commit<Job> for Telemetry {
    async fn commit(&mut self, batch: Vec<Job>) {
        let mut health = Vec::new();
        let mut points = Vec::new();
        let mut records = Vec::new();
        // State changes come in bursts (a fleet coming online): one transaction for them all.
        let mut changes = Vec::new();
        let mut transitions = Vec::new();
        for job in batch {
            match job {
                Job::Health(check, reply) => health.push((*check, reply)),
                Job::Points(batch, owner, receipt, reply) => points.push((batch, owner, receipt, reply)),
                Job::Record(record, reply) => match *record {
                    AnalyticsRecord::StateChange(change) => changes.push((change, reply)),
                    record => records.push((record, reply)),
                },
                Job::Transition(change, reply) => transitions.push((*change, reply)),
            }
        }
        if !health.is_empty() {
            self.commit_health(health).await;
        }
        if !points.is_empty() {
            self.commit_points(points).await;
        }
        if !changes.is_empty() {
            self.commit_state_changes(changes).await;
        }
        if !transitions.is_empty() {
            self.commit_transitions(transitions).await;
        }
        for (record, reply) in records {
            self.commit_record(record, reply).await;
        }
    }
}

impl Telemetry {
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
            // One unknown device, or one idempotency key another instance took, must not fail
            // the checks that shared its transaction.
            Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) if checks.len() > 1 => {
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
            .flat_map(|(c, _)| c.check.points(&c.device_id, nanos(c.checked_at)))
            .collect();
        self.accepted.accept([(None, &live[..])]).await;
        for (reply, result) in replies.into_iter().zip(stored) {
            let _ = reply.send(result);
        }
    }

    /// Tells `/health` whether storage takes writes: a ping alone misses a locked or
    /// read-only file.
    fn note<T>(&self, result: &Result<T, StorageError>) {
        let now_ms = self.accepted.clock.now().timestamp_millis();
        match result {
            Ok(_) => self.stats.write_outcome(false, now_ms),
            Err(StorageError::Unavailable { .. }) => self.stats.write_outcome(true, now_ms),
            Err(_) => {}
        }
    }

    async fn commit_points(&self, jobs: Vec<PointsJob>) {
        let mut all = Vec::with_capacity(jobs.iter().map(|(batch, ..)| batch.len()).sum());
        let mut senders = Vec::with_capacity(jobs.len());
        let mut receipts = Vec::new();
        // Each sender's receipt, as a range of `receipts` (empty without a key).
        let mut receipt_ranges = Vec::with_capacity(jobs.len());
        for (batch, owner, receipt, reply) in jobs {
            senders.push((all.len()..all.len() + batch.len(), owner, reply));
            all.extend(batch);
            receipt_ranges.push(receipts.len()..receipts.len() + usize::from(receipt.is_some()));
            receipts.extend(receipt);
        }
        let result = self.store.insert_points(&all, &receipts).await;
        self.note(&result);
        let results = match result {
            // An idempotency key another instance took must not fail the senders that shared
            // its transaction: each sender alone.
            Err(StorageError::Conflict { .. }) if senders.len() > 1 => {
                let mut results = Vec::with_capacity(senders.len());
                for ((range, ..), receipt) in senders.iter().zip(receipt_ranges) {
                    results.push(
                        self.store.insert_points(&all[range.clone()], &receipts[receipt]).await.map_err(Arc::new),
                    );
                }
                results
            }
            result => vec![result.map_err(Arc::new); senders.len()],
        };
        let stored: usize =
            senders.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|((range, ..), _)| range.len()).sum();
        self.stats.metrics_received(stored);
        if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(%error, points = all.len() - stored, "metric points not stored");
        }
        let accepted = senders.iter().zip(&results).filter(|(_, r)| r.is_ok());
        self.accepted.accept(accepted.map(|((range, owner, _), _)| (Some(&**owner), &all[range.clone()]))).await;
        for ((_, _, reply), result) in senders.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    async fn commit_state_changes(&self, jobs: Vec<(StateChange, Reply<RecordId>)>) {
        let (changes, replies): (Vec<StateChange>, Vec<_>) = jobs.into_iter().unzip();
        let result = self.store.insert_state_changes(&changes).await;
        self.note(&result);
        let results = per_job(result, replies.len(), "state changes");
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    async fn commit_transitions(&self, jobs: Vec<(StateChange, Reply<Option<RecordId>>)>) {
        let (changes, replies): (Vec<StateChange>, Vec<_>) = jobs.into_iter().unzip();
        let result = self.store.apply_transitions(&changes).await;
        self.note(&result);
        let results = per_job(result, replies.len(), "state transitions");
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    async fn commit_record(&self, record: AnalyticsRecord, reply: Reply<RecordId>) {
        let result = match &record {
            AnalyticsRecord::StateChange(change) => self.store.insert_state_change(change).await,
            AnalyticsRecord::JobOutcome(outcome) => self.store.insert_job_outcome(outcome).await,
            AnalyticsRecord::ErrorLog(error) => self.store.insert_error_log(error).await,
            AnalyticsRecord::UserActivity(activity) => self.store.insert_user_activity(activity).await,
        };
        self.note(&result);
        let _ = reply.send(result.map_err(Arc::new));
    }
}
