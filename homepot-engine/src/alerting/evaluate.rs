//! One evaluation cycle: every rule's readings per subject, the lifecycle step of each, the
//! notifications those steps and due repeats cause, all stored in one transaction, then
//! announced.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::Device;
use homepot_core::alert::{
    Alert, AlertEvent, AlertState, DeliveryState, EventKind, Measure, Notification, NotificationKind, Reading,
    Receiver, Rule, RuleKind, Silence, Step, judge, step,
};
use homepot_core::analytics::summarize_performance;
use homepot_core::live::LiveStore;
use homepot_storage::StorageError;
use homepot_storage::alerts::{AlertChange, AlertConfig, ConfigKind};
use homepot_storage::fleet::FleetQuery;

use super::{AlertUpdate, Alerting, EvalState, Map, Observed, Registry, Rings, new_id};
use crate::EngineError;

/// Most alert changes stored in one transaction.
const CHANGES_PER_COMMIT: usize = 256;

/// How long the registry read is trusted when nothing said it changed.
const REGISTRY_TTL: TimeDelta = TimeDelta::seconds(60);

/// One subject's reading: (subject, whether the subject is a device, reading).
type Read = (String, bool, Reading);

/// What one cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Rules evaluated.
    pub rules: usize,
    /// Subjects read across them.
    pub readings: usize,
    /// Alerts that changed state.
    pub transitions: usize,
    /// Notifications queued (suppressed ones included).
    pub notifications: usize,
}

struct Config {
    rules: Vec<Rule>,
    silences: Vec<Silence>,
    receivers: Vec<Receiver>,
}

impl Alerting {
    async fn read_config(&self) -> Result<Config, StorageError> {
        let (mut rules, mut silences, mut receivers) = (Vec::new(), Vec::new(), Vec::new());
        for kind in [ConfigKind::Rule, ConfigKind::Silence, ConfigKind::Receiver] {
            for config in self.store.alert_configs(kind).await? {
                match config {
                    AlertConfig::Rule(r) => rules.push(r),
                    AlertConfig::Silence(s) => silences.push(s),
                    AlertConfig::Receiver(r) => receivers.push(r),
                }
            }
        }
        Ok(Config { rules, silences, receivers })
    }

