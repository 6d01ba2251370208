//! The Prometheus HTTP API that Grafana's Prometheus data source (and `promtool`) call:
//! instant and range queries in a PromQL subset, series, label names and values, metadata and
//! build information, with Prometheus's JSON shapes. GET takes query parameters; POST also
//! takes them as a form body, as Grafana sends them.
//!
//! Answers and query errors take Prometheus's shape (`{"status": "error", "errorType":
//! "bad_data", ...}`): 400 for what is not PromQL or a bad parameter, 422 for PromQL outside
//! the subset, 503 when storage is unavailable. Authentication failures keep the API's own
//! 401 and 403.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use homepot_core::promql::{
    self, PromqlError, Query, Selector, Series, Value as PromValue, parse_duration_ms, parse_time_ms,
};
use homepot_engine::EngineError;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Value, json};

use super::{ApiTags, AppState};
use crate::auth::MetricsAuth;
use crate::body::{FormKind, RawBody};
use crate::error::ApiError;

/// The Prometheus HTTP API (query side).
#[derive(Debug, Default)]
pub(crate) struct PrometheusApi;

/// A Prometheus API answer.
#[derive(Debug, ApiResponse)]
enum PromAnswer {
    /// `{"status": "success", "data": ...}`.
    #[oai(status = 200)]
    Success(Json<Value>),
    /// `errorType` `bad_data`: not PromQL, or a bad parameter.
    #[oai(status = 400)]
    BadData(Json<Value>),
    /// `errorType` `execution`: PromQL outside the subset homepot evaluates, or a query that
    /// selects too much.
    #[oai(status = 422)]
    Execution(Json<Value>),
    /// `errorType` `unavailable`: storage cannot be read now.
    #[oai(status = 503)]
    Unavailable(Json<Value>),
}

fn error_body(kind: &str, message: String) -> Json<Value> {
    Json(json!({"status": "error", "errorType": kind, "error": message}))
}

fn bad_data(message: impl Into<String>) -> PromAnswer {
    PromAnswer::BadData(error_body("bad_data", message.into()))
}

/// Engine failures in Prometheus's shape where Prometheus has one; the rest as the API's own.
fn failed(error: EngineError) -> Result<PromAnswer, ApiError> {
    Ok(match error {
        EngineError::Promql(PromqlError::Parse(message)) => bad_data(message),
        EngineError::Promql(error) => PromAnswer::Execution(error_body("execution", error.to_string())),
        EngineError::Invalid { errors, .. } => bad_data(errors.to_string()),
        error if error.is_retryable() => PromAnswer::Unavailable(error_body("unavailable", error.to_string())),
        error => return Err(error.into()),
    })
}

fn success(data: Value) -> PromAnswer {
    PromAnswer::Success(Json(json!({"status": "success", "data": data})))
}

/// Prometheus writes sample values as strings: shortest round-trip decimal, `NaN`, `+Inf`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

fn seconds(ms: i64) -> Value {
    if ms % 1_000 == 0 { json!(ms / 1_000) } else { json!(ms as f64 / 1_000.0) }
}

fn metric(labels: &[(String, String)]) -> Value {
    Value::Object(labels.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect())
}

/// The request's parameters: the query string, then the form body of a POST.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Vec<(String, String)>, form: Option<Vec<(String, String)>>) -> Self {
        let mut all = query;
        all.extend(form.unwrap_or_default());
        Self(all)
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, PromqlError> {
        self.one(name).filter(|v| !v.is_empty()).map_or(Ok(default), |raw| parse_time_ms(name, raw))
    }

    fn selectors(&self) -> Result<Vec<Selector>, PromqlError> {
        self.all("match[]").map(promql::parse_selector).collect()
    }
}

