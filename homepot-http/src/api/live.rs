//! The live view: the latest value of every series as JSON, one series per name, the names,
//! clearing it, and Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;

use homepot_core::live::{Series, SeriesKey};
use homepot_core::prometheus::write_exposition;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::metrics::field_json;
use super::{ApiTags, AppState};
use crate::auth::MetricsAuth;
use crate::error::ApiError;

/// The live metrics view (metrics service).
#[derive(Debug, Default)]
pub(crate) struct LiveApi;

/// The latest state of one series.
#[derive(Debug, Object)]
struct LiveMetric {
    /// Metric name.
    name: String,
    /// Latest value of each field.
    fields: BTreeMap<String, Value>,
    /// Labels.
    tags: BTreeMap<String, String>,
    /// Time of the newest point, Unix seconds.
    timestamp: i64,
}

/// `{"metrics": {key: metric}}`.
#[derive(Debug, Object)]
struct LiveMetrics {
    /// Keyed by metric name; a name with several series keys each as `name{tag=value,...}`.
    metrics: BTreeMap<String, LiveMetric>,
}

/// `{"names": [...], "count": N}`.
#[derive(Debug, Object)]
struct MetricNames {
    /// Distinct metric names, sorted.
    names: Vec<String>,
    /// How many.
    count: usize,
}

/// `{"cleared": N, "message": "Cleared N metrics"}`.
#[derive(Debug, Object)]
struct MetricsCleared {
    /// Series removed from the live view.
    cleared: usize,
    /// `Cleared N metrics`.
    message: String,
}

fn view(key: &SeriesKey, series: &Series) -> LiveMetric {
    LiveMetric {
        name: key.name.to_string(),
        fields: series.fields.iter().map(|(k, v)| (k.to_string(), field_json(v))).collect(),
        tags: key.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        timestamp: series.timestamp_ns.div_euclid(1_000_000_000),
    }
}

fn series_label(key: &SeriesKey) -> String {
    let tags: Vec<String> = key.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{{{}}}", key.name, tags.join(","))
}

#[OpenApi]
impl LiveApi {
    /// The latest value of every live series, optionally only those named `name`. A name with
    /// one series is keyed by the name, as in the original service. Needs an admin or read key.
    #[oai(path = "/api/v1/metrics", method = "get", tag = "ApiTags::Live")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Only series with this name.
        name: Query<Option<String>>,
    ) -> Result<Json<LiveMetrics>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let live = state.homepot.live();
        let series = live.series(name.0.as_deref());
        let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, _) in &series {
            *per_name.entry(&*key.name).or_default() += 1;
        }
        let metrics = series
            .iter()
            .map(|(key, s)| {
                let label = if per_name[&*key.name] == 1 { key.name.to_string() } else { series_label(key) };
                (label, view(key, s))
            })
            .collect();
        Ok(Json(LiveMetrics { metrics }))
    }

    /// For each metric name, its most recently updated series. Needs an admin or read key.
    #[oai(path = "/api/v1/metrics/latest", method = "get", tag = "ApiTags::Live")]
    async fn latest(&self, state: Data<&Arc<AppState>>, auth: MetricsAuth) -> Result<Json<LiveMetrics>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let live = state.homepot.live();
        let mut newest: BTreeMap<String, (&SeriesKey, &Series)> = BTreeMap::new();
        for (key, series) in live.series(None) {
            let slot = newest.entry(key.name.to_string()).or_insert((key, series));
            if (series.timestamp_ns, series.updated_ns) > (slot.1.timestamp_ns, slot.1.updated_ns) {
                *slot = (key, series);
            }
        }
        let metrics = newest.into_iter().map(|(name, (key, s))| (name, view(key, s))).collect();
        Ok(Json(LiveMetrics { metrics }))
    }

    /// Distinct live metric names. Needs an admin or read key.
    #[oai(path = "/api/v1/metrics/names", method = "get", tag = "ApiTags::Live")]
    async fn names(&self, state: Data<&Arc<AppState>>, auth: MetricsAuth) -> Result<Json<MetricNames>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let names = state.homepot.live().names();
        Ok(Json(MetricNames { count: names.len(), names }))
    }

    /// Clear the live view, or the series named `name`. Stored history is kept. Needs an
    /// admin key.
    #[oai(path = "/api/v1/metrics", method = "delete", tag = "ApiTags::Live")]
    async fn clear(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// Only series with this name.
        name: Query<Option<String>>,
    ) -> Result<Json<MetricsCleared>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_admin()?;
        let cleared = state.homepot.clear_live(name.0.as_deref());
        let plural = if cleared == 1 { "" } else { "s" };
        Ok(Json(MetricsCleared { cleared, message: format!("Cleared {cleared} metric{plural}") }))
    }

    /// The live view in Prometheus text format (0.0.4), for scraping. Send the key as
    /// `Authorization: Bearer <key>` from Prometheus. Needs an admin or read key.
    #[oai(path = "/metrics", method = "get", tag = "ApiTags::Live")]
    async fn prometheus(&self, state: Data<&Arc<AppState>>, auth: MetricsAuth) -> Result<PlainText<String>, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let mut text = String::new();
        write_exposition(state.homepot.live().series(None), &mut text);
        Ok(PlainText(text))
    }
}
