//! Rollup maintenance. Every accepted sample (stored, or filtered and only shown live) is
//! folded in memory into its 1-minute bucket, and a job merges the minutes that have settled
//! into storage every `flush_interval`; shutdown and exports merge everything. The hour and
//! day buckets are derived from the minute buckets at flush time: folding is exact, so they
//! equal the rollups of the samples. A sample costs one map update on the ingest path; a
//! point's series is looked up once for all its fields.
//!
//! A minute settles [`SETTLE_SECONDS`] after it ends: until then its bucket is still filling,
//! and merging it at every flush rewrote the same minute, hour and day rows six times a
//! minute (at 10,000 devices that was most of the database's time). So storage sees each
//! minute bucket once, and one merge per minute into each hour and day bucket.
//!
//! Deltas that storage refused are kept and retried at the next flush, up to
//! [`MAX_UNFLUSHED`]; queries see them, and the minutes still gathering, as if stored. What a
//! crash loses is what had not been merged: the current minute and the settled ones of the
//! last flush interval. The raw rows stored meanwhile are durable; the rollups miss them.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use hashbrown::Equivalent;
use homepot_core::Point;
use homepot_core::rollup::{Aggregate, Tier, rebucket, samples};
use homepot_storage::{RollupDelta, SeriesKey, Store};

/// Deltas kept for retry while storage refuses them; beyond this the oldest are dropped.
pub(crate) const MAX_UNFLUSHED: usize = 1_000_000;

/// Deltas merged per storage transaction.
const FLUSH_CHUNK: usize = 4_096;

/// How long after its end a minute is merged: samples stamped at the end of a minute are
/// still on their way through the pipeline for a moment.
pub(crate) const SETTLE_SECONDS: i64 = 10;

/// Minutes stamped further ahead of the clock than this are merged at the next flush rather
/// than held until they settle, so a device with a wrong clock cannot pin memory.
const HOLD_AHEAD_SECONDS: i64 = 120;

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

/// Which gathered minutes a flush merges.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flush {
    /// Every one: at shutdown, and before exports and retention read storage.
    All,
    /// Those settled at this time (Unix seconds): the periodic job.
    Settled(i64),
}

impl Flush {
    /// Whether the minute starting at `start` stays gathering.
    fn holds(self, start: i64) -> bool {
        match self {
            Flush::All => false,
            Flush::Settled(now_s) => {
                start >= Tier::Minute.bucket_start(now_s - SETTLE_SECONDS) && start <= now_s + HOLD_AHEAD_SECONDS
            }
        }
    }
}

/// A series' minutes taken for a flush: `(start, aggregate)` pairs.
type TakenSeries = (Arc<SeriesKey>, Vec<(i64, Aggregate)>);

/// What gathers between two flushes. The maps hash with foldhash: they are bounded by the
/// series accepted in about a minute, which the live view's series limits bound per key.
#[derive(Debug, Default)]
struct Gathering {
    /// Each point series seen, with its fields' series ids.
    points: hashbrown::HashMap<PointSeries, Vec<(String, u32)>>,
    /// Every series id's key; shared, so that a flush copies them outside the lock.
    keys: Vec<Arc<SeriesKey>>,
    /// 1-minute buckets by series id and start.
    minutes: hashbrown::HashMap<(u32, i64), Aggregate>,
    /// Drained but not yet stored, oldest first, in chunks of at most [`FLUSH_CHUNK`]: being
    /// written, or refused and waiting for a retry.
    unflushed: VecDeque<Arc<[RollupDelta]>>,
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
                    self.keys.push(Arc::new(SeriesKey {
                        name: point.name().to_owned(),
                        tags: point.tags().to_vec(),
                        field: field.to_owned(),
                    }));
                    fields.push((field.to_owned(), id));
                    id
                }
            };
            let sample = Aggregate::sample(value, point.timestamp_ns());
            self.minutes.entry((id, minute)).and_modify(|a| a.merge(&sample)).or_insert(sample);
        }
    }

    /// Takes the minutes that `flush` does not hold, grouped by series. Series ids stay as
    /// they are while most are in use (a steady fleet keeps every one), and are renumbered
    /// once more than half are gone.
    fn take(&mut self, flush: Flush) -> Vec<TakenSeries> {
        let mut per_series: HashMap<u32, Vec<(i64, Aggregate)>> = HashMap::new();
        for ((id, start), aggregate) in self.minutes.extract_if(|(_, start), _| !flush.holds(*start)) {
            per_series.entry(id).or_default().push((start, aggregate));
        }
        let taken =
            per_series.into_iter().map(|(id, minutes)| (Arc::clone(&self.keys[id as usize]), minutes)).collect();
        if self.minutes.is_empty() {
            self.points.clear();
            self.keys.clear();
        } else if self.minutes.len() * 2 < self.keys.len() {
            self.renumber();
        }
        taken
    }

    /// Forgets the series no minute refers to any more.
    fn renumber(&mut self) {
        let mut new_ids: HashMap<u32, u32> = HashMap::new();
        let mut keys = Vec::new();
        let minutes = std::mem::take(&mut self.minutes);
        for ((id, start), aggregate) in minutes {
            let new_id = *new_ids.entry(id).or_insert_with(|| {
                keys.push(Arc::clone(&self.keys[id as usize]));
                u32::try_from(keys.len() - 1).unwrap_or(u32::MAX)
            });
            self.minutes.insert((new_id, start), aggregate);
        }
        self.points.clear();
        for (id, key) in keys.iter().enumerate() {
            let fields = self.points.entry_ref(&PointRef { name: &key.name, tags: &key.tags }).or_default();
            fields.push((key.field.clone(), u32::try_from(id).unwrap_or(u32::MAX)));
        }
        self.keys = keys;
    }

    fn unflushed(&self) -> impl Iterator<Item = &RollupDelta> {
        self.unflushed.iter().flat_map(|chunk| chunk.iter())
    }
}