    /// The registry, read again when stale; on first use also each device's last stored
    /// check, so that silence before a restart counts.
    async fn registry(&self, state: &mut EvalState, now: DateTime<Utc>) -> Result<Arc<Registry>, StorageError> {
        if let Some((read_at, registry)) = &state.registry
            && now - *read_at < REGISTRY_TTL
        {
            return Ok(Arc::clone(registry));
        }
        let registry = Arc::new(Registry::new(self.store.devices().await?));
        if !state.seeded {
            let mut query = FleetQuery { limit: 5_000, ..FleetQuery::default() };
            loop {
                let page = self.store.fleet(&query).await?;
                let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
                for device in &page.devices {
                    if let Some(latest) = &device.latest {
                        observed.entry(device.device.id.to_string()).or_insert(Observed {
                            last_seen: latest.checked_at,
                            unhealthy_streak: latest.is_healthy.then_some(0),
                        });
                    }
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            state.seeded = true;
        }
        state.registry = Some((now, Arc::clone(&registry)));
        Ok(registry)
    }

    /// Evaluates every rule once, stores what changed, queues notifications, announces.
    pub(crate) async fn cycle(
        &self,
        live: &std::sync::RwLock<LiveStore>,
        now: DateTime<Utc>,
    ) -> Result<CycleReport, EngineError> {
        let config = self.read_config().await?;
        // Series past the live retention are gone: their absence is what no-data means.
        let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        live.write().unwrap_or_else(PoisonError::into_inner).evict_expired(now_ns);
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let needs_registry = config.rules.iter().any(|r| {
            r.enabled
                && (matches!(r.kind, RuleKind::Absent { .. } | RuleKind::Unhealthy { .. })
                    || !r.scope.labels.is_empty())
        });
        let registry =
            if needs_registry { self.registry(state, now).await? } else { Arc::new(Registry::new(Vec::new())) };
        let mut report = CycleReport { rules: config.rules.len(), ..CycleReport::default() };
        let mut plan =
            Plan { now, config: &config, changes: Vec::new(), steps: Vec::new(), sent: Vec::new(), clocks: Vec::new() };

        for rule in &config.rules {
            let open = state.open.of_rule(&rule.id);
            let (reads, evaluated) = if rule.enabled {
                self.read(rule, live, &registry, open, &mut state.rings, now).await?
            } else {
                (Vec::new(), 0)
            };
            report.readings += evaluated;
            let mut seen: Map<&str, ()> = Map::with_capacity(reads.len());
            for (subject, is_device, reading) in &reads {
                let device = is_device.then_some(subject.as_str());
                plan.step(rule, subject, device, *reading, open.and_then(|o| o.get(subject.as_str())));
                seen.insert(subject.as_str(), ());
            }
            // Open alerts of this rule with no reading this time.
            for alert in open.into_iter().flat_map(Map::values).filter(|a| !seen.contains_key(a.subject.as_str())) {
                let reading = match (&rule.kind, rule.enabled) {
                    (_, false) => Reading::Clear(None),
                    (RuleKind::Threshold { .. } | RuleKind::Rate { .. }, _) if now < self.no_data_known_from => {
                        Reading::Hold(None)
                    }
                    (RuleKind::Unhealthy { .. }, _)
                        if alert.device_id.as_deref().is_some_and(|d| registry.get(d).is_some()) =>
                    {
                        Reading::Hold(None)
                    }
                    (RuleKind::Service { .. }, _) => Reading::Hold(None),
                    _ => Reading::Clear(None),
                };
                plan.step(rule, &alert.subject, alert.device_id.as_deref(), reading, Some(alert));
            }
        }
        // Alerts of rules that no longer exist resolve; their samples go.
        let rule_ids: HashSet<&str> = config.rules.iter().map(|r| r.id.as_str()).collect();
        let orphans: Vec<Alert> = state
            .open
            .rules()
            .filter(|r| !rule_ids.contains(r.as_str()))
            .flat_map(|r| state.open.of_rule(r).into_iter().flat_map(Map::values))
            .cloned()
            .collect();
        for alert in orphans {
            plan.close_orphan(&alert);
        }
        state.rings.retain(|rule, _| rule_ids.contains(rule.as_str()));
        plan.repeats(state);
        // Clocks start for the newly routed.
        for key in std::mem::take(&mut plan.clocks) {
            state.last_sent.entry(key).or_insert(now);
        }

        report.transitions = plan.steps.len();
        report.notifications = plan.changes.iter().map(|c| c.notifications.len()).sum();
        if plan.changes.is_empty() {
            return Ok(report);
        }
        // Bounded transactions: a burst of transitions (a site going dark) must not hold
        // SQLite's one writer for seconds while ingest waits. A change never spans two.
        let mut committed = 0;
        let mut failure = None;
        for chunk in plan.changes.chunks(CHANGES_PER_COMMIT) {
            if let Err(error) = self.store.apply_alert_changes(chunk).await {
                failure = Some(error);
                break;
            }
            committed += chunk.len();
        }
        let done = &plan.changes[..committed];
        let mut closed: HashSet<&str> = HashSet::new();
        for change in done {
            let alert = &change.alert;
            if change.discard || alert.state == AlertState::Resolved {
                state.open.remove(alert);
                closed.insert(alert.id.as_str());
            } else {
                state.open.put(alert.clone());
            }
        }
        if !closed.is_empty() {
            state.last_sent.retain(|(id, _), _| !closed.contains(id.as_str()));
        }
        let stored: HashSet<&str> = done.iter().map(|c| c.alert.id.as_str()).collect();
        for (alert, receiver) in plan.sent.iter().filter(|(alert, _)| stored.contains(alert.as_str())) {
            state.last_sent.insert((alert.clone(), receiver.clone()), now);
        }
        if let Some(error) = &failure
            && matches!(error, StorageError::Conflict { .. })
        {
            // Memory and storage disagree: trust storage, and evaluate again next cycle.
            state.open = self.store.open_alerts().await?.into_iter().collect();
        }
        drop(guard);
        let updates: Vec<AlertUpdate> = done
            .iter()
            .filter(|c| !c.discard)
            .filter_map(|c| c.event.as_ref().map(|e| AlertUpdate { event: e.kind, alert: c.alert.clone() }))
            .collect();
        for update in &updates {
            tracing::info!(
                alert = %update.alert.id, rule = %update.alert.rule_id, subject = %update.alert.subject,
                state = update.alert.state.as_str(), severity = update.alert.severity.as_str(), "alert changed"
            );
        }
        self.announce(updates);
        if done.iter().any(|c| !c.notifications.is_empty()) {
            self.queued.notify_one();
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(report),
        }
    }

    /// The readings for `rule` now that can change something: (subject, whether the subject
    /// is a device, reading) of every breach and of every subject with an open alert; and how
    /// many subjects were read. A healthy fleet's readings are nearly all clear with nothing
    /// open, so they are counted and dropped before anything is allocated for them.
    async fn read(
        &self,
        rule: &Rule,
        live: &std::sync::RwLock<LiveStore>,
        registry: &Registry,
        open: Option<&Map<String, Alert>>,
        rings: &mut Rings,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Read>, usize), EngineError> {
        let matters = |subject: &str, reading: &Reading| {
            matches!(reading, Reading::Breach(_)) || open.is_some_and(|o| o.contains_key(subject))
        };
        let in_scope = |device: Option<&str>, tags: &[(Arc<str>, Arc<str>)]| {
            rule.scope.admits(device, |k| tag(tags, k).or_else(|| registry.label(device, k)))
        };
        let device_in_scope =
            |d: &Device| rule.scope.admits(Some(d.id.as_str()), |k| d.labels.as_map().get(k).map(String::as_str));
        let mut reads = Vec::new();
        let mut evaluated = 0;
        match &rule.kind {
            RuleKind::Threshold { series, op, value, clear, .. } => {
                series_samples(live, series, in_scope, |subject, is_device, _, v| {
                    evaluated += 1;
                    let reading = judge(*op, *value, *clear, v);
                    if matters(subject, &reading) {
                        reads.push((subject.to_owned(), is_device, reading));
                    }
                });
            }
            RuleKind::Rate { series, op, per_hour, window_s, .. } => {
                let window_ns = *window_s as i64 * 1_000_000_000;
                let rings = rings.entry_ref(rule.id.as_str()).or_default();
                series_samples(live, series, in_scope, |subject, is_device, time_ns, v| {
                    evaluated += 1;
                    let ring = rings.entry_ref(subject).or_default();
                    if ring.back().is_none_or(|(t, _)| *t < time_ns) {
                        ring.push_back((time_ns, v));
                    }
                    // Keep one sample at or before the window's start as the baseline.
                    while ring.len() > 2 && ring[1].0 <= time_ns - window_ns {
                        ring.pop_front();
                    }
                    let (t0, v0) = ring[0];
                    let reading = if time_ns - t0 >= window_ns / 2 && time_ns > t0 {
                        let rate = (v - v0) / ((time_ns - t0) as f64 / 3.6e12);
                        judge(*op, *per_hour, None, rate)
                    } else {
                        Reading::Hold(None)
                    };
                    if matters(subject, &reading) {
                        reads.push((subject.to_owned(), is_device, reading));
                    }
                });
                // Subjects silent for a whole window have no rate: their samples go.
                let cutoff = now.timestamp_nanos_opt().unwrap_or(i64::MAX) - window_ns;
                rings.retain(|_, ring| ring.back().is_some_and(|(t, _)| *t >= cutoff));
            }
            RuleKind::Absent { heartbeats } => {
                let allowed =
                    TimeDelta::from_std(self.heartbeat_interval).unwrap_or(TimeDelta::MAX) * (*heartbeats as i32);
                let observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
                for d in registry.devices.iter().filter(|d| device_in_scope(d)) {
                    evaluated += 1;
                    let last = observed.get(d.id.as_str()).map_or(d.created_at, |o| o.last_seen);
                    let silent = now - last;
                    let seconds = silent.num_milliseconds() as f64 / 1_000.0;
                    let reading =
                        if silent > allowed { Reading::Breach(seconds) } else { Reading::Clear(Some(seconds)) };
                    if matters(d.id.as_str(), &reading) {
                        reads.push((d.id.to_string(), true, reading));
                    }
                }
            }
            RuleKind::Unhealthy { count } => {
                let observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
                for d in registry.devices.iter().filter(|d| device_in_scope(d)) {
                    let Some(streak) = observed.get(d.id.as_str()).and_then(|o| o.unhealthy_streak) else { continue };
                    evaluated += 1;
                    let reading = match streak {
                        0 => Reading::Clear(Some(0.0)),
                        n if n >= *count => Reading::Breach(f64::from(n)),
                        n => Reading::Hold(Some(f64::from(n))),
                    };
                    if matters(d.id.as_str(), &reading) {
                        reads.push((d.id.to_string(), true, reading));
                    }
                }
            }
            RuleKind::Service { route, method, measure, op, value, window_s, min_requests, .. } => {
                let since = now - TimeDelta::seconds(*window_s as i64);
                let parts = self.store.request_latencies(since, route.as_deref()).await?;
                for p in summarize_performance(&parts)
                    .into_iter()
                    .filter(|p| method.as_deref().is_none_or(|m| p.method == m))
                {
                    evaluated += 1;
                    let subject = format!("{} {}", p.method, p.endpoint);
                    let reading = if p.request_count < (*min_requests).max(1) {
                        Reading::Hold(None)
                    } else {
                        let share = |n: u64| n as f64 * 100.0 / p.request_count as f64;
                        let measured = match measure {
                            Measure::ErrorPercent => share(p.error_count),
                            Measure::ServerErrorPercent => share(p.server_error_count),
                            Measure::P95Ms => p.p95_response_time_ms,
                        };
                        judge(*op, *value, None, measured)
                    };
                    if matters(&subject, &reading) {
                        reads.push((subject, false, reading));
                    }
                }
            }
        }
        Ok((reads, evaluated))
    }
}

fn tag<'a>(tags: &'a [(Arc<str>, Arc<str>)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
}

/// Calls `each` with (subject, whether it is a device, time ns, value) for the latest value
/// of `series` in every live series that carries its tags and is in scope. The subject is the
/// series' `device_id` or `node_id` tag, or else its identity. The read lock is held while
/// `each` runs, which only compares and copies.
fn series_samples(
    live: &std::sync::RwLock<LiveStore>,
    series: &homepot_core::alert::SeriesRef,
    in_scope: impl Fn(Option<&str>, &[(Arc<str>, Arc<str>)]) -> bool,
    mut each: impl FnMut(&str, bool, i64, f64),
) {
    let live = live.read().unwrap_or_else(PoisonError::into_inner);
    for (key, s) in live.named(&series.name) {
        if !series.tags.iter().all(|(k, v)| tag(&key.tags, k) == Some(v.as_str())) {
            continue;
        }
        let Some(value) = s.fields.iter().find(|(f, _)| **f == *series.field).and_then(|(_, v)| v.as_f64()) else {
            continue;
        };
        let device = tag(&key.tags, "device_id").or_else(|| tag(&key.tags, "node_id"));
        if !in_scope(device, &key.tags) {
            continue;
        }
        match device {
            Some(device) => each(device, true, s.timestamp_ns, value),
            None => {
                let tags: Vec<String> = key.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                each(&format!("{}{{{}}}", key.name, tags.join(",")), false, s.timestamp_ns, value);
            }
        }
    }
}

/// The changes one cycle makes, gathered before any is stored.
struct Plan<'a> {
    now: DateTime<Utc>,
    config: &'a Config,
    changes: Vec<AlertChange>,
    steps: Vec<Step>,
    /// (alert, receiver) pairs sent a firing or repeat message.
    sent: Vec<(String, String)>,
    /// (alert, receiver) pairs whose repeat clock starts now without a message.
    clocks: Vec<(String, String)>,
}

impl Plan<'_> {
    fn silenced(&self, alert: &Alert) -> bool {
        self.config.silences.iter().any(|s| s.mutes(&alert.labels, self.now))
    }

