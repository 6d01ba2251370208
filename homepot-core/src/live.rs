//! The live view of metrics (the metrics service's metrics store): the latest value of every field of
//! every series, where a series is a name plus its sorted tags. Bounded three ways, all
//! enforced here: series not updated within the retention are dropped, at most `max_series`
//! exist at once, and each owner (the API key that created a series) holds at most
//! `max_series_per_owner`. When full, points of *new* series are refused (and counted) while
//! known series keep updating, so a burst of unique tag values cannot flush the series
//! everyone watches, and one client cannot take the whole store. Pure: the caller passes the
//! time.
//!
//! Memory per series is kept small: every name, tag and field string is held once, shared
//! between series (`Arc<str>`), and a point finds its series without building a key.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::Equivalent;

use crate::metric::{FieldValue, MetricType, Point};

/// A series' identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesKey {
    /// Metric name.
    pub name: Arc<str>,
    /// Tags, sorted by key.
    pub tags: Box<[(Arc<str>, Arc<str>)]>,
}

/// Hashes a series identity the same way whether it is stored or read from a point.
fn hash_identity<'a, H: Hasher>(name: &str, tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>, state: &mut H) {
    name.hash(state);
    state.write_usize(tags.len());
    for (key, value) in tags {
        key.hash(state);
        value.hash(state);
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_identity(&self.name, self.tags.iter().map(|(k, v)| (&**k, &**v)), state);
    }
}

/// The shared copy of `text` in `strings`.
fn intern(strings: &mut hashbrown::HashSet<Arc<str>, RandomState>, text: &str) -> Arc<str> {
    Arc::clone(strings.get_or_insert_with(text, |text| Arc::from(text)))
}

/// A point's series identity, borrowed from the point: looking a series up allocates nothing.
#[derive(Clone, Copy)]
struct PointKey<'a>(&'a Point);

impl Hash for PointKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_identity(self.0.name(), self.0.tags().iter().map(|(k, v)| (k.as_str(), v.as_str())), state);
    }
}

impl PartialEq for PointKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name() && self.0.tags() == other.0.tags()
    }
}

impl Eq for PointKey<'_> {}

impl Equivalent<SeriesKey> for PointKey<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        *key.name == *self.0.name()
            && key.tags.len() == self.0.tags().len()
            && key.tags.iter().zip(self.0.tags()).all(|((k, v), (pk, pv))| **k == **pk && **v == **pv)
    }
}

/// The latest state of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Latest value of each field, in first-seen order.
    pub fields: Vec<(Arc<str>, FieldValue)>,
    /// What the metric measures.
    pub metric_type: MetricType,
    /// Time of the newest point, ns since the epoch.
    pub timestamp_ns: i64,
    /// When the series was last updated (server time, ns), for retention.
    pub updated_ns: i64,
    /// Who created the series; it counts against their limit until it expires. `None` for
    /// series the server derives itself (from health checks of registered devices).
    pub owner: Option<Arc<str>>,
}

/// Limits of a [`LiveStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Series not updated for this long are dropped.
    pub retention_ns: i64,
    /// Most series held at once.
    pub max_series: usize,
    /// Most series one owner holds at once.
    pub max_series_per_owner: usize,
}

impl Default for LiveLimits {
    /// The metrics service's defaults (300 s retention, 100,000 series), and a quarter of the series per
    /// owner.
    fn default() -> Self {
        Self { retention_ns: 300 * 1_000_000_000, max_series: 100_000, max_series_per_owner: 25_000 }
    }
}