/// The deltas of all three tiers for taken minutes.
fn deltas(taken: Vec<TakenSeries>) -> Vec<RollupDelta> {
    let mut deltas = Vec::new();
    for (key, minutes) in taken {
        for tier in [Tier::Hour, Tier::Day] {
            for (start, aggregate) in rebucket(minutes.iter().copied(), tier.seconds()) {
                deltas.push(RollupDelta { series: SeriesKey::clone(&key), tier, start, aggregate });
            }
        }
        for (start, aggregate) in minutes {
            deltas.push(RollupDelta { series: SeriesKey::clone(&key), tier: Tier::Minute, start, aggregate });
        }
    }
    deltas
}

/// The rollups gathering in memory.
#[derive(Debug, Default)]
pub(crate) struct Rollups {
    gathering: Mutex<Gathering>,
    /// One flush at a time: the job's and the one at shutdown.
    flushing: tokio::sync::Mutex<()>,
    /// Held for writing while a flush moves minutes to the unflushed deltas, and while it
    /// stores deltas and forgets them; for reading while a query reads storage and the
    /// unstored deltas: a query sees every delta exactly once.
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

    /// Merges the minutes `flush` selects, and any refused before, into storage; whether all
    /// of them are stored now. On failure the deltas stay for the next flush.
    pub(crate) async fn flush(&self, store: &dyn Store, flush: Flush) -> bool {
        let _one_at_a_time = self.flushing.lock().await;
        let pending = {
            let _storing = self.storing.write().await;
            // The lock that ingest takes is held only to take the minutes out; the deltas, with
            // their copies of the series keys, are built outside it.
            let taken = self.gathering().take(flush);
            let deltas = deltas(taken);
            let mut gathering = self.gathering();
            for chunk in deltas.chunks(FLUSH_CHUNK) {
                gathering.unflushed.push_back(chunk.into());
            }
            let excess = gathering.unflushed().count().saturating_sub(MAX_UNFLUSHED);
            let mut dropped = 0;
            while dropped < excess {
                let Some(oldest) = gathering.unflushed.pop_front() else { break };
                dropped += oldest.len();
            }
            if dropped > 0 {
                gathering.dropped += dropped as u64;
                tracing::warn!(dropped = gathering.dropped, "rollup deltas dropped: storage refused them too long");
            }
            gathering.unflushed.len()
        };
        // In transactions of a bounded size: one of every delta of a large fleet held SQLite's
        // write lock for seconds, and ingest waited behind it (or timed out with 503).
        for _ in 0..pending {
            // Only this flush takes from `unflushed`, so its front is the oldest chunk.
            let Some(chunk) = self.gathering().unflushed.front().cloned() else { break };
            let _storing = self.storing.write().await;
            if let Err(error) = store.merge_rollups(&chunk).await {
                let gathering = self.gathering();
                let deltas = gathering.unflushed().count();
                tracing::warn!(%error, deltas, dropped = gathering.dropped, "rollups not stored; retrying at the next flush");
                return false;
            }
            self.gathering().unflushed.pop_front();
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
            gathering.keys.iter().map(|key| &**key).chain(gathering.unflushed().map(|d| &d.series)).cloned().collect();
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
            .map(|key| &**key)
            .chain(gathering.unflushed().map(|d| &d.series))
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
            .unflushed()
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
    fn a_settled_flush_holds_the_current_minute_and_forgets_silent_series() {
        let mut gathering = Gathering::default();
        let point = |name: &str, second: i64| {
            let fields = vec![("value".to_owned(), FieldValue::Float(1.0))];
            Point::new(name.into(), vec![], fields, second * 1_000_000_000, MetricType::Gauge).unwrap()
        };
        let now_s = 600 + 5;
        for name in ["a", "b", "c"] {
            gathering.fold(&point(name, 0));
        }
        gathering.fold(&point("b", 600));
        let taken = gathering.take(Flush::Settled(now_s));
        let mut names: Vec<&str> = taken.iter().map(|(key, _)| key.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b", "c"], "minute 0 has settled");
        assert_eq!(gathering.keys.len(), 1, "only b still gathers: the silent series are forgotten");
        gathering.fold(&point("b", 630));
        assert_eq!(gathering.minutes.len(), 1);
        assert_eq!(gathering.minutes.values().next().map(|a| a.count), Some(2), "b keeps one bucket");
        assert!(gathering.take(Flush::Settled(now_s)).is_empty(), "the current minute is held");
        assert_eq!(gathering.take(Flush::All).len(), 1);
        assert!(gathering.keys.is_empty() && gathering.points.is_empty());
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
        let mut deltas: Vec<(Tier, i64, u64, f64)> = deltas(gathering.take(Flush::All))
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
        assert!(gathering.take(Flush::All).is_empty(), "a drained gathering starts afresh");
    }
}