    fn notify(&mut self, alert: &Alert, kind: NotificationKind, only: Option<&str>) -> Vec<Notification> {
        let silenced = self.silenced(alert);
        let mut out = Vec::new();
        for receiver in &self.config.receivers {
            if !receiver.routes(alert)
                || (kind == NotificationKind::Resolved && !receiver.send_resolved)
                || only.is_some_and(|id| id != receiver.id)
            {
                continue;
            }
            if kind != NotificationKind::Resolved {
                self.sent.push((alert.id.clone(), receiver.id.clone()));
            }
            out.push(Notification {
                id: new_id(),
                alert_id: alert.id.clone(),
                receiver_id: receiver.id.clone(),
                kind,
                alert: alert.clone(),
                state: if silenced { DeliveryState::Suppressed } else { DeliveryState::Pending },
                attempts: 0,
                next_attempt_at: self.now,
                last_error: None,
                created_at: self.now,
                delivered_at: None,
            });
        }
        out
    }

    fn push(&mut self, alert: Alert, kind: EventKind, notify: Option<NotificationKind>, note: Option<String>) {
        let notifications = match notify {
            Some(n) => self.notify(&alert, n, None),
            None => Vec::new(),
        };
        let event = AlertEvent { alert_id: alert.id.clone(), at: self.now, kind, value: alert.value, note };
        self.changes.push(AlertChange { alert, discard: false, event: Some(event), notifications });
    }