/// A batch would take its owner over [`LiveLimits::max_series_per_owner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this key holds {held} live series and the points would add {new}, over the limit of {limit} per key; \
     reuse tag values or wait for idle series to expire"
)]
pub struct SeriesLimitExceeded {
    /// Series the owner holds now.
    pub held: usize,
    /// Distinct new series in the batch.
    pub new: usize,
    /// The limit.
    pub limit: usize,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveUpdate {
    /// Points applied.
    pub applied: usize,
    /// Points of new series refused because the store was full.
    pub refused: usize,
}

/// The live store.
#[derive(Debug, Default)]
pub struct LiveStore {
    // SipHash (std's RandomState): tag values come from clients, who must not be able to
    // aim them at one bucket.
    series: hashbrown::HashMap<SeriesKey, Series, RandomState>,
    /// Every name, tag and field string in use, held once; dropped when no series uses it.
    strings: hashbrown::HashSet<Arc<str>, RandomState>,
    /// Series held per owner; owners holding none are removed.
    held: HashMap<Arc<str>, usize>,
    limits: LiveLimits,
}

impl LiveStore {
    /// An empty store.
    pub fn new(limits: LiveLimits) -> Self {
        Self {
            series: hashbrown::HashMap::default(),
            strings: hashbrown::HashSet::default(),
            held: HashMap::new(),
            limits,
        }
    }

    /// The stored key of a point's series, made of shared strings.
    fn key_of(&mut self, point: &Point) -> SeriesKey {
        let strings = &mut self.strings;
        let name = intern(strings, point.name());
        let tags = point.tags().iter().map(|(k, v)| (intern(strings, k), intern(strings, v))).collect();
        SeriesKey { name, tags }
    }

    /// Series `owner` holds.
    pub fn held_by(&self, owner: &str) -> usize {
        self.held.get(owner).copied().unwrap_or(0)
    }

