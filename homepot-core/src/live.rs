//! The live view of metrics (seed 04's metrics store): the latest value of every field of
//! every series, where a series is a name plus its sorted tags. Bounded two ways, both
//! enforced here: series not updated within the retention are dropped, and at most
//! `max_series` exist at once. When full, points of *new* series are refused (and counted)
//! while known series keep updating, so a burst of unique tag values cannot flush the series
//! everyone watches. Pure: the caller passes the time.

use std::collections::HashMap;

use crate::metric::{FieldValue, MetricType, Point};

/// A series' identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// Metric name.
    pub name: String,
    /// Tags, sorted by key.
    pub tags: Vec<(String, String)>,
}

/// The latest state of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Latest value of each field, in first-seen order.
    pub fields: Vec<(String, FieldValue)>,
    /// What the metric measures.
    pub metric_type: MetricType,
    /// Time of the newest point, ns since the epoch.
    pub timestamp_ns: i64,
    /// When the series was last updated (server time, ns), for retention.
    pub updated_ns: i64,
}

/// Limits of a [`LiveStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Series not updated for this long are dropped.
    pub retention_ns: i64,
    /// Most series held at once.
    pub max_series: usize,
}

impl Default for LiveLimits {
    /// Seed 04's defaults: 300 s retention, 100,000 series.
    fn default() -> Self {
        Self { retention_ns: 300 * 1_000_000_000, max_series: 100_000 }
    }
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
    series: HashMap<SeriesKey, Series>,
    limits: LiveLimits,
}

impl LiveStore {
    /// An empty store.
    pub fn new(limits: LiveLimits) -> Self {
        Self { series: HashMap::new(), limits }
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

    /// Applies points received at `now_ns`. A point older than its series' newest point does
    /// not move the live view back in time (it is still in history).
    pub fn insert(&mut self, points: &[Point], now_ns: i64) -> LiveUpdate {
        let mut update = LiveUpdate::default();
        for point in points {
            let key = SeriesKey { name: point.name().to_owned(), tags: point.tags().to_vec() };
            if !self.series.contains_key(&key) {
                if self.series.len() >= self.limits.max_series {
                    self.evict_expired(now_ns);
                }
                if self.series.len() >= self.limits.max_series {
                    update.refused += 1;
                    continue;
                }
            }
            let series = self.series.entry(key).or_insert_with(|| Series {
                fields: Vec::with_capacity(point.fields().len()),
                metric_type: point.metric_type(),
                timestamp_ns: i64::MIN,
                updated_ns: now_ns,
            });
            series.updated_ns = now_ns;
            if point.timestamp_ns() < series.timestamp_ns {
                update.applied += 1;
                continue;
            }
            series.timestamp_ns = point.timestamp_ns();
            series.metric_type = point.metric_type();
            for (name, value) in point.fields() {
                match series.fields.iter_mut().find(|(k, _)| k == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => series.fields.push((name.clone(), value.clone())),
                }
            }
            update.applied += 1;
        }
        update
    }

    /// Drops series not updated within the retention; returns how many.
    pub fn evict_expired(&mut self, now_ns: i64) -> usize {
        let cutoff = now_ns.saturating_sub(self.limits.retention_ns);
        let before = self.series.len();
        self.series.retain(|_, s| s.updated_ns >= cutoff);
        before - self.series.len()
    }

    /// Live series, optionally only those named `name`, ordered by name then tags.
    pub fn series(&self, name: Option<&str>) -> Vec<(&SeriesKey, &Series)> {
        let mut found: Vec<_> = self.series.iter().filter(|(k, _)| name.is_none_or(|n| k.name == n)).collect();
        found.sort_by(|a, b| (&a.0.name, &a.0.tags).cmp(&(&b.0.name, &b.0.tags)));
        found
    }

    /// Distinct metric names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.series.keys().map(|k| k.name.clone()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Removes every series, or those named `name`; returns how many.
    pub fn clear(&mut self, name: Option<&str>) -> usize {
        let before = self.series.len();
        match name {
            None => self.series.clear(),
            Some(name) => self.series.retain(|k, _| k.name != name),
        }
        before - self.series.len()
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
        live.insert(&[point("cpu", "a", 1.0, 10), point("cpu", "b", 2.0, 10), point("cpu", "a", 3.0, 20)], 0);
        live.insert(&[point("cpu", "a", 9.0, 15)], 0);
        let series = live.series(Some("cpu"));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].1.fields, [("v".to_owned(), FieldValue::Float(3.0))], "an older point does not win");
        assert_eq!(live.names(), ["cpu"]);
        assert_eq!(live.clear(Some("cpu")), 2);
        assert!(live.is_empty());
    }

    #[test]
    fn retention_and_capacity_are_enforced() {
        let limits = LiveLimits { retention_ns: 100, max_series: 2 };
        let mut live = LiveStore::new(limits);
        assert_eq!(live.insert(&[point("m", "a", 1.0, 0), point("m", "b", 1.0, 0)], 0).refused, 0);
        let update = live.insert(&[point("m", "c", 1.0, 0), point("m", "a", 2.0, 1)], 60);
        assert_eq!(update, LiveUpdate { applied: 1, refused: 1 }, "new series refused, known ones updated");
        // Once "b" expires, there is room again.
        assert_eq!(live.insert(&[point("m", "c", 1.0, 0)], 151).refused, 0);
        assert_eq!(live.series(None).iter().map(|(k, _)| k.tags[0].1.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(live.evict_expired(1_000), 2);
    }

    proptest! {
        #[test]
        fn never_exceeds_its_limit(points in proptest::collection::vec(arb_point(), 0..60), max in 1usize..10) {
            let mut live = LiveStore::new(LiveLimits { retention_ns: 1_000, max_series: max });
            for (i, chunk) in points.chunks(7).enumerate() {
                let update = live.insert(chunk, i as i64 * 100);
                prop_assert_eq!(update.applied + update.refused, chunk.len());
                prop_assert!(live.len() <= max);
            }
        }
    }
}