    fn step(&mut self, rule: &Rule, subject: &str, device: Option<&str>, reading: Reading, open: Option<&Alert>) {
        let now = self.now;
        let taken = step(open.map(|a| (a.state, a.started_at)), reading, now, rule.kind.for_s());
        let value = reading.value();
        match (taken, open) {
            (Step::Stay, _) => return,
            (Step::Open(state), _) => {
                let firing = state == AlertState::Firing;
                let alert = Alert {
                    id: new_id(),
                    rule_id: rule.id.clone(),
                    subject: subject.to_owned(),
                    device_id: device.map(str::to_owned),
                    state,
                    severity: rule.severity,
                    labels: rule.alert_labels(subject, device),
                    summary: rule.summary(subject, device, value),
                    value,
                    started_at: now,
                    fired_at: firing.then_some(now),
                    resolved_at: None,
                    ack: None,
                    updated_at: now,
                };
                if firing {
                    // Both entries, so every timeline starts with the condition first holding.
                    let event =
                        AlertEvent { alert_id: alert.id.clone(), at: now, kind: EventKind::Pending, value, note: None };
                    self.changes.push(AlertChange {
                        alert: Alert { state: AlertState::Pending, fired_at: None, ..alert.clone() },
                        discard: false,
                        event: Some(event),
                        notifications: Vec::new(),
                    });
                    self.push(alert, EventKind::Firing, Some(NotificationKind::Firing), None);
                } else {
                    self.push(alert, EventKind::Pending, None, None);
                }
            }
            (Step::Fire, Some(open)) => {
                let mut alert = open.clone();
                alert.state = AlertState::Firing;
                alert.fired_at = Some(now);
                alert.value = value.or(alert.value);
                alert.summary = rule.summary(subject, device, alert.value);
                alert.updated_at = now;
                self.push(alert, EventKind::Firing, Some(NotificationKind::Firing), None);
            }
            (Step::Resolve, Some(open)) => {
                let mut alert = open.clone();
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(now);
                alert.value = value.or(alert.value);
                alert.updated_at = now;
                let note = if !rule.enabled {
                    Some("rule disabled".to_owned())
                } else {
                    value.is_none().then(|| "no data".to_owned())
                };
                self.push(alert, EventKind::Resolved, Some(NotificationKind::Resolved), note);
            }
            (Step::Discard, Some(open)) => {
                self.changes.push(AlertChange {
                    alert: open.clone(),
                    discard: true,
                    event: None,
                    notifications: Vec::new(),
                });
            }
            _ => return,
        }
        self.steps.push(taken);
    }

