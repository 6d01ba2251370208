//! Exactly-once ingest. A sender that names a request with an idempotency key gets, for a
//! repeat within the window, the answer the first request got, and nothing is stored twice.
//!
//! The key's receipt is committed in the same transaction as the data it brought
//! (`NewHealthCheck::receipt`, `MetricStore::insert_points`), so "stored" and "remembered"
//! cannot come apart: a crash after the commit and before the answer leaves both, a crash
//! before it neither. Within one process, a repeat that arrives while the first is still in
//! flight waits for it (one async lock per key in use) and then reads its receipt. Across
//! processes on one database, storage refuses a receipt whose key is still taken
//! (`StorageError::Conflict`), and the loser answers from the winner's receipt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use homepot_core::{ErrorKind, FieldError, LocSegment, ValidationErrors};
use homepot_storage::{HealthCheckId, NewReceipt, Receipt, Store};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::pipeline::{HealthWrite, PointsWrite};

/// Longest key accepted: a UUID is 36 characters; leave room for a sender's own scheme.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A request's idempotency key within its scope: whose keys these are (a device, or a key's
/// fingerprint), so one sender can neither see nor collide with another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    scope: String,
    key: String,
}

impl IdempotencyKey {
    /// The key `raw` (the `Idempotency-Key` header, say) in `scope`.
    ///
    /// # Errors
    /// [`EngineError::Invalid`] at `["header", "Idempotency-Key"]` when `raw` is empty, longer
    /// than [`MAX_IDEMPOTENCY_KEY_LEN`] or holds anything but visible ASCII.
    pub fn new(scope: impl Into<String>, raw: &str) -> Result<Self, EngineError> {
        let problem = if raw.is_empty() {
            Some((ErrorKind::TooShort, "must not be empty".to_owned()))
        } else if raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
            Some((ErrorKind::TooLong, format!("at most {MAX_IDEMPOTENCY_KEY_LEN} characters")))
        } else if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            Some((ErrorKind::BadFormat, "visible ASCII characters only".to_owned()))
        } else {
            None
        };
        if let Some((kind, message)) = problem {
            let error = FieldError::new(vec![LocSegment::from("Idempotency-Key")], kind, message);
            return Err(EngineError::invalid("header", ValidationErrors::single(error)));
        }
        Ok(Self { scope: scope.into(), key: raw.to_owned() })
    }

    /// The key as the sender gave it.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// What a request was answered, as a receipt keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    /// A stored health check: its id is the receipt's `health_id`.
    HealthStored,
    /// A health check the SmartDataFilter skipped, answered with the last stored one.
    HealthFiltered(i64),
    /// Points, of which this many were stored.
    Points(usize),
}

impl Answer {
    fn encode(self) -> String {
        serde_json::to_string(&self).expect("answers serialise")
    }

    fn decode(receipt: &Receipt) -> Option<Self> {
        serde_json::from_str(&receipt.answer).ok()
    }
}

/// A receipt to be: written with the data of the request it names.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    key: IdempotencyKey,
    accepted_at: DateTime<Utc>,
    /// Where the window of an earlier use of the key ends.
    cutoff: DateTime<Utc>,
}

impl Ticket {
    pub(crate) fn receipt(&self, answer: Answer) -> NewReceipt {
        NewReceipt {
            scope: self.key.scope.clone(),
            key: self.key.key.clone(),
            accepted_at: self.accepted_at,
            answer: answer.encode(),
            replaces_before: self.cutoff,
        }
    }
}

/// A repeat's answers, rebuilt from its receipt.
#[derive(Debug, Clone)]
pub(crate) struct Repeat(Receipt);

impl Repeat {
    pub(crate) fn accepted_at(&self) -> DateTime<Utc> {
        self.0.accepted_at
    }

