//! Range queries over the rollups: one device's health field, or a metric's series, in
//! step-aligned buckets from the coarsest tier that divides the step. Buckets not yet
//! flushed to storage are merged in, so an answer includes samples accepted a moment ago.

use chrono::{DateTime, Utc};
use homepot_core::rollup::{Agg, RangePlan, plan_range, rebucket};
use homepot_core::{DeviceId, health};
use homepot_storage::{SeriesId, SeriesKey};

use crate::{EngineError, Homepot};

/// Most series one range query answers.
pub const MAX_RANGE_SERIES: usize = 1_000;

/// Which series a range query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesSelector {
    /// One field of a device's health checks (`cpu_percent`, `response_time_ms`...).
    Device {
        /// The device.
        device: DeviceId,
        /// The health field.
        field: String,
    },
    /// A field of the metric `name`, on every series whose tags include `tags`.
    Metric {
        /// The metric name.
        name: String,
        /// The field (`value` for single-value metrics).
        field: String,
        /// Tags every series must carry.
        tags: Vec<(String, String)>,
    },
}

/// A range query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    /// The series.
    pub selector: SeriesSelector,
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, exclusive.
    pub to: DateTime<Utc>,
    /// Bucket width in seconds; `None` picks one from `max_points`.
    pub step_s: Option<i64>,
    /// Points per series wanted when no step is given.
    pub max_points: Option<i64>,
    /// The figure of each bucket.
    pub agg: Agg,
}

/// One series of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// What it is.
    pub key: SeriesKey,
    /// `(bucket start in Unix seconds, value)`, oldest first; empty buckets are left out.
    pub points: Vec<(i64, f64)>,
}

/// A range query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAnswer {
    /// How it was answered.
    pub plan: RangePlan,
    /// Every matching series, in storage order.
    pub series: Vec<RangeSeries>,
}

impl Homepot {
    /// Answers a range query from the rollups.
    ///
    /// # Errors
    /// [`EngineError::Invalid`] for a range that cannot be answered (422);
    /// [`EngineError::DeviceNotFound`] and [`EngineError::NotFound`] when nothing matches;
    /// storage failures.
    pub async fn query_range(&self, query: &RangeQuery) -> Result<RangeAnswer, EngineError> {
        let now = self.now();
        let policy = &self.inner.settings.retention;
        let plan = plan_range(query.from.timestamp(), query.to.timestamp(), query.step_s, query.max_points, |tier| {
            policy.kept_since(tier, now)
        })
        .map_err(|e| EngineError::invalid_parameter(e.parameter(), e.to_string()))?;
        let _consistent = self.inner.rollups.consistent().await;
        let series = self.select(&query.selector).await?;
        let ids: Vec<SeriesId> = series.iter().filter_map(|(id, _)| *id).collect();
        let stored = self.inner.store.rollup_buckets(&ids, plan.tier, plan.from_s, plan.to_s).await?;
        let mut answer = RangeAnswer { plan, series: Vec::with_capacity(series.len()) };
        for (id, key) in series {
            let mine = stored.iter().filter(|b| Some(b.series) == id).map(|b| (b.start, b.aggregate));
            let fresh = self.inner.rollups.unstored(&key, plan.tier, plan.from_s, plan.to_s);
            let points =
                rebucket(mine.chain(fresh), plan.step_s).into_iter().map(|(t, a)| (t, a.value(query.agg))).collect();
            answer.series.push(RangeSeries { key, points });
        }
        Ok(answer)
    }

    /// The series `selector` names: stored ones with their ids, then those only gathered so far.
    async fn select(&self, selector: &SeriesSelector) -> Result<Vec<(Option<SeriesId>, SeriesKey)>, EngineError> {
        let device_tags;
        let (names, field, tags): (Vec<&str>, &str, &[(String, String)]) = match selector {
            SeriesSelector::Device { device, field } => {
                if self.inner.store.device(device).await?.is_none() {
                    return Err(EngineError::DeviceNotFound(device.to_string()));
                }
                device_tags = [("device_id".to_owned(), device.to_string())];
                (health::POINT_NAMES.to_vec(), field, &device_tags)
            }
            SeriesSelector::Metric { name, field, tags } => (vec![name.as_str()], field, tags),
        };
        let stored = self.inner.store.find_series(&names, field, tags, MAX_RANGE_SERIES + 1).await?;
        let mut found: Vec<(Option<SeriesId>, SeriesKey)> = stored.into_iter().map(|s| (Some(s.id), s.key)).collect();
        for key in self.inner.rollups.unstored_series(&names, field, tags) {
            if !found.iter().any(|(_, known)| *known == key) {
                found.push((None, key));
            }
        }
        if found.is_empty() {
            return Err(EngineError::NotFound(match selector {
                SeriesSelector::Device { device, field } => {
                    format!("Device '{device}' has no series for field '{field}'")
                }
                SeriesSelector::Metric { name, field, .. } => {
                    format!("No series of metric '{name}' with field '{field}' matches")
                }
            }));
        }
        if found.len() > MAX_RANGE_SERIES {
            return Err(EngineError::invalid_parameter(
                "tag",
                format!("more than {MAX_RANGE_SERIES} series match; narrow the query with tag filters"),
            ));
        }
        Ok(found)
    }
}
