//! Rollup maintenance. Every accepted sample (stored, or filtered and only shown live) is
//! folded in memory into its 1-minute bucket, and a job merges what has gathered into
//! storage every `flush_interval`, and once more at shutdown. The hour and day buckets are
//! derived from the minute buckets at flush time: folding is exact, so they equal the
//! rollups of the samples. A sample costs one map update on the ingest path; a point's
//! series is looked up once for all its fields; storage sees one row per series and bucket
//! per flush, however many samples arrived.
//!
//! Deltas that storage refused are kept and retried at the next flush, up to
//! [`MAX_UNFLUSHED`]; queries see them, and the ones still gathering, as if stored. What a
//! crash loses is the last flush interval's deltas: the raw rows stored meanwhile are
//! durable, the rollups of that interval miss them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hashbrown::Equivalent;
use homepot_core::Point;
use homepot_core::rollup::{Aggregate, Tier, rebucket, samples};
use homepot_storage::{RollupDelta, SeriesKey, Store};

/// Deltas kept for retry while storage refuses them; beyond this the oldest are dropped.
pub(crate) const MAX_UNFLUSHED: usize = 1_000_000;

/// Deltas merged per storage transaction.
const FLUSH_CHUNK: usize = 4_096;

/// A point's series (name and tags) as gathered: its fields' rollup series ids.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PointSeries {
    name: String,
    tags: Vec<(String, String)>,
}

/// A point's series by borrowed parts, to find it without allocating.
struct PointRef<'a> {
    name: &'a str,
    tags: &'a [(String, String)],
}

// Hashes exactly as `PointSeries`'s derived `Hash`: its fields, in order.
impl Hash for PointRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.tags.hash(state);
    }
}

impl Equivalent<PointSeries> for PointRef<'_> {
    fn equivalent(&self, key: &PointSeries) -> bool {
        self.name == key.name && self.tags == key.tags.as_slice()
    }
}

impl From<&PointRef<'_>> for PointSeries {
    fn from(series: &PointRef<'_>) -> Self {
        Self { name: series.name.to_owned(), tags: series.tags.to_vec() }
    }
}

/// What gathers between two flushes. The maps hash with foldhash: they are rebuilt at every
/// flush and bounded by the series accepted in one interval, which the live view's series
/// limits bound per key.
#[derive(Debug, Default)]
struct Gathering {
    /// Each point series seen, with its fields' series ids.
    points: hashbrown::HashMap<PointSeries, Vec<(String, u32)>>,
    /// Every series id's key.
    keys: Vec<SeriesKey>,
    /// 1-minute buckets by series id and start.
    minutes: hashbrown::HashMap<(u32, i64), Aggregate>,
    /// Drained but not yet stored: being written, or refused and waiting for a retry.
    unflushed: Vec<RollupDelta>,
    dropped: u64,
}

impl Gathering {
    fn fold(&mut self, point: &Point) {
        let minute = Tier::Minute.bucket_start(point.timestamp_ns().div_euclid(1_000_000_000));
        let fields = self.points.entry_ref(&PointRef { name: point.name(), tags: point.tags() }).or_default();
        for (field, value) in samples(point) {
            let id = match fields.iter().find(|(f, _)| f == field) {
                Some((_, id)) => *id,
                None => {
                    let id = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
                    self.keys.push(SeriesKey {
                        name: point.name().to_owned(),
                        tags: point.tags().to_vec(),
                        field: field.to_owned(),
                    });
                    fields.push((field.to_owned(), id));
                    id
                }
            };
            let sample = Aggregate::sample(value, point.timestamp_ns());
            self.minutes.entry((id, minute)).and_modify(|a| a.merge(&sample)).or_insert(sample);
        }
    }

    /// Every gathered bucket as deltas of all three tiers; the gathering starts afresh.
    fn drain(&mut self) -> Vec<RollupDelta> {
        let mut per_series: HashMap<u32, Vec<(i64, Aggregate)>> = HashMap::new();
        for ((id, start), aggregate) in self.minutes.drain() {
            per_series.entry(id).or_default().push((start, aggregate));
        }
        let mut deltas = Vec::new();
        for (id, minutes) in per_series {
            let key = &self.keys[id as usize];
            for tier in [Tier::Hour, Tier::Day] {
                for (start, aggregate) in rebucket(minutes.iter().copied(), tier.seconds()) {
                    deltas.push(RollupDelta { series: key.clone(), tier, start, aggregate });
                }
            }
            for (start, aggregate) in minutes {
                deltas.push(RollupDelta { series: key.clone(), tier: Tier::Minute, start, aggregate });
            }
        }
        self.points.clear();
        self.keys.clear();
        deltas
    }
}

