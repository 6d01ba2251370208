//! Exports: one table's rows in a time range as CSV or NDJSON, read from storage a page at a
//! time and encoded as the reader takes them. A bounded channel between the reading task and
//! the reader keeps memory flat however many rows there are: the task waits while the reader
//! is slow, and stops when the reader goes away.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use homepot_core::DeviceId;
use homepot_core::export::{Cell, ExportFormat};
use homepot_core::metric::FieldValue;
use homepot_storage::export::{ExportKind, ExportQuery, ExportRecord};
use homepot_storage::{StorageError, Store};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::rollups::Flush;
use crate::{EngineError, Homepot};

/// Rows read from storage at a time.
pub const EXPORT_PAGE: usize = 5_000;

/// Encoded pages waiting for the reader.
const BUFFERED_PAGES: usize = 2;

/// An export under way: its encoded bytes, in order, as the reader asks for them.
#[derive(Debug)]
pub struct Export {
    format: ExportFormat,
    chunks: mpsc::Receiver<Result<Vec<u8>, EngineError>>,
}

impl Export {
    /// Its encoding.
    #[must_use]
    pub fn format(&self) -> ExportFormat {
        self.format
    }

    /// The next encoded piece; `None` at the end. An error ends the export early: what was
    /// read before it stands, the rest is missing.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, EngineError>> {
        self.chunks.recv().await
    }
}

impl Homepot {
    /// Starts exporting `query`'s rows as `format`, rollups gathered in memory included (they
    /// are stored first). See [`export`].
    ///
    /// # Errors
    /// As [`export`].
    pub async fn export(&self, query: ExportQuery, format: ExportFormat) -> Result<Export, EngineError> {
        // What has gathered in memory is stored first, so the export holds every sample
        // accepted before it began.
        if query.kind == ExportKind::Rollups && !self.inner.rollups.flush(self.inner.store.as_ref(), Flush::All).await {
            let source = "the rollups gathered in memory could not be stored".into();
            return Err(StorageError::Unavailable { source }.into());
        }
        export(Arc::clone(&self.inner.store), query, format).await
    }
}

/// Starts exporting `query`'s rows from `store` as `format`. The first page is read before
/// this returns, so an unreachable store fails here rather than mid-export.
///
/// # Errors
/// [`EngineError::Invalid`] for a filter the table does not have or an empty range;
/// [`EngineError::DeviceNotFound`] for an unknown device in a health export; storage failures.
pub async fn export(store: Arc<dyn Store>, query: ExportQuery, format: ExportFormat) -> Result<Export, EngineError> {
    if query.from >= query.to {
        return Err(EngineError::invalid_parameter("from", "from must be before to".to_owned()));
    }
    if query.device.is_some() && !query.kind.has_device() {
        return Err(EngineError::invalid_parameter("device_id", format!("{} rows have no device", query.kind.name())));
    }
    if query.name.is_some() && !query.kind.has_name() {
        return Err(EngineError::invalid_parameter("name", format!("{} rows have no metric name", query.kind.name())));
    }
    if let (ExportKind::Health, Some(device)) = (query.kind, &query.device) {
        let known = match DeviceId::parse(device) {
            Ok(id) => store.device(&id).await?.is_some(),
            Err(_) => false,
        };
        if !known {
            return Err(EngineError::DeviceNotFound(device.clone()));
        }
    }
    let first = store.export_page(&query, None, EXPORT_PAGE).await?;
    let (sender, chunks) = mpsc::channel(BUFFERED_PAGES);
    tokio::spawn(async move {
        let columns = columns(query.kind);
        let mut out = Vec::new();
        format.header(columns, &mut out);
        let mut page = first;
        loop {
            for row in &page.rows {
                format.row(columns, &cells(row), &mut out);
            }
            if !out.is_empty() && sender.send(Ok(std::mem::take(&mut out))).await.is_err() {
                return; // The reader went away.
            }
            let Some(after) = page.next else { return };
            page = match store.export_page(&query, Some(after), EXPORT_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, kind = query.kind.name(), "export stopped");
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
        }
    });
    Ok(Export { format, chunks })
}

/// The end of an export without one: later than any row, even one stamped in the future.
#[must_use]
pub fn export_end() -> DateTime<Utc> {
    DateTime::from_timestamp(32_503_680_000, 0).unwrap_or(DateTime::UNIX_EPOCH) // 3000-01-01
}

