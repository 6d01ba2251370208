//! Rollup maintenance. Every accepted sample (stored, or filtered and only shown live) is
//! folded in memory into its 1-minute, 1-hour and 1-day buckets, and a job merges what has
//! gathered into storage every `flush_interval`, and once more at shutdown. A sample costs a
//! few map updates on the ingest path; storage sees one row per series and bucket per flush,
//! however many samples arrived.
//!
//! Deltas that storage refused are kept and retried at the next flush, up to
//! [`MAX_UNFLUSHED`]; queries see them, and the ones still gathering, as if stored. What a
//! crash loses is the last flush interval's deltas: the raw rows stored meanwhile are
//! durable, the rollups of that interval miss them.

use std::hash::{Hash, Hasher, RandomState};
use std::sync::Mutex;

use hashbrown::Equivalent;
use homepot_core::Point;
use homepot_core::rollup::{Aggregate, Rollup, Tier, samples};
use homepot_storage::{RollupDelta, SeriesKey, Store};

/// Deltas kept for retry while storage refuses them; beyond this the oldest are dropped.
pub(crate) const MAX_UNFLUSHED: usize = 1_000_000;

/// A series named by borrowed parts, to find its interned id without allocating.
struct SeriesRef<'a> {
    name: &'a str,
    tags: &'a [(String, String)],
    field: &'a str,
}

// Hashes exactly as `SeriesKey`'s derived `Hash`: its fields, in order.
impl Hash for SeriesRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.tags.hash(state);
        self.field.hash(state);
    }
}

impl Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.name == key.name && self.field == key.field && self.tags == key.tags.as_slice()
    }
}

#[derive(Debug, Default)]
struct Gathering {
    /// Series seen since the last flush, and their ids in `buckets`.
    ids: hashbrown::HashMap<SeriesKey, u32, RandomState>,
    keys: Vec<SeriesKey>,
    buckets: Rollup<u32>,
    /// Drained but not yet stored: being written, or refused and waiting for a retry.
    unflushed: Vec<RollupDelta>,
    dropped: u64,
}

impl Gathering {
    fn id(&mut self, series: &SeriesRef<'_>) -> u32 {
        if let Some(id) = self.ids.get(series) {
            return *id;
        }
        let key =
            SeriesKey { name: series.name.to_owned(), tags: series.tags.to_vec(), field: series.field.to_owned() };
        let id = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        self.keys.push(key.clone());
        self.ids.insert(key, id);
        id
    }
}

/// The rollups gathering in memory.
#[derive(Debug, Default)]
pub(crate) struct Rollups {
    gathering: Mutex<Gathering>,
    /// One flush at a time: the job's and the one at shutdown.
    flushing: tokio::sync::Mutex<()>,
}

impl Rollups {
    fn gathering(&self) -> std::sync::MutexGuard<'_, Gathering> {
        // Every update leaves the maps consistent; a panic elsewhere cannot corrupt them.
        self.gathering.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Folds the numeric fields of accepted points into their buckets.
    pub(crate) fn observe(&self, points: &[Point]) {
        let mut gathering = self.gathering();
        for point in points {
            for (field, value) in samples(point) {
                let id = gathering.id(&SeriesRef { name: point.name(), tags: point.tags(), field });
                gathering.buckets.add(&id, point.timestamp_ns(), value);
            }
        }
    }

    /// Merges everything gathered into storage; whether all of it is stored now. On failure
    /// the deltas stay for the next flush.
    pub(crate) async fn flush(&self, store: &dyn Store) -> bool {
        let _one_at_a_time = self.flushing.lock().await;
        let deltas = {
            let mut gathering = self.gathering();
            let drained = gathering.buckets.drain();
            let mut deltas = std::mem::take(&mut gathering.unflushed);
            deltas.extend(drained.into_iter().map(|(id, tier, start, aggregate)| RollupDelta {
                series: gathering.keys[id as usize].clone(),
                tier,
                start,
                aggregate,
            }));
            // Ids restart with each flush, so the interner holds only the series of one interval.
            gathering.ids.clear();
            gathering.keys.clear();
            gathering.unflushed.clone_from(&deltas);
            deltas
        };
        if deltas.is_empty() {
            return true;
        }
        match store.merge_rollups(&deltas).await {
            Ok(()) => {
                let mut gathering = self.gathering();
                // Only this flush adds to `unflushed`, so what it wrote is its first part.
                let written = deltas.len().min(gathering.unflushed.len());
                gathering.unflushed.drain(..written);
                true
            }
            Err(error) => {
                let mut gathering = self.gathering();
                let excess = gathering.unflushed.len().saturating_sub(MAX_UNFLUSHED);
                if excess > 0 {
                    gathering.unflushed.drain(..excess);
                    gathering.dropped += excess as u64;
                }
                tracing::warn!(%error, deltas = deltas.len(), dropped = gathering.dropped, "rollups not stored; retrying at the next flush");
                false
            }
        }
    }

    /// The series gathering or waiting to be stored that are named one of `names`, of
    /// `field`, with every pair of `tags`.
    pub(crate) fn unstored_series(&self, names: &[&str], field: &str, tags: &[(String, String)]) -> Vec<SeriesKey> {
        let gathering = self.gathering();
        let matches = |key: &SeriesKey| {
            names.contains(&key.name.as_str()) && key.field == field && tags.iter().all(|pair| key.tags.contains(pair))
        };
        let mut found: Vec<SeriesKey> = gathering
            .keys
            .iter()
            .chain(gathering.unflushed.iter().map(|d| &d.series))
            .filter(|k| matches(k))
            .cloned()
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// Buckets of `series` in `tier` starting in `[from_s, to_s)` that storage does not have
    /// yet, in no order.
    pub(crate) fn unstored(&self, series: &SeriesKey, tier: Tier, from_s: i64, to_s: i64) -> Vec<(i64, Aggregate)> {
        let gathering = self.gathering();
        let in_range = |start: i64| start >= from_s && start < to_s;
        let mut found: Vec<(i64, Aggregate)> = gathering
            .unflushed
            .iter()
            .filter(|d| d.series == *series && d.tier == tier && in_range(d.start))
            .map(|d| (d.start, d.aggregate))
            .collect();
        if let Some(id) = gathering.ids.get(series) {
            found.extend(gathering.buckets.buckets_of(id, tier).filter(|(start, _)| in_range(*start)));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    #[test]
    fn a_borrowed_series_hashes_as_its_key() {
        let key = SeriesKey { name: "cpu".into(), tags: vec![("host".into(), "a".into())], field: "value".into() };
        let borrowed = SeriesRef { name: "cpu", tags: &key.tags, field: "value" };
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&|h| key.hash(h)), hash(&|h| borrowed.hash(h)));
        assert!(borrowed.equivalent(&key));
    }
}
