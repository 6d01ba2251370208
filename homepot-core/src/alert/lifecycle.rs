//! An alert's life: pending while its condition has held for less than the rule's `for`,
//! firing after, resolved when the condition clears. [`judge`] turns a reading into breach,
//! hold (inside the hysteresis band, or nothing known) or clear; [`step`] says what that does
//! to the open alert of a (rule, subject), of which there is at most one.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::rule::{Comparator, Severity};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, for less than the rule's `for` so far.
    Pending,
    /// The condition has held for `for`: receivers are told.
    Firing,
    /// The condition cleared after firing.
    Resolved,
}

impl AlertState {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// The state named `raw`.
    pub fn parse(raw: &str) -> Option<Self> {
        [AlertState::Pending, AlertState::Firing, AlertState::Resolved].into_iter().find(|s| s.as_str() == raw)
    }

    /// Pending or firing.
    pub fn is_open(self) -> bool {
        self != AlertState::Resolved
    }
}

/// Who acknowledged an alert, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub by: String,
    /// Why, or what is being done.
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// One alert: a rule's condition on one subject, from pending to resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its identifier.
    pub id: String,
    /// The rule that raised it.
    pub rule_id: String,
    /// What it is about: a device, a node, a route or a series.
    pub subject: String,
    /// The device it is about, when it is about one.
    pub device_id: Option<String>,
    /// Where it is in its life.
    pub state: AlertState,
    /// The rule's severity when it opened.
    pub severity: Severity,
    /// The rule's labels with `alertname`, `severity`, `subject` and `device_id`.
    pub labels: BTreeMap<String, String>,
    /// The filled-in annotation.
    pub summary: String,
    /// The latest reading.
    pub value: Option<f64>,
    /// When the condition first held: the incident's start.
    pub started_at: DateTime<Utc>,
    /// When it began firing.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it resolved: the incident's end.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Its acknowledgement, which quiets repeats.
    pub ack: Option<Ack>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Alert {
    /// How long the incident lasted (or has lasted until `now`).
    pub fn duration(&self, now: DateTime<Utc>) -> TimeDelta {
        self.resolved_at.unwrap_or(now) - self.started_at
    }
}

/// What happened to an alert, for its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// It opened as pending.
    Pending,
    /// It began firing.
    Firing,
    /// It resolved.
    Resolved,
    /// Someone acknowledged it.
    Acknowledged,
}

/// One entry of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The alert.
    pub alert_id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub kind: EventKind,
    /// The reading then.
    pub value: Option<f64>,
    /// Who or why, when someone acted.
    pub note: Option<String>,
}

/// A rule's verdict on one subject now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// The condition holds, at this value.
    Breach(f64),
    /// Neither breached nor cleared: inside the hysteresis band, or nothing new is known.
    Hold(Option<f64>),
    /// The condition has cleared (at this value, if there is one).
    Clear(Option<f64>),
}

impl Reading {
    /// The value read, if any.
    pub fn value(self) -> Option<f64> {
        match self {
            Reading::Breach(v) => Some(v),
            Reading::Hold(v) | Reading::Clear(v) => v,
        }
    }
}

/// `value` against a threshold with optional hysteresis: breached past `threshold`, cleared
/// only back past `clear` (the threshold itself when absent), held in between.
pub fn judge(op: Comparator, threshold: f64, clear: Option<f64>, value: f64) -> Reading {
    if op.holds(value, threshold) {
        Reading::Breach(value)
    } else if clear.is_some_and(|clear| op.holds(value, clear) || value == clear) {
        Reading::Hold(Some(value))
    } else {
        Reading::Clear(Some(value))
    }
}

/// What a reading does to the open alert of a (rule, subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing changes.
    Stay,
    /// A new alert opens in this state (firing at once when `for` is zero).
    Open(AlertState),
    /// The pending alert begins firing.
    Fire,
    /// The firing alert resolves.
    Resolve,
    /// The pending alert is dropped: it never fired, so nobody was told.
    Discard,
}