/// The rollups gathering in memory.
#[derive(Debug, Default)]
pub(crate) struct Rollups {
    gathering: Mutex<Gathering>,
    /// One flush at a time: the job's and the one at shutdown.
    flushing: tokio::sync::Mutex<()>,
    /// Held for writing while a flush stores deltas and forgets them, for reading while a
    /// query reads storage and the unstored deltas: a query sees every delta exactly once.
    storing: tokio::sync::RwLock<()>,
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
            gathering.fold(point);
        }
    }

    /// Merges everything gathered into storage; whether all of it is stored now. On failure
    /// the deltas stay for the next flush.
    pub(crate) async fn flush(&self, store: &dyn Store) -> bool {
        let _one_at_a_time = self.flushing.lock().await;
        let deltas = {
            let mut gathering = self.gathering();
            let drained = gathering.drain();
            let mut deltas = std::mem::take(&mut gathering.unflushed);
            deltas.extend(drained);
            gathering.unflushed.clone_from(&deltas);
            deltas
        };
        if deltas.is_empty() {
            return true;
        }
        // In transactions of a bounded size: one of every delta of a large fleet held SQLite's
        // write lock for seconds, and ingest waited behind it (or timed out with 503).
        for chunk in deltas.chunks(FLUSH_CHUNK) {
            let _storing = self.storing.write().await;
            if let Err(error) = store.merge_rollups(chunk).await {
                let mut gathering = self.gathering();
                let excess = gathering.unflushed.len().saturating_sub(MAX_UNFLUSHED);
                if excess > 0 {
                    gathering.unflushed.drain(..excess);
                    gathering.dropped += excess as u64;
                }
                tracing::warn!(%error, deltas = gathering.unflushed.len(), dropped = gathering.dropped, "rollups not stored; retrying at the next flush");
                return false;
            }
            // Only this flush adds to `unflushed`, so what it wrote is its first part.
            let mut gathering = self.gathering();
            let written = chunk.len().min(gathering.unflushed.len());
            gathering.unflushed.drain(..written);
        }
        true
    }

    /// Waits for a flush under way to finish, and keeps others from starting while held: so
    /// that shutdown can stop the jobs without cutting one off after storage took its deltas
    /// but before they were marked stored (they would be merged twice).
    pub(crate) async fn hold_flushes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.flushing.lock().await
    }

    /// Keeps flushes from storing while held, so storage and the unstored deltas read under
    /// it add up to each sample exactly once.
    pub(crate) async fn consistent(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.storing.read().await
    }

    /// Every series gathering or waiting to be stored.
    pub(crate) fn unstored_keys(&self) -> Vec<SeriesKey> {
        let gathering = self.gathering();
        let mut keys: Vec<SeriesKey> =
            gathering.keys.iter().chain(gathering.unflushed.iter().map(|d| &d.series)).cloned().collect();
        keys.sort();
        keys.dedup();
        keys
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
        let fields = gathering.points.get(&PointRef { name: &series.name, tags: &series.tags });
        let id = fields.and_then(|fields| fields.iter().find(|(f, _)| *f == series.field)).map(|(_, id)| *id);
        if let Some(id) = id {
            let minutes = gathering.minutes.iter().filter(|((s, _), _)| *s == id).map(|((_, start), a)| (*start, *a));
            found.extend(rebucket(minutes, tier.seconds()).into_iter().filter(|(start, _)| in_range(*start)));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use homepot_core::{FieldValue, MetricType};

    use super::*;

    #[test]
    fn a_borrowed_series_hashes_as_its_key() {
        let key = PointSeries { name: "cpu".into(), tags: vec![("host".into(), "a".into())] };
        let borrowed = PointRef { name: "cpu", tags: &key.tags };
        let hash = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&|h| key.hash(h)), hash(&|h| borrowed.hash(h)));
        assert!(borrowed.equivalent(&key));
    }

    #[test]
    fn hours_and_days_are_folded_from_the_minutes() {
        let mut gathering = Gathering::default();
        let point = |v: f64, minute: i64| {
            Point::new(
                "cpu".into(),
                vec![],
                vec![("value".into(), FieldValue::Float(v))],
                minute * 60_000_000_000,
                MetricType::Gauge,
            )
            .unwrap()
        };
        for (v, minute) in [(1.0, 0), (2.0, 0), (4.0, 1), (8.0, 61)] {
            gathering.fold(&point(v, minute));
        }
        let mut deltas: Vec<(Tier, i64, u64, f64)> = gathering
            .drain()
            .into_iter()
            .map(|d| (d.tier, d.start, d.aggregate.count, d.aggregate.sum.to_f64()))
            .collect();
        deltas.sort_by_key(|(tier, start, _, _)| (*tier, *start));
        assert_eq!(
            deltas,
            [
                (Tier::Minute, 0, 2, 3.0),
                (Tier::Minute, 60, 1, 4.0),
                (Tier::Minute, 3_660, 1, 8.0),
                (Tier::Hour, 0, 3, 7.0),
                (Tier::Hour, 3_600, 1, 8.0),
                (Tier::Day, 0, 4, 15.0),
            ]
        );
        assert!(gathering.drain().is_empty(), "a drained gathering starts afresh");
    }
}
