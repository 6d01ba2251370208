//! Range queries over the rollups: one device's health field, or a metric's series, in
//! step-aligned buckets from the coarsest tier that divides the step. Buckets not yet
//! flushed to storage are merged in, so an answer includes samples accepted a moment ago.

use std::collections::HashSet;

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
    /// One field of the health checks of one or more devices (`cpu_percent`,
    /// `response_time_ms`...), e.g. a page of the fleet for its sparklines.
    Devices {
        /// The devices, at most [`MAX_RANGE_SERIES`].
        devices: Vec<DeviceId>,
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
        let (names, field) = match selector {
            SeriesSelector::Devices { field, .. } => (health::POINT_NAMES.to_vec(), field.as_str()),
            SeriesSelector::Metric { name, field, .. } => (vec![name.as_str()], field.as_str()),
        };
        // Storage matches every tag given; several devices are one tag with any of several
        // values, so they are picked out of the field's series here.
        let (tags, wanted): (Vec<(String, String)>, Option<HashSet<&str>>) = match selector {
            SeriesSelector::Devices { devices, .. } => {
                if devices.len() > MAX_RANGE_SERIES {
                    return Err(EngineError::invalid_parameter(
                        "device_id",
                        format!("at most {MAX_RANGE_SERIES} devices per query"),
                    ));
                }
                for device in devices {
                    if self.inner.store.device(device).await?.is_none() {
                        return Err(EngineError::DeviceNotFound(device.to_string()));
                    }
                }
                match devices.as_slice() {
                    [one] => (vec![("device_id".to_owned(), one.to_string())], None),
                    many => (Vec::new(), Some(many.iter().map(|d| d.as_str()).collect())),
                }
            }
            SeriesSelector::Metric { tags, .. } => (tags.clone(), None),
        };
        let chosen = |key: &SeriesKey| {
            wanted.as_ref().is_none_or(|set| key.tags.iter().any(|(k, v)| k == "device_id" && set.contains(v.as_str())))
        };
        let limit = if wanted.is_some() { usize::MAX } else { MAX_RANGE_SERIES + 1 };
        let stored = self.inner.store.find_series(&names, field, &tags, limit).await?;
        let mut found: Vec<(Option<SeriesId>, SeriesKey)> =
            stored.into_iter().filter(|s| chosen(&s.key)).map(|s| (Some(s.id), s.key)).collect();
        for key in self.inner.rollups.unstored_series(&names, field, &tags) {
            if chosen(&key) && !found.iter().any(|(_, known)| *known == key) {
                found.push((None, key));
            }
        }
        if found.is_empty() {
            return Err(EngineError::NotFound(match selector {
                SeriesSelector::Devices { devices, field } => match devices.as_slice() {
                    [device] => format!("Device '{device}' has no series for field '{field}'"),
                    _ => format!("None of the {} devices has a series for field '{field}'", devices.len()),
                },
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
