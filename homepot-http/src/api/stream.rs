//! The live stream: Server-Sent Events of the live view, one per interval, and a page that
//! shows them in a browser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use homepot_core::prometheus::metric_name;
use poem::web::Data;
use poem::{IntoResponse, Request};
use poem_openapi::payload::{EventStream, Html};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tokio::time::MissedTickBehavior;

use super::{ApiTags, AppState};
use crate::auth::MetricsAuth;
use crate::error::ApiError;

/// The live metrics stream (metrics service).
#[derive(Debug, Default)]
pub(crate) struct StreamApi;

/// One sample of a stream event.
#[derive(Debug, Object)]
struct StreamMetric {
    /// `<name>` for a `value` field, else `<name>_<field>`, as in `/metrics`.
    name: String,
    /// The series' tags.
    labels: BTreeMap<String, String>,
    /// The field's latest value.
    value: f64,
    /// Time of the series' newest point, Unix milliseconds.
    timestamp: i64,
}

/// `{"timestamp": ms, "metrics": [...]}`: every numeric live sample at that moment.
#[derive(Debug, Object)]
struct StreamEvent {
    /// When the event was made, Unix milliseconds.
    timestamp: i64,
    /// Every live numeric sample.
    metrics: Vec<StreamMetric>,
}

/// Server-Sent Events, or for a browser an HTML page that renders them.
enum StreamResponse {
    Events(EventStream<BoxStream<'static, serde_json::Value>>),
    Page(Html<String>),
}

impl IntoResponse for StreamResponse {
    fn into_response(self) -> poem::Response {
        match self {
            StreamResponse::Events(events) => events.into_response(),
            StreamResponse::Page(page) => page.into_response(),
        }
    }
}

impl ApiResponse for StreamResponse {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "An event per interval; a browser asking for HTML gets a live table.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType { content_type: "text/event-stream", schema: StreamEvent::schema_ref() },
                    MetaMediaType {
                        content_type: "text/html",
                        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        StreamEvent::register(registry);
    }
}

/// Wants the page rather than the events: a browser navigating, not an `EventSource`.
fn wants_page(request: &Request) -> bool {
    let accept = request.header("accept").unwrap_or_default();
    accept.contains("text/html") && !accept.contains("text/event-stream")
}

fn snapshot(state: &AppState) -> StreamEvent {
    let live = state.homepot.live();
    let mut metrics = Vec::new();
    for (key, series) in live.series(None) {
        for (field, value) in &series.fields {
            let Some(value) = value.as_f64() else { continue };
            metrics.push(StreamMetric {
                name: metric_name(&key.name, field),
                labels: key.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                value,
                timestamp: series.timestamp_ns.div_euclid(1_000_000),
            });
        }
    }
    StreamEvent { timestamp: state.homepot.now().timestamp_millis(), metrics }
}

#[OpenApi]
impl StreamApi {
    /// Live metrics as Server-Sent Events, one event per interval
    /// (`PROMETHEUS_POLLER_INTERVAL_MS`), and alert changes as events named `alert`
    /// (`{"type": "alert_firing", "alert": {...}}`). A browser gets a page with a table updated in place;
    /// sign in at `/` first (the session cookie is sent), or pass the key as `?p=KEY`.
    /// Needs an admin or read key.
    #[oai(path = "/metrics/stream", method = "get", tag = "ApiTags::Live")]
    async fn stream(
        &self,
        state: Data<&Arc<AppState>>,
        auth: MetricsAuth,
        request: &Request,
    ) -> Result<StreamResponse, ApiError> {
        state.authenticate_metrics(&auth).await?.require_reader()?;
        if wants_page(request) {
            return Ok(StreamResponse::Page(Html(PAGE.to_owned())));
        }
        let state = Arc::clone(&state);
        let guard = state.homepot.stats().subscribe();
        let mut ticks = tokio::time::interval(state.stream_interval);
        // A slow client skips ticks instead of queueing events: nothing piles up for it.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // The guard lives in the stream's state, so the subscriber count drops when the client
        // goes away and poem drops the stream.
        let alerts = state.homepot.alert_updates();
        let events =
            stream::unfold((ticks, alerts, state, guard), |(mut ticks, mut alerts, state, guard)| async move {
                let event = tokio::select! {
                    _ = ticks.tick() => {
                        let event = snapshot(&state);
                        state.homepot.stats().sse_event();
                        poem_openapi::types::ToJSON::to_json(&event).unwrap_or_default()
                    }
                    Ok(update) = alerts.recv() => super::alerts::update_json(&update),
                };
                Some((event, (ticks, alerts, state, guard)))
            });
        // Metrics snapshots are unnamed `message` events, as before; alert changes are named
        // `alert`, so clients that only listen for messages never see them.
        let events = EventStream::new(events.boxed()).keep_alive(Duration::from_secs(15)).to_event(|value| {
            let event = if value.get("alert").is_some() { Some("alert") } else { None };
            let mut sse = poem::web::sse::Event::message(value.to_string());
            if let Some(name) = event {
                sse = sse.event_type(name);
            }
            sse
        });
        Ok(StreamResponse::Events(events))
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>homepot live metrics</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}
td,th{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}td.v{text-align:right;font-variant-numeric:tabular-nums}</style>
</head><body><h1>homepot live metrics</h1><p id="status">connecting…</p>
<table><thead><tr><th>metric</th><th>labels</th><th>value</th><th>time</th></tr></thead><tbody id="rows"></tbody></table>
<script>
const rows = document.getElementById("rows"), status = document.getElementById("status"), cells = new Map();
const source = new EventSource(location.href);
source.onopen = () => { status.textContent = "live"; };
source.onerror = () => { status.textContent = "reconnecting…"; };
source.onmessage = (message) => {
  const event = JSON.parse(message.data);
  status.textContent = "live, " + new Date(event.timestamp).toLocaleTimeString();
  for (const m of event.metrics) {
    const labels = Object.entries(m.labels).map(([k, v]) => k + "=" + v).join(", ");
    const key = m.name + "{" + labels + "}";
    let row = cells.get(key);
    if (!row) {
      row = rows.insertRow();
      row.insertCell().textContent = m.name;
      row.insertCell().textContent = labels;
      row.insertCell().className = "v";
      row.insertCell();
      cells.set(key, row);
    }
    row.cells[2].textContent = m.value;
    row.cells[3].textContent = new Date(m.timestamp).toLocaleTimeString();
  }
};
</script></body></html>
"#;
