//! Range queries over the rollups (`GET /api/v1/query/range`): one device's health field, or
//! a metric's series filtered by tags, in step-aligned buckets of one figure.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;
use homepot_core::rollup::Agg;
use homepot_core::{DeviceId, ErrorKind};
use homepot_engine::{RangeQuery, SeriesSelector};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::{ApiTags, AppState, instant, parse_tags};
use crate::auth::MetricsAuth;
use crate::error::ApiError;

/// Range queries over the rollups.
#[derive(Debug, Default)]
pub(crate) struct QueryApi;

/// One series of a range answer.
#[derive(Debug, Object)]
struct RangeSeriesView {
    /// The series' tags, with its metric as `__name__` and its field as `__field__`.
    labels: BTreeMap<String, String>,
    /// `[t, v]` pairs, oldest first: `t` is the bucket's start in Unix seconds, aligned to a
    /// multiple of `step` from the epoch. Empty buckets are left out.
    points: Vec<Value>,
}

/// A range answer.
#[derive(Debug, Object)]
struct RangeView {
    /// Every matching series.
    series: Vec<RangeSeriesView>,
    /// The rollup tier read: `1m`, `1h` or `1d`.
    tier: String,
    /// The bucket width in seconds.
    step: i64,
}

#[OpenApi]
impl QueryApi {
    /// A series over time from the rollups, in buckets of `step` seconds (or as many as fit
    /// in `max_points`), each reduced to `agg`. Select either a device's health field
    /// (`device_id` and `field`, e.g. `cpu_percent`; repeat `device_id` for up to 1,000
    /// devices at once, one series each, devices without samples left out) or a metric (`name`, `field` defaulting
    /// to `value`, and `tag=key:value` filters). `from` and `to` take RFC 3339 or Unix
    /// seconds (default: the last 24 hours). Needs an admin or read key.
    #[oai(path = "/api/v1/query/range", method = "get", tag = "ApiTags::Query")]
    #[allow(clippy::too_many_arguments)]
    async fn range(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// A device whose health field to read; repeat for several.
        device_id: Query<Vec<String>>,
        /// A metric name to read.
        #[oai(validator(min_length = 1, max_length = 256))]
        name: Query<Option<String>>,
        /// The field: a health field with `device_id`; with `name`, default `value`.
        #[oai(validator(min_length = 1, max_length = 256))]
        field: Query<Option<String>>,
        /// With `name`: a required tag as `key:value`; repeat for more.
        tag: Query<Vec<String>>,
        /// Start, inclusive: RFC 3339 or Unix seconds.
        from: Query<Option<String>>,
        /// End, exclusive: RFC 3339 or Unix seconds.
        to: Query<Option<String>>,
        /// Bucket width in seconds, a multiple of 60.
        step: Query<Option<i64>>,
        /// Points per series wanted when no step is given (1-11000, default 1000).
        max_points: Query<Option<i64>>,
        /// `avg` (default), `min`, `max`, `sum`, `count` or `last`.
        agg: Query<Option<String>>,
    ) -> Result<Json<RangeView>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let invalid = |parameter: &str, message: &str| {
            ApiError::invalid_field("query", parameter, ErrorKind::BadFormat, message.to_owned())
        };
        let selector = match (device_id.0.is_empty(), name.0) {
            (false, None) => {
                if !tag.0.is_empty() {
                    return Err(invalid("tag", "tag filters go with name, not device_id"));
                }
                let devices = device_id
                    .0
                    .iter()
                    .map(|device| DeviceId::parse(device).map_err(|_| ApiError::device_not_found(device)))
                    .collect::<Result<Vec<_>, _>>()?;
                let field = field.0.ok_or_else(|| invalid("field", "a health field is required with device_id"))?;
                SeriesSelector::Devices { devices, field }
            }
            (true, Some(name)) => SeriesSelector::Metric {
                name,
                field: field.0.unwrap_or_else(|| "value".to_owned()),
                tags: parse_tags(&tag.0)?,
            },
            _ => return Err(invalid("name", "give either device_id or name")),
        };
        let agg = match agg.0.as_deref() {
            None => Agg::Avg,
            Some(raw) => Agg::parse(raw).ok_or_else(|| invalid("agg", "agg is avg, min, max, sum, count or last"))?,
        };
        let to = instant("to", to.0.as_deref(), state.homepot.now())?;
        let from = instant("from", from.0.as_deref(), to - TimeDelta::hours(24))?;
        let query = RangeQuery { selector, from, to, step_s: step.0, max_points: max_points.0, agg };
        let answer = state.homepot.query_range(&query).await?;
        Ok(Json(RangeView {
            tier: answer.plan.tier.as_str().to_owned(),
            step: answer.plan.step_s,
            series: answer
                .series
                .into_iter()
                .map(|s| {
                    let mut labels: BTreeMap<String, String> = s.key.tags.into_iter().collect();
                    labels.insert("__name__".to_owned(), s.key.name);
                    labels.insert("__field__".to_owned(), s.key.field);
                    let points = s.points.into_iter().map(|(t, v)| serde_json::json!([t, v])).collect();
                    RangeSeriesView { labels, points }
                })
                .collect(),
        }))
    }
}
