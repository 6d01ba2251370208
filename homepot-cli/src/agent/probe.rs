//! `--check URL`: probes a local HTTP endpoint and reports it in the device health API's own
//! fields: `is_healthy` (a 2xx answer), `response_time_ms`, `status_code`, `endpoint` (the
//! URL's path), `response_data` (a JSON object answer) and `error_message`.

use std::time::{Duration, Instant};

use homepot_core::HealthReport;
use homepot_core::health::{GROUP_KEYS, MAX_ENDPOINT_LEN, MAX_ERROR_MESSAGE_LEN, MAX_RESPONSE_DATA_DEPTH};
use serde_json::{Map, Value};

/// Longest answer read from a check.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Reported as the status of a check that got no HTTP answer at all.
const NO_ANSWER_STATUS: i64 = 503;

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckResult {
    pub(crate) endpoint: String,
    pub(crate) is_healthy: bool,
    pub(crate) response_time_ms: i64,
    pub(crate) status_code: i64,
    pub(crate) response_data: Map<String, Value>,
    pub(crate) error_message: Option<String>,
}

fn endpoint_of(url: &str) -> String {
    let path = reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.path().to_owned());
    truncate(path, MAX_ENDPOINT_LEN)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.chars().count() > max {
        text = text.chars().take(max).collect();
    }
    text
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl CheckResult {
    /// A check that got no answer.
    pub(crate) fn failed(url: &str, response_time_ms: i64, error: String) -> Self {
        Self {
            endpoint: endpoint_of(url),
            is_healthy: false,
            response_time_ms,
            status_code: NO_ANSWER_STATUS,
            response_data: Map::new(),
            error_message: Some(truncate(error, MAX_ERROR_MESSAGE_LEN)),
        }
    }

    /// Writes the check's fields into `report`.
    pub(crate) fn fill(self, report: &mut HealthReport) {
        report.is_healthy = self.is_healthy;
        report.response_time_ms = self.response_time_ms;
        report.status_code = self.status_code;
        report.endpoint = Some(self.endpoint);
        report.response_data = self.response_data;
        report.error_message = self.error_message;
    }
}

/// Probes local checks.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    client: reqwest::Client,
}

impl Probe {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(Self { client })
    }

    /// Probes every URL at once.
    pub(crate) async fn run(&self, urls: &[String]) -> Vec<CheckResult> {
        futures_util::future::join_all(urls.iter().map(|url| self.check(url))).await
    }

    async fn check(&self, url: &str) -> CheckResult {
        let started = Instant::now();
        let elapsed =
            || i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::from(i32::MAX)).min(i64::from(i32::MAX));
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(error) => return CheckResult::failed(url, elapsed(), format!("no answer: {error}")),
        };
        let status = response.status();
        let body = read_limited(response).await;
        let response_time_ms = elapsed();
        let mut response_data = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) if depth(&Value::Object(map.clone())) < MAX_RESPONSE_DATA_DEPTH => map,
            _ => Map::new(),
        };
        // The health groups are the agent's own readings, never the checked service's.
        for key in GROUP_KEYS {
            response_data.remove(key);
        }
        let error_message = (!status.is_success()).then(|| {
            let text = String::from_utf8_lossy(&body);
            truncate(format!("HTTP {status}: {}", text.trim()), MAX_ERROR_MESSAGE_LEN)
        });
        CheckResult {
            endpoint: endpoint_of(url),
            is_healthy: status.is_success(),
            response_time_ms,
            status_code: i64::from(status.as_u16()).clamp(100, 599),
            response_data,
            error_message,
        }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ANSWER_BYTES {
            body.truncate(MAX_ANSWER_BYTES);
            break;
        }
    }
    body
}
