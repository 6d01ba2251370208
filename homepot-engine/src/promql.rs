//! PromQL over the rollups: each selector of a [`Query`] becomes the stored (and not yet
//! flushed) series it matches, with one sample per bucket (the bucket's last sample, at its
//! own time) of the tier that fits the step, then `homepot_core::promql` evaluates.
//!
//! A series' PromQL labels are its tags plus `__name__`, which is
//! [`promql::series_name`] of its point name and field.

use std::collections::BTreeMap;

use homepot_core::promql::{self, Labels, PromqlError, Query, Selector, Series, Value};
use homepot_core::rollup::Tier;
use homepot_storage::{SeriesId, SeriesKey};

use crate::{EngineError, Homepot};

/// Most series one query reads, over all its selectors.
pub const MAX_PROMQL_SERIES: usize = 10_000;
/// Most steps of a range query, as Prometheus limits them.
pub const MAX_PROMQL_STEPS: i64 = 11_000;

/// A series the engine matched, with where its samples are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MatchedSeries {
    /// Its PromQL labels, sorted.
    pub labels: Labels,
    /// The rollup series behind it.
    pub key: SeriesKey,
    id: Option<SeriesId>,
}

fn labels_of(key: &SeriesKey) -> Labels {
    let mut labels = key.tags.clone();
    labels.push(("__name__".to_owned(), promql::series_name(&key.name, &key.field)));
    labels.sort();
    labels
}

impl From<PromqlError> for EngineError {
    fn from(error: PromqlError) -> Self {
        EngineError::Promql(error)
    }
}