/// The columns of `kind`'s rows, in order.
#[must_use]
pub fn columns(kind: ExportKind) -> &'static [&'static str] {
    match kind {
        ExportKind::Health => &[
            "id",
            "device_id",
            "checked_at",
            "is_healthy",
            "response_time_ms",
            "status_code",
            "endpoint",
            "error_message",
            "cpu_percent",
            "memory_percent",
            "disk_percent",
            "response_data",
        ],
        ExportKind::Metrics => &["time", "time_ns", "name", "metric_type", "tags", "fields"],
        ExportKind::Rollups => {
            &["bucket_start", "tier", "name", "field", "tags", "count", "sum", "min", "max", "avg", "last", "last_time"]
        }
        ExportKind::RequestLogs => &[
            "timestamp",
            "endpoint",
            "method",
            "status_code",
            "response_time_ms",
            "user_id",
            "ip_address",
            "user_agent",
            "error_message",
            "request_size_bytes",
            "response_size_bytes",
        ],
        ExportKind::StateChanges => &[
            "timestamp",
            "device_id",
            "previous_state",
            "new_state",
            "changed_by",
            "recorded_by",
            "reason",
            "metadata",
        ],
        ExportKind::JobOutcomes => &[
            "timestamp",
            "job_id",
            "job_type",
            "device_id",
            "status",
            "duration_ms",
            "error_code",
            "error_message",
            "retry_count",
            "initiated_by",
            "metadata",
        ],
        ExportKind::ErrorLogs => &[
            "timestamp",
            "category",
            "severity",
            "error_code",
            "error_message",
            "stack_trace",
            "endpoint",
            "user_id",
            "device_id",
            "context",
            "resolved",
        ],
        ExportKind::UserActivity => &[
            "timestamp",
            "user_id",
            "session_id",
            "activity_type",
            "page_url",
            "element_id",
            "search_query",
            "duration_ms",
            "metadata",
        ],
    }
}

fn object(map: &Map<String, Value>) -> Cell {
    Cell::Json(Value::Object(map.clone()))
}

fn time_ns(ns: i64) -> Cell {
    Cell::Time(DateTime::<Utc>::from_timestamp_nanos(ns))
}

fn field_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        FieldValue::Integer(n) => Value::from(*n),
        FieldValue::UInteger(n) => Value::from(*n),
        FieldValue::Boolean(b) => Value::Bool(*b),
        FieldValue::String(s) => Value::String(s.clone()),
    }
}

fn tags_json(tags: &[(String, String)]) -> Cell {
    Cell::Json(Value::Object(tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()))
}