    fn close_orphan(&mut self, open: &Alert) {
        let mut alert = open.clone();
        if alert.state == AlertState::Pending {
            self.changes.push(AlertChange { alert, discard: true, event: None, notifications: Vec::new() });
            self.steps.push(Step::Discard);
            return;
        }
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(self.now);
        alert.updated_at = self.now;
        self.push(alert, EventKind::Resolved, Some(NotificationKind::Resolved), Some("rule removed".to_owned()));
        self.steps.push(Step::Resolve);
    }

    /// Reminders for firing, unacknowledged, unsilenced alerts whose receivers' repeat
    /// intervals have passed since they were last told. After a restart the clock restarts:
    /// a reminder is never early, at most one interval late.
    fn repeats(&mut self, state: &EvalState) {
        let changed: HashSet<String> = self.changes.iter().map(|c| c.alert.id.clone()).collect();
        for alert in state.open.values() {
            if alert.state != AlertState::Firing
                || alert.ack.is_some()
                || changed.contains(&alert.id)
                || self.silenced(alert)
            {
                continue;
            }
            let due: Vec<String> = self
                .config
                .receivers
                .iter()
                .filter(|r| r.repeat_interval_s > 0 && r.routes(alert))
                .filter(|r| {
                    let last = state.last_sent.get(&(alert.id.clone(), r.id.clone()));
                    match last {
                        Some(last) => self.now - *last >= TimeDelta::seconds(r.repeat_interval_s as i64),
                        None => false,
                    }
                })
                .map(|r| r.id.clone())
                .collect();
            let mut notifications = Vec::new();
            for receiver in due {
                notifications.extend(self.notify(alert, NotificationKind::Repeat, Some(&receiver)));
            }
            // Receivers that never heard of it (added later, restart): start their clocks.
            for r in &self.config.receivers {
                if r.routes(alert) && !state.last_sent.contains_key(&(alert.id.clone(), r.id.clone())) {
                    self.clocks.push((alert.id.clone(), r.id.clone()));
                }
            }
            if !notifications.is_empty() {
                self.changes.push(AlertChange { alert: alert.clone(), discard: false, event: None, notifications });
            }
        }
    }
}