impl Homepot {
    /// Every `(point name, field)` with rollups, stored or not yet flushed, ordered.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn series_names(&self) -> Result<Vec<(String, String)>, EngineError> {
        let mut catalog = self.inner.store.series_names().await?;
        catalog.extend(self.inner.rollups.unstored_keys().into_iter().map(|key| (key.name, key.field)));
        catalog.sort_unstable();
        catalog.dedup();
        Ok(catalog)
    }

    /// The series `selector` matches, ordered by labels.
    ///
    /// # Errors
    /// [`EngineError::Promql`] past [`MAX_PROMQL_SERIES`]; storage failures.
    pub async fn promql_series(&self, selector: &Selector) -> Result<Vec<MatchedSeries>, EngineError> {
        let name_matchers: Vec<_> = selector.matchers.iter().filter(|m| m.name() == "__name__").collect();
        // Equal matchers narrow the storage scan; every matcher decides below.
        let equal: Vec<(String, String)> = selector
            .matchers
            .iter()
            .filter(|m| m.name() != "__name__")
            .filter_map(|m| m.equal_to().filter(|v| !v.is_empty()).map(|v| (m.name().to_owned(), v.to_owned())))
            .collect();
        let catalog = self.series_names().await?;
        let mut found: BTreeMap<Labels, MatchedSeries> = BTreeMap::new();
        for (name, field) in catalog {
            let prom = promql::series_name(&name, &field);
            if !name_matchers.iter().all(|m| m.matches(&prom)) {
                continue;
            }
            let stored = self.inner.store.find_series(&[&name], &field, &equal, MAX_PROMQL_SERIES + 1).await?;
            let unstored = self.inner.rollups.unstored_series(&[&name], &field, &equal);
            let keys = stored.into_iter().map(|s| (Some(s.id), s.key)).chain(unstored.into_iter().map(|k| (None, k)));
            for (id, key) in keys {
                let labels = labels_of(&key);
                if selector.matches(&labels) {
                    let entry = found.entry(labels.clone()).or_insert(MatchedSeries { labels, key, id });
                    entry.id = entry.id.or(id);
                }
            }
            if found.len() > MAX_PROMQL_SERIES {
                return Err(PromqlError::Execution(format!(
                    "the query selects more than {MAX_PROMQL_SERIES} series; narrow it with label matchers"
                ))
                .into());
            }
        }
        Ok(found.into_values().collect())
    }

    /// Evaluates `query` at `t_ms`.
    ///
    /// # Errors
    /// [`EngineError::Promql`] for what cannot be evaluated; storage failures.
    pub async fn promql_instant(&self, query: &Query, t_ms: i64) -> Result<Value, EngineError> {
        let data = self.promql_data(query, t_ms, t_ms, Tier::Minute).await?;
        Ok(query.instant(&data, t_ms)?)
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms`. Steps of an hour or
    /// more read hour buckets (one sample per hour), a day or more day buckets; shorter steps
    /// minute buckets. A tier retention has already dropped for the range is not used.
    ///
    /// # Errors
    /// [`EngineError::Promql`] for more than [`MAX_PROMQL_STEPS`] steps or what cannot be
    /// evaluated; storage failures.
    pub async fn promql_range(
        &self,
        query: &Query,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Series>, EngineError> {
        if step_ms <= 0 || (end_ms - start_ms) / step_ms >= MAX_PROMQL_STEPS {
            return Err(EngineError::invalid_parameter(
                "step",
                format!("step must be positive, with at most {MAX_PROMQL_STEPS} points per series"),
            ));
        }
        let now = self.now();
        let policy = &self.inner.settings.retention;
        let earliest_s =
            query.selectors().iter().map(|s| s.window(start_ms, end_ms).0).min().unwrap_or(start_ms) / 1_000;
        let covers = |tier: Tier| policy.kept_since(tier, now).is_none_or(|kept| kept <= earliest_s);
        // The coarsest tier no wider than the step, else the finest that still covers the range.
        let tier = Tier::ALL
            .into_iter()
            .rev()
            .find(|&tier| step_ms >= tier.seconds() * 1_000 && covers(tier))
            .or_else(|| Tier::ALL.into_iter().find(|&tier| covers(tier)))
            .unwrap_or(Tier::Day);
        let data = self.promql_data(query, start_ms, end_ms, tier).await?;
        Ok(query.range(&data, start_ms, end_ms, step_ms)?)
    }

    /// For each selector, its series with their samples in the window evaluations from
    /// `start_ms` to `end_ms` read, from `tier`.
    async fn promql_data(
        &self,
        query: &Query,
        start_ms: i64,
        end_ms: i64,
        tier: Tier,
    ) -> Result<Vec<Vec<Series>>, EngineError> {
        let _consistent = self.inner.rollups.consistent().await;
        let mut data = Vec::with_capacity(query.selectors().len());
        for selector in query.selectors() {
            let (from_ms, to_ms) = selector.window(start_ms, end_ms);
            let matched = self.promql_series(selector).await?;
            // Buckets that start up to one width before the window hold samples inside it.
            let (from_s, to_s) = (from_ms.div_euclid(1_000) - tier.seconds(), to_ms.div_euclid(1_000) + 1);
            let ids: Vec<SeriesId> = matched.iter().filter_map(|m| m.id).collect();
            let stored = self.inner.store.rollup_buckets(&ids, tier, from_s, to_s).await?;
            let mut by_id: BTreeMap<SeriesId, Vec<(i64, f64)>> = BTreeMap::new();
            for bucket in stored {
                by_id.entry(bucket.series).or_default().push((bucket.aggregate.last_ns, bucket.aggregate.last));
            }
            let mut series = Vec::with_capacity(matched.len());
            for m in matched {
                let mut buckets = m.id.and_then(|id| by_id.remove(&id)).unwrap_or_default();
                for (_, aggregate) in self.inner.rollups.unstored(&m.key, tier, from_s, to_s) {
                    buckets.push((aggregate.last_ns, aggregate.last));
                }
                let mut samples: Vec<(i64, f64)> = buckets
                    .into_iter()
                    .map(|(ns, v)| (ns.div_euclid(1_000_000), v))
                    .filter(|(ms, _)| (from_ms..=to_ms).contains(ms))
                    .collect();
                samples.sort_by_key(|s| s.0);
                // A stored bucket and its unflushed delta hold the same last sample: keep one.
                samples.dedup_by_key(|s| s.0);
                series.push(Series { labels: m.labels, samples });
            }
            data.push(series);
        }
        Ok(data)
    }
}