/// `row`'s cells, pairing with [`columns`] of its kind.
#[must_use]
pub fn cells(row: &ExportRecord) -> Vec<Cell> {
    match row {
        ExportRecord::Health(h) => {
            let system = |figure: &str| Cell::float(h.response_data.get("system").and_then(|s| s[figure].as_f64()));
            vec![
                Cell::Int(h.id.0),
                Cell::Text(h.device_id.to_string()),
                Cell::Time(h.checked_at),
                Cell::Bool(h.is_healthy),
                Cell::Int(h.response_time_ms),
                Cell::Int(h.status_code),
                Cell::text(h.endpoint.as_deref()),
                Cell::text(h.error_message.as_deref()),
                system("cpu_percent"),
                system("memory_percent"),
                system("disk_percent"),
                object(&h.response_data),
            ]
        }
        ExportRecord::Metric(p) => vec![
            time_ns(p.timestamp_ns()),
            Cell::Int(p.timestamp_ns()),
            Cell::Text(p.name().to_owned()),
            Cell::Text(p.metric_type().as_str().to_owned()),
            tags_json(p.tags()),
            Cell::Json(Value::Object(p.fields().iter().map(|(k, v)| (k.clone(), field_json(v))).collect())),
        ],
        ExportRecord::Rollup { series, tier, start, aggregate } => vec![
            time_ns(start.saturating_mul(1_000_000_000)),
            Cell::Text(tier.as_str().to_owned()),
            Cell::Text(series.name.clone()),
            Cell::Text(series.field.clone()),
            tags_json(&series.tags),
            Cell::Int(i64::try_from(aggregate.count).unwrap_or(i64::MAX)),
            Cell::Float(aggregate.sum.to_f64()),
            Cell::Float(aggregate.min),
            Cell::Float(aggregate.max),
            Cell::Float(aggregate.avg()),
            Cell::Float(aggregate.last),
            time_ns(aggregate.last_ns),
        ],
        ExportRecord::RequestLog(r) => vec![
            Cell::Time(r.timestamp),
            Cell::Text(r.endpoint.clone()),
            Cell::Text(r.method.clone()),
            Cell::Int(i64::from(r.status_code)),
            Cell::Float(r.response_time_ms),
            Cell::text(r.user_id.as_deref()),
            Cell::text(r.ip_address.as_deref()),
            Cell::text(r.user_agent.as_deref()),
            Cell::text(r.error_message.as_deref()),
            Cell::int(r.request_size_bytes),
            Cell::int(r.response_size_bytes),
        ],
        ExportRecord::StateChange(c) => vec![
            Cell::Time(c.timestamp),
            Cell::Text(c.device_id.clone()),
            Cell::text(c.previous_state.as_deref()),
            Cell::Text(c.new_state.clone()),
            Cell::Text(c.changed_by.clone()),
            Cell::text(c.recorded_by.as_deref()),
            Cell::text(c.reason.as_deref()),
            object(&c.metadata),
        ],
        ExportRecord::JobOutcome(j) => vec![
            Cell::Time(j.timestamp),
            Cell::Text(j.job_id.clone()),
            Cell::Text(j.job_type.clone()),
            Cell::text(j.device_id.as_deref()),
            Cell::Text(j.status.as_str().to_owned()),
            Cell::int(j.duration_ms),
            Cell::text(j.error_code.as_deref()),
            Cell::text(j.error_message.as_deref()),
            Cell::Int(j.retry_count),
            Cell::text(j.initiated_by.as_deref()),
            object(&j.metadata),
        ],
        ExportRecord::ErrorLog(e) => vec![
            Cell::Time(e.timestamp),
            Cell::Text(e.category.clone()),
            Cell::Text(e.severity.as_str().to_owned()),
            Cell::text(e.error_code.as_deref()),
            Cell::Text(e.error_message.clone()),
            Cell::text(e.stack_trace.as_deref()),
            Cell::text(e.endpoint.as_deref()),
            Cell::text(e.user_id.as_deref()),
            Cell::text(e.device_id.as_deref()),
            object(&e.context),
            Cell::Bool(e.resolved),
        ],
        ExportRecord::UserActivity(a) => vec![
            Cell::Time(a.timestamp),
            Cell::Text(a.user_id.clone()),
            Cell::text(a.session_id.as_deref()),
            Cell::Text(a.activity_type.clone()),
            Cell::text(a.page_url.as_deref()),
            Cell::text(a.element_id.as_deref()),
            Cell::text(a.search_query.as_deref()),
            Cell::int(a.duration_ms),
            object(&a.metadata),
        ],
    }
}

#[cfg(test)]
mod tests {
    use homepot_core::Point;
    use homepot_core::analytics::{RequestLog, StateChange};
    use homepot_core::metric::MetricType;
    use homepot_core::rollup::{Aggregate, Tier};
    use homepot_storage::SeriesKey;

    use super::*;

    #[test]
    fn every_row_has_a_cell_per_column() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let point = Point::new("cpu".into(), vec![], vec![("v".into(), FieldValue::Integer(1))], 0, MetricType::Gauge);
        let rows = [
            ExportRecord::Metric(point.unwrap()),
            ExportRecord::Rollup {
                series: SeriesKey { name: "cpu".into(), tags: vec![], field: "v".into() },
                tier: Tier::Hour,
                start: 0,
                aggregate: Aggregate::sample(1.0, 0),
            },
            ExportRecord::RequestLog(RequestLog {
                timestamp: at,
                endpoint: "/".into(),
                method: "GET".into(),
                status_code: 200,
                response_time_ms: 1.0,
                user_id: None,
                ip_address: None,
                user_agent: None,
                error_message: None,
                request_size_bytes: None,
                response_size_bytes: None,
            }),
            ExportRecord::StateChange(StateChange {
                timestamp: at,
                device_id: "d".into(),
                previous_state: None,
                new_state: "online".into(),
                changed_by: "system".into(),
                recorded_by: None,
                reason: None,
                metadata: Map::new(),
            }),
        ];
        let kinds = [ExportKind::Metrics, ExportKind::Rollups, ExportKind::RequestLogs, ExportKind::StateChanges];
        for (row, kind) in rows.iter().zip(kinds) {
            assert_eq!(cells(row).len(), columns(kind).len(), "{kind:?}");
        }
    }
}
