//! The request log's HTTP side (the original AnalyticsMiddleware): a middleware that builds a
//! [`RequestLog`] for each request once its response head is ready, named by the documented
//! route template, and hands it to the engine, which never makes the request wait (a full
//! queue drops and counts the log).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use homepot_core::KeyHash;
use homepot_core::analytics::{MAX_ENDPOINT_LEN, MAX_LOGGED_ERROR_LEN, RequestLog};
use homepot_engine::Homepot;
use poem::PathPattern;
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::auth::presented_key;
use crate::rate_limit::client_ip;

/// Settings of analytics collection.
#[derive(Debug, Clone)]
pub struct AnalyticsConfig {
    /// Log requests and accept the collection endpoints (`ANALYTICS_ENABLED`).
    pub enabled: bool,
    /// Request logs that may wait for storage before new ones are dropped.
    pub queue_capacity: usize,
    /// Most request logs written in one transaction.
    pub max_batch: usize,
    /// Routes not logged: `"/path/{param}"` for every method or `"METHOD /path/{param}"`.
    pub skip: Vec<String>,
    /// Analytics records older than this are deleted (`ANALYTICS_RETENTION_DAYS`); `None`
    /// keeps them forever.
    pub retention: Option<Duration>,
    /// How often the retention job runs.
    pub retention_interval: Duration,
}

/// Liveness, scrapes, the stream and the high-volume ingest routes: logging them would
/// multiply writes without telling an operator anything the counters do not.
pub const DEFAULT_SKIP: [&str; 13] = [
    "/health",
    "/api/health",
    "/metrics",
    "/metrics/stream",
    "/ws",
    "POST /api/v1/devices/{device_id}/health",
    "POST /api/v1/metrics",
    "POST /api/v1/metrics/simple",
    "POST /api/v1/metrics/influx",
    "POST /api/v1/metrics/otlp",
    "POST /write",
    "POST /api/monitoring/nodes/{node_id}/resources",
    "POST /api/v1/containers/metrics",
];

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 10_000,
            max_batch: 1_000,
            skip: DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect(),
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// Builds request logs and hands them to the engine.
#[derive(Debug)]
pub(crate) struct RequestLogger {
    homepot: Homepot,
    /// poem-openapi routes name path parameters by position (`/devices/:param0`): this maps
    /// each route to its documented template (`/devices/{device_id}`).
    templates: HashMap<String, String>,
    skip: HashSet<String>,
    trust_forwarded_headers: bool,
}

/// The route poem-openapi registers for a documented template: each `{name}` segment
/// becomes `:param<i>`, numbered from 0 in path order.
fn registered_route(template: &str) -> String {
    let mut index = 0;
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                index += 1;
                format!(":param{}", index - 1)
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A matched route in OpenAPI form: any other `:name` segment becomes `{name}`.
fn braced(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn cut(mut text: String, max: usize) -> String {
    if let Some((index, _)) = text.char_indices().nth(max) {
        text.truncate(index);
    }
    text
}

/// The `detail` of an error body, or the body itself when it has none.
fn error_detail(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = match parsed.as_ref().and_then(|v| v.get("detail")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    cut(text, MAX_LOGGED_ERROR_LEN)
}

impl RequestLogger {
    /// `documented` lists the API's route templates, as in its OpenAPI document.
    pub(crate) fn new<'a>(
        homepot: Homepot,
        skip: &[String],
        documented: impl IntoIterator<Item = &'a str>,
        trust_forwarded_headers: bool,
    ) -> Self {
        let templates = documented.into_iter().map(|t| (registered_route(t), t.to_owned())).collect();
        let skip = skip.iter().cloned().collect();
        Self { homepot, templates, skip, trust_forwarded_headers }
    }

    fn template(&self, pattern: &str) -> String {
        match self.templates.get(pattern) {
            Some(template) => template.clone(),
            None => cut(braced(pattern), MAX_ENDPOINT_LEN),
        }
    }

    fn skipped(&self, method: &str, endpoint: &str) -> bool {
        self.skip.contains(endpoint) || self.skip.contains(&format!("{method} {endpoint}"))
    }

    /// Serves `request` with `next` and logs it.
    pub(crate) async fn around<E: Endpoint>(&self, next: &E, request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let timestamp = self.homepot.now();
        let method = request.method().as_str().to_owned();
        // Hashed only if the route is logged: skipped ingest routes pay for a copy at most.
        let key = presented_key(&request);
        let ip = client_ip(&request, self.trust_forwarded_headers);
        let user_agent = request.header("user-agent").map(|ua| cut(ua.to_owned(), 500));
        let request_size_bytes = request.header("content-length").and_then(|v| v.parse::<i64>().ok());

        let mut response = next.call(request).await?.into_response();
        let response_time_ms = started.elapsed().as_secs_f64() * 1_000.0;

        // Unmatched paths are one bucket: raw paths would let any client grow the table's
        // cardinality at will.
        let endpoint = match response.data::<PathPattern>() {
            Some(pattern) => self.template(&pattern.0),
            None => "(unmatched)".to_owned(),
        };
        if self.skipped(&method, &endpoint) {
            return Ok(response);
        }
        let status = response.status();
        let mut error_message = None;
        let response_size_bytes = if status.is_client_error() || status.is_server_error() {
            // Error bodies are small JSON documents: read, keep their detail, put back.
            let bytes = response.take_body().into_bytes().await.unwrap_or_default();
            error_message = Some(error_detail(&bytes));
            let size = i64::try_from(bytes.len()).ok();
            response.set_body(bytes);
            size
        } else {
            exact_size(&mut response)
        };
        let log = RequestLog {
            timestamp,
            endpoint,
            method,
            status_code: status.as_u16(),
            response_time_ms,
            user_id: key.map(|k| KeyHash::of(&k).fingerprint()),
            ip_address: ip.map(|ip| ip.to_string()),
            user_agent,
            error_message,
            request_size_bytes,
            response_size_bytes,
        };
        self.homepot.log_request(log);
        Ok(response)
    }
}

/// The body's length when it is known without reading it (not for streams).
fn exact_size(response: &mut Response) -> Option<i64> {
    let body: http_body_util::combinators::BoxBody<Bytes, std::io::Error> = response.take_body().into();
    let size = http_body::Body::size_hint(&body).exact();
    response.set_body(Body::from(body));
    size.and_then(|n| i64::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_documented_templates() {
        assert_eq!(registered_route("/api/v1/devices/{device_id}/health"), "/api/v1/devices/:param0/health");
        assert_eq!(registered_route("/a/{x}/b/{y}"), "/a/:param0/b/:param1");
        assert_eq!(registered_route("/health"), "/health");
        assert_eq!(braced("/docs/:file"), "/docs/{file}");
    }

    #[test]
    fn error_details_are_extracted_and_cut() {
        assert_eq!(error_detail(br#"{"detail": "Device 'x' not found"}"#), "Device 'x' not found");
        assert_eq!(error_detail(br#"{"detail": [{"loc": ["body"]}]}"#), r#"[{"loc":["body"]}]"#);
        assert_eq!(error_detail(b"plain"), "plain");
        assert_eq!(error_detail("é".repeat(2_000).as_bytes()).chars().count(), MAX_LOGGED_ERROR_LEN);
    }
}