/// The step from `open` (the open alert's state and start, if any) on `reading` at `now`,
/// for a rule whose condition must hold for `for_s` seconds.
pub fn step(open: Option<(AlertState, DateTime<Utc>)>, reading: Reading, now: DateTime<Utc>, for_s: u64) -> Step {
    let held_long_enough = |since: DateTime<Utc>| now - since >= TimeDelta::seconds(for_s as i64);
    match (open, reading) {
        (None, Reading::Breach(_)) if for_s == 0 => Step::Open(AlertState::Firing),
        (None, Reading::Breach(_)) => Step::Open(AlertState::Pending),
        (None, _) => Step::Stay,
        (Some((AlertState::Pending, since)), Reading::Breach(_) | Reading::Hold(_)) if held_long_enough(since) => {
            Step::Fire
        }
        (Some((AlertState::Pending, _)), Reading::Clear(_)) => Step::Discard,
        (Some((AlertState::Firing, _)), Reading::Clear(_)) => Step::Resolve,
        (Some(_), _) => Step::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("valid")
    }

    #[test]
    fn hysteresis_holds_between_threshold_and_clear() {
        let judge = |v| judge(Comparator::Above, 90.0, Some(80.0), v);
        assert_eq!(judge(95.0), Reading::Breach(95.0));
        assert_eq!(judge(85.0), Reading::Hold(Some(85.0)));
        assert_eq!(judge(80.0), Reading::Hold(Some(80.0)));
        assert_eq!(judge(79.0), Reading::Clear(Some(79.0)));
        assert_eq!(super::judge(Comparator::Below, 30.0, None, 31.0), Reading::Clear(Some(31.0)));
    }

    #[test]
    fn pending_fires_after_for_and_firing_resolves() {
        assert_eq!(step(None, Reading::Breach(1.0), at(0), 60), Step::Open(AlertState::Pending));
        assert_eq!(step(None, Reading::Breach(1.0), at(0), 0), Step::Open(AlertState::Firing));
        let pending = Some((AlertState::Pending, at(0)));
        assert_eq!(step(pending, Reading::Breach(1.0), at(59), 60), Step::Stay);
        assert_eq!(step(pending, Reading::Breach(1.0), at(60), 60), Step::Fire);
        assert_eq!(step(pending, Reading::Clear(None), at(30), 60), Step::Discard);
        let firing = Some((AlertState::Firing, at(0)));
        assert_eq!(step(firing, Reading::Hold(None), at(600), 60), Step::Stay);
        assert_eq!(step(firing, Reading::Clear(Some(1.0)), at(600), 60), Step::Resolve);
    }

    fn reading() -> impl Strategy<Value = Reading> {
        prop_oneof![(0.0..100.0).prop_map(Reading::Breach), Just(Reading::Hold(None)), Just(Reading::Clear(None)),]
    }

    proptest! {
        /// Whatever the readings, an alert fires only once its condition has held without
        /// a clear for `for`, and a resolved alert is never touched again.
        #[test]
        fn fires_only_after_an_unbroken_for(readings in proptest::collection::vec(reading(), 1..60), for_s in 0u64..20) {
            let mut open: Option<(AlertState, DateTime<Utc>)> = None;
            let mut breach_since: Option<i64> = None;
            for (t, reading) in readings.into_iter().enumerate() {
                let now = t as i64;
                match reading {
                    Reading::Breach(_) => { breach_since.get_or_insert(now); }
                    Reading::Clear(_) => breach_since = None,
                    Reading::Hold(_) => {}
                }
                match step(open, reading, at(now), for_s) {
                    Step::Stay => {}
                    Step::Open(state) => {
                        prop_assert!(open.is_none());
                        prop_assert!(state == AlertState::Pending || for_s == 0);
                        open = Some((state, at(now)));
                    }
                    Step::Fire => {
                        let (state, since) = open.expect("open");
                        prop_assert_eq!(state, AlertState::Pending);
                        prop_assert!(now - since.timestamp() >= for_s as i64);
                        prop_assert!(breach_since.is_some_and(|b| now - b >= for_s as i64));
                        open = Some((AlertState::Firing, since));
                    }
                    Step::Resolve => {
                        prop_assert_eq!(open.map(|o| o.0), Some(AlertState::Firing));
                        open = None;
                    }
                    Step::Discard => {
                        prop_assert_eq!(open.map(|o| o.0), Some(AlertState::Pending));
                        open = None;
                    }
                }
            }
        }
    }
}