    /// Checks, before a batch is stored, that its new series fit its owner's limit, so that
    /// a client learns of the limit instead of having points silently kept out of view.
    ///
    /// # Errors
    /// The owner's limit would be exceeded.
    pub fn admit(&self, owner: &str, points: &[Point]) -> Result<(), SeriesLimitExceeded> {
        let held = self.held_by(owner);
        let limit = self.limits.max_series_per_owner;
        // Cheap common case: even if every point were a new series, the batch would fit.
        if held.saturating_add(points.len()) <= limit {
            return Ok(());
        }
        let mut new = std::collections::HashSet::new();
        for point in points {
            if !self.series.contains_key(&PointKey(point)) {
                new.insert(PointKey(point));
            }
        }
        match held.saturating_add(new.len()) <= limit {
            true => Ok(()),
            false => Err(SeriesLimitExceeded { held, new: new.len(), limit }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> LiveLimits {
        self.limits
    }

    /// How many series are held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Applies points that `owner` sent (`None`: the server's own, not limited per owner),
    /// received at `now_ns`. A point older than its series' newest point does not move the
    /// live view back in time (it is still in history).
    pub fn insert(&mut self, owner: Option<&str>, points: &[Point], now_ns: i64) -> LiveUpdate {
        let mut update = LiveUpdate::default();
        let mut owner_arc: Option<Arc<str>> = None;
        // One sweep per call: when full, a batch of new series must not scan the store once
        // per point.
        let mut swept = false;
        for point in points {
            if !self.series.contains_key(&PointKey(point)) {
                if self.series.len() >= self.limits.max_series && !swept {
                    self.evict_expired(now_ns);
                    swept = true;
                }
                if self.series.len() >= self.limits.max_series
                    || owner.is_some_and(|o| self.held_by(o) >= self.limits.max_series_per_owner)
                {
                    update.refused += 1;
                    continue;
                }
                if let Some(owner) = owner {
                    let owner = owner_arc.get_or_insert_with(|| match self.held.get_key_value(owner) {
                        Some((known, _)) => Arc::clone(known),
                        None => Arc::from(owner),
                    });
                    *self.held.entry(Arc::clone(owner)).or_insert(0) += 1;
                }
                let key = self.key_of(point);
                let series = Series {
                    fields: Vec::with_capacity(point.fields().len()),
                    metric_type: point.metric_type(),
                    timestamp_ns: i64::MIN,
                    updated_ns: now_ns,
                    owner: owner_arc.clone(),
                };
                self.series.insert(key, series);
            }
            let Self { series, strings, .. } = &mut *self;
            let Some(series) = series.get_mut(&PointKey(point)) else { continue };
            series.updated_ns = now_ns;
            update.applied += 1;
            if point.timestamp_ns() < series.timestamp_ns {
                continue;
            }
            series.timestamp_ns = point.timestamp_ns();
            series.metric_type = point.metric_type();
            for (name, value) in point.fields() {
                match series.fields.iter_mut().find(|(known, _)| **known == **name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => series.fields.push((intern(strings, name), value.clone())),
                }
            }
        }
        update
    }

    /// Drops series not updated within the retention; returns how many.
    pub fn evict_expired(&mut self, now_ns: i64) -> usize {
        let cutoff = now_ns.saturating_sub(self.limits.retention_ns);
        self.remove_where(|_, s| s.updated_ns < cutoff)
    }

    /// Removes the series `drop` selects, releasing them from their owners' counts.
    fn remove_where(&mut self, mut drop: impl FnMut(&SeriesKey, &Series) -> bool) -> usize {
        let before = self.series.len();
        let held = &mut self.held;
        self.series.retain(|key, series| {
            if !drop(key, series) {
                return true;
            }
            if let Some(owner) = &series.owner
                && let Some(count) = held.get_mut(owner)
            {
                *count -= 1;
                if *count == 0 {
                    held.remove(owner);
                }
            }
            false
        });
        let removed = before - self.series.len();
        if removed > 0 {
            // Strings only this set still holds belonged to the removed series.
            self.strings.retain(|text| Arc::strong_count(text) > 1);
        }
        removed
    }

    /// Live series, optionally only those named `name`, ordered by name then tags.
    pub fn series(&self, name: Option<&str>) -> Vec<(&SeriesKey, &Series)> {
        let mut found: Vec<_> = self.series.iter().filter(|(k, _)| name.is_none_or(|n| *k.name == *n)).collect();
        found.sort_by(|a, b| (&a.0.name, &a.0.tags).cmp(&(&b.0.name, &b.0.tags)));
        found
    }

    /// Live series named `name`, in no particular order: for scans that need no order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a SeriesKey, &'a Series)> + 'a {
        self.series.iter().filter(move |(k, _)| *k.name == *name)
    }

    /// Distinct metric names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.series.keys().map(|k| k.name.to_string()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Removes every series, or those named `name`; returns how many.
    pub fn clear(&mut self, name: Option<&str>) -> usize {
        self.remove_where(|k, _| name.is_none_or(|n| *k.name == *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::strategies::arb_point;
    use proptest::prelude::*;

    fn point(name: &str, tag: &str, value: f64, ts: i64) -> Point {
        Point::new(
            name.into(),
            vec![("host".into(), tag.into())],
            vec![("v".into(), FieldValue::Float(value))],
            ts,
            MetricType::Gauge,
        )
        .unwrap()
    }

    #[test]
    fn keeps_the_latest_value_per_series() {
        let mut live = LiveStore::new(LiveLimits::default());
        live.insert(
            Some("k"),
            &[point("cpu", "a", 1.0, 10), point("cpu", "b", 2.0, 10), point("cpu", "a", 3.0, 20)],
            0,
        );
        live.insert(Some("k"), &[point("cpu", "a", 9.0, 15)], 0);
        let series = live.series(Some("cpu"));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].1.fields, [("v".into(), FieldValue::Float(3.0))], "an older point does not win");
        assert_eq!(live.names(), ["cpu"]);
        assert_eq!(live.clear(Some("cpu")), 2);
        assert!(live.is_empty());
    }

    #[test]
    fn retention_and_capacity_are_enforced() {
        let limits = LiveLimits { retention_ns: 100, max_series: 2, max_series_per_owner: 2 };
        let mut live = LiveStore::new(limits);
        assert_eq!(live.insert(Some("k"), &[point("m", "a", 1.0, 0), point("m", "b", 1.0, 0)], 0).refused, 0);
        let update = live.insert(Some("k"), &[point("m", "c", 1.0, 0), point("m", "a", 2.0, 1)], 60);
        assert_eq!(update, LiveUpdate { applied: 1, refused: 1 }, "new series refused, known ones updated");
        // Once "b" expires, there is room again.
        assert_eq!(live.insert(Some("k"), &[point("m", "c", 1.0, 0)], 151).refused, 0);
        assert_eq!(live.series(None).iter().map(|(k, _)| &*k.tags[0].1).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(live.evict_expired(1_000), 2);
    }

    #[test]
    fn one_owner_cannot_take_the_whole_store() {
        let limits = LiveLimits { retention_ns: 100, max_series: 10, max_series_per_owner: 3 };
        let mut live = LiveStore::new(limits);
        let burst: Vec<Point> = (0..5).map(|i| point("m", &format!("h{i}"), 1.0, 0)).collect();
        let error = live.admit("greedy", &burst).unwrap_err();
        assert_eq!(error, SeriesLimitExceeded { held: 0, new: 5, limit: 3 });
        assert!(error.to_string().contains("over the limit of 3 per key"), "{error}");
        assert_eq!(live.insert(Some("greedy"), &burst, 0), LiveUpdate { applied: 3, refused: 2 });
        assert!(live.admit("greedy", &burst[..3]).is_ok(), "updates to series it holds are fine");
        assert!(live.admit("greedy", &burst[3..]).is_err());
        assert!(live.admit("other", &burst[3..]).is_ok(), "other owners are unaffected");
        assert_eq!(live.insert(Some("other"), &burst, 0), LiveUpdate { applied: 5, refused: 0 });
        assert_eq!(live.held_by("other"), 2, "series keep the owner that created them");
        assert_eq!(live.clear(None), 5);
        assert_eq!((live.held_by("greedy"), live.held_by("other")), (0, 0));
        assert!(live.strings.is_empty(), "no string outlives its series");
    }

    proptest! {
        /// A point finds the series stored for it: its borrowed key hashes and compares like
        /// the stored one, and no other point's key matches.
        #[test]
        fn a_point_finds_its_own_series(a in arb_point(), b in arb_point()) {
            use std::hash::BuildHasher;
            let mut live = LiveStore::new(LiveLimits::default());
            let key = live.key_of(&a);
            let hasher = RandomState::new();
            prop_assert_eq!(hasher.hash_one(PointKey(&a)), hasher.hash_one(&key));
            prop_assert!(PointKey(&a).equivalent(&key));
            let same = a.name() == b.name() && a.tags() == b.tags();
            prop_assert_eq!(PointKey(&b).equivalent(&key), same);
            drop(key);
            live.insert(None, &[a.clone(), b.clone()], 0);
            prop_assert_eq!(live.len(), if same { 1 } else { 2 });
            live.clear(None);
            prop_assert!(live.strings.is_empty());
        }

        #[test]
        fn never_exceeds_its_limit(points in proptest::collection::vec(arb_point(), 0..60), max in 1usize..10) {
            let limits = LiveLimits { retention_ns: 1_000, max_series: max, max_series_per_owner: max / 2 + 1 };
            let mut live = LiveStore::new(limits);
            for (i, chunk) in points.chunks(7).enumerate() {
                let owner = ["a", "b", "c"][i % 3];
                let update = live.insert(Some(owner), chunk, i as i64 * 100);
                prop_assert_eq!(update.applied + update.refused, chunk.len());
                prop_assert!(live.len() <= max);
                let held: usize = ["a", "b", "c"].iter().map(|o| live.held_by(o)).sum();
                prop_assert_eq!(held, live.len(), "every series counts for exactly one owner");
                prop_assert!(["a", "b", "c"].iter().all(|o| live.held_by(o) <= limits.max_series_per_owner));
            }
        }
    }
}