impl PrometheusApi {
    async fn query(state: &AppState, auth: &MetricsAuth, params: Params) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(auth).await?.require_reader()?;
        let now = state.homepot.now().timestamp_millis();
        let parsed = (|| {
            let text = params.one("query").ok_or_else(|| PromqlError::Parse("query is required".to_owned()))?;
            Ok::<_, PromqlError>((Query::parse(text)?, params.time("time", now)?))
        })();
        let (query, t) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return failed(error.into()),
        };
        match state.homepot.promql_instant(&query, t).await {
            Ok(PromValue::Scalar(v)) => Ok(success(json!({"resultType": "scalar", "result": [seconds(t), number(v)]}))),
            Ok(PromValue::Vector(samples)) => Ok(success(json!({
                "resultType": "vector",
                "result": samples.iter().map(|s| json!({"metric": metric(&s.labels), "value": [seconds(t), number(s.value)]})).collect::<Vec<_>>(),
            }))),
            Err(error) => failed(error),
        }
    }

    async fn query_range(state: &AppState, auth: &MetricsAuth, params: Params) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(auth).await?.require_reader()?;
        let parsed = (|| {
            let required = |name: &str| {
                params.one(name).ok_or_else(|| PromqlError::Parse(format!("invalid parameter \"{name}\": required")))
            };
            let query = Query::parse(required("query")?)?;
            let (start, end) = (parse_time_ms("start", required("start")?)?, parse_time_ms("end", required("end")?)?);
            let step = parse_duration_ms("step", required("step")?)?;
            if end < start {
                return Err(PromqlError::Parse("end timestamp must not be before start time".to_owned()));
            }
            if step <= 0 {
                return Err(PromqlError::Parse(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer".to_owned(),
                ));
            }
            Ok((query, start, end, step))
        })();
        let (query, start, end, step) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return failed(error.into()),
        };
        match state.homepot.promql_range(&query, start, end, step).await {
            Ok(matrix) => Ok(success(json!({
                "resultType": "matrix",
                "result": matrix.iter().map(|s: &Series| json!({
                    "metric": metric(&s.labels),
                    "values": s.samples.iter().map(|(t, v)| json!([seconds(*t), number(*v)])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }))),
            Err(error) => failed(error),
        }
    }

    /// The label sets of the series every `match[]` selects (all series without one).
    async fn matched(state: &AppState, params: &Params) -> Result<Vec<Vec<(String, String)>>, EngineError> {
        let mut selectors = params.selectors()?;
        if selectors.is_empty() {
            selectors.push(promql::parse_selector(r#"{__name__=~".+"}"#)?);
        }
        let mut found = BTreeSet::new();
        for selector in &selectors {
            for series in state.homepot.promql_series(selector).await? {
                found.insert(series.labels);
            }
        }
        Ok(found.into_iter().collect())
    }

    async fn series(state: &AppState, auth: &MetricsAuth, params: Params) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(auth).await?.require_reader()?;
        if params.all("match[]").next().is_none() {
            return Ok(bad_data("no match[] parameter provided"));
        }
        match Self::matched(state, &params).await {
            Ok(sets) => Ok(success(Value::Array(sets.iter().map(|l| metric(l)).collect()))),
            Err(error) => failed(error),
        }
    }

    async fn labels(state: &AppState, auth: &MetricsAuth, params: Params) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(auth).await?.require_reader()?;
        match Self::matched(state, &params).await {
            Ok(sets) => {
                let names: BTreeSet<&str> = sets.iter().flatten().map(|(k, _)| k.as_str()).collect();
                Ok(success(json!(names)))
            }
            Err(error) => failed(error),
        }
    }

    async fn label_values(
        state: &AppState,
        auth: &MetricsAuth,
        name: &str,
        params: Params,
    ) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(auth).await?.require_reader()?;
        match Self::matched(state, &params).await {
            Ok(sets) => {
                let values: BTreeSet<&str> =
                    sets.iter().flatten().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
                Ok(success(json!(values)))
            }
            Err(error) => failed(error),
        }
    }
}

type QueryParams = poem::web::Query<Vec<(String, String)>>;
type FormParams = RawBody<FormKind>;

#[OpenApi]
impl PrometheusApi {
    /// A PromQL instant query (`query`, `time`: RFC 3339 or Unix seconds, default now), in the
    /// subset the README lists, over the rollups. Needs an admin or read key.
    #[oai(path = "/api/v1/query", method = "get", tag = "ApiTags::Query")]
    async fn query_get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::query(&state, &auth, Params::new(q.0, None)).await
    }

    /// The instant query with its parameters in a form body.
    #[oai(path = "/api/v1/query", method = "post", tag = "ApiTags::Query")]
    async fn query_post(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
        form: FormParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::query(&state, &auth, Params::new(q.0, Some(form.pairs()))).await
    }

    /// A PromQL range query (`query`, `start`, `end`, `step`: seconds or a duration such as
    /// `1m`); steps of an hour or more read hour buckets. Needs an admin or read key.
    #[oai(path = "/api/v1/query_range", method = "get", tag = "ApiTags::Query")]
    async fn query_range_get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::query_range(&state, &auth, Params::new(q.0, None)).await
    }

    /// The range query with its parameters in a form body.
    #[oai(path = "/api/v1/query_range", method = "post", tag = "ApiTags::Query")]
    async fn query_range_post(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
        form: FormParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::query_range(&state, &auth, Params::new(q.0, Some(form.pairs()))).await
    }

    /// The label sets of the series that any `match[]` selector (repeatable, required)
    /// selects. Needs an admin or read key.
    #[oai(path = "/api/v1/series", method = "get", tag = "ApiTags::Query")]
    async fn series_get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::series(&state, &auth, Params::new(q.0, None)).await
    }

    /// The series lookup with its parameters in a form body.
    #[oai(path = "/api/v1/series", method = "post", tag = "ApiTags::Query")]
    async fn series_post(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
        form: FormParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::series(&state, &auth, Params::new(q.0, Some(form.pairs()))).await
    }

    /// Every label name, of the series `match[]` selects when given. Needs an admin or read key.
    #[oai(path = "/api/v1/labels", method = "get", tag = "ApiTags::Query")]
    async fn labels_get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::labels(&state, &auth, Params::new(q.0, None)).await
    }

    /// The label names with the parameters in a form body.
    #[oai(path = "/api/v1/labels", method = "post", tag = "ApiTags::Query")]
    async fn labels_post(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
        form: FormParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::labels(&state, &auth, Params::new(q.0, Some(form.pairs()))).await
    }

    /// Every value of the label `name` (`__name__` for metric names), of the series
    /// `match[]` selects when given. Needs an admin or read key.
    #[oai(path = "/api/v1/label/:name/values", method = "get", tag = "ApiTags::Query")]
    async fn label_values_get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        /// The label.
        name: Path<String>,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        Self::label_values(&state, &auth, &name, Params::new(q.0, None)).await
    }

    /// Metadata per metric name. homepot keeps no help text or type per series, so each
    /// name is listed with type `unknown` and a help text naming its point and field.
    /// Needs an admin or read key.
    #[oai(path = "/api/v1/metadata", method = "get", tag = "ApiTags::Query")]
    async fn metadata(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        q: QueryParams,
    ) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        let params = Params::new(q.0, None);
        let wanted = params.one("metric").filter(|m| !m.is_empty());
        let names = match state.homepot.series_names().await {
            Ok(names) => names,
            Err(error) => return failed(error),
        };
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for (name, field) in names {
            let prom = promql::series_name(&name, &field);
            if wanted.is_some_and(|w| w != prom) {
                continue;
            }
            out.entry(prom).or_insert_with(
                || json!([{"type": "unknown", "help": format!("homepot series: field {field} of {name}"), "unit": ""}]),
            );
        }
        Ok(success(json!(out)))
    }

    /// Build information. `version` is the Prometheus API version homepot answers to, so
    /// Grafana enables what that version has; `revision` is homepot's own version.
    #[oai(path = "/api/v1/status/buildinfo", method = "get", tag = "ApiTags::Query")]
    async fn buildinfo(&self, state: Data<&Arc<AppState>>, auth: MetricsAuth) -> Result<PromAnswer, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        Ok(success(json!({
            "version": "2.42.0",
            "revision": concat!("homepot-", env!("CARGO_PKG_VERSION")),
            "branch": "homepot",
            "buildUser": "homepot",
            "buildDate": "",
            "goVersion": "",
        })))
    }
}