    pub(crate) fn health(&self) -> Result<HealthWrite, EngineError> {
        match (Answer::decode(&self.0), self.0.health_id) {
            (Some(Answer::HealthStored), Some(id)) => Ok(HealthWrite::Stored(id)),
            (Some(Answer::HealthFiltered(id)), _) => Ok(HealthWrite::Filtered(HealthCheckId(id))),
            _ => Err(self.misused()),
        }
    }

    pub(crate) fn points(&self) -> Result<PointsWrite, EngineError> {
        match Answer::decode(&self.0) {
            Some(Answer::Points(stored)) => Ok(PointsWrite { stored }),
            _ => Err(self.misused()),
        }
    }

    /// The key was first used for another kind of request.
    fn misused(&self) -> EngineError {
        EngineError::Conflict("Idempotency-Key was already used for a different request".to_owned())
    }
}

/// Holds a key's lock while its request runs.
pub(crate) struct Claim<'a> {
    receipts: &'a Receipts,
    map_key: (String, String),
    _held: tokio::sync::OwnedMutexGuard<()>,
    pub(crate) ticket: Ticket,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut inflight = self.receipts.inflight();
        // Only the map and this claim hold the lock: no repeat is waiting for it.
        if inflight.get(&self.map_key).is_some_and(|lock| Arc::strong_count(lock) <= 2) {
            inflight.remove(&self.map_key);
        }
    }
}

/// What a keyed request is to do.
pub(crate) enum Claimed<'a> {
    /// Run it, and store `ticket`'s receipt with its data.
    Fresh(Claim<'a>),
    /// Answer it as the first was answered.
    Repeat(Repeat),
}

/// Each key in flight, with the lock its requests take turns on.
type Inflight = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// Receipts of keyed requests: the window, and the keys in flight.
#[derive(Debug)]
pub(crate) struct Receipts {
    store: Arc<dyn Store>,
    window: TimeDelta,
    inflight: Mutex<Inflight>,
}

impl Receipts {
    pub(crate) fn new(store: Arc<dyn Store>, window: Duration) -> Self {
        Self { store, window: TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX), inflight: Mutex::default() }
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for any request with the same key to finish, then looks for its receipt.
    pub(crate) async fn claim(&self, key: &IdempotencyKey, now: DateTime<Utc>) -> Result<Claimed<'_>, EngineError> {
        let map_key = (key.scope.clone(), key.key.clone());
        let lock = self.inflight().entry(map_key.clone()).or_default().clone();
        let held = lock.lock_owned().await;
        let ticket = Ticket { key: key.clone(), accepted_at: now, cutoff: self.cutoff(now) };
        let claim = Claim { receipts: self, map_key, _held: held, ticket };
        match self.repeat(key, now).await? {
            Some(repeat) => Ok(Claimed::Repeat(repeat)),
            None => Ok(Claimed::Fresh(claim)),
        }
    }

    /// The receipt of an earlier use of `key` within the window, if there is one: after a
    /// fresh request's write failed because another instance took the key meanwhile, what
    /// that instance answered.
    pub(crate) async fn repeat(&self, key: &IdempotencyKey, now: DateTime<Utc>) -> Result<Option<Repeat>, EngineError> {
        Ok(self.store.receipt(&key.scope, &key.key).await?.filter(|r| r.accepted_at >= self.cutoff(now)).map(Repeat))
    }

    /// Receipts older than the window are forgotten.
    pub(crate) fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::new("s", "3f1c-9a").is_ok());
        for bad in ["", "with space", "ünicode", &"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)] {
            assert!(matches!(IdempotencyKey::new("s", bad), Err(EngineError::Invalid { part: "header", .. })), "{bad}");
        }
    }

    #[test]
    fn answers_round_trip_through_their_encoding() {
        for answer in [Answer::HealthStored, Answer::HealthFiltered(7), Answer::Points(12)] {
            let receipt = Receipt { accepted_at: DateTime::UNIX_EPOCH, answer: answer.encode(), health_id: None };
            assert_eq!(Answer::decode(&receipt), Some(answer));
        }
    }
}
