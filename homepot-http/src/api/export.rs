//! Exports of whole tables (`GET /api/v1/export`), streamed as CSV or NDJSON while storage is
//! read page by page.

use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use futures_util::stream;
use homepot_core::ErrorKind;
use homepot_core::export::ExportFormat;
use homepot_core::rollup::Tier;
use homepot_engine::Export;
use homepot_storage::export::{ExportKind, ExportQuery};
use poem::web::Data;
use poem::{Body, IntoResponse};
use poem_openapi::param::Query;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, AppState, instant};
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

/// Table exports.
#[derive(Debug, Default)]
pub(crate) struct ExportApi;

/// An export's body, streamed as storage is read.
struct ExportResponse(Export);

impl IntoResponse for ExportResponse {
    fn into_response(self) -> poem::Response {
        let content_type = self.0.format().content_type();
        let chunks = stream::unfold(self.0, |mut export| async move {
            let chunk = export.next_chunk().await?;
            // An error mid-way aborts the response, so the client sees a truncated transfer
            // rather than a complete-looking file.
            Some((chunk.map(Bytes::from).map_err(std::io::Error::other), export))
        });
        poem::Response::builder().content_type(content_type).body(Body::from_bytes_stream(chunks))
    }
}

impl ApiResponse for ExportResponse {
    fn meta() -> MetaResponses {
        let text = || MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")));
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The rows, oldest first: CSV with a header line, or one JSON object per line.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType { content_type: "text/csv", schema: text() },
                    MetaMediaType { content_type: "application/x-ndjson", schema: text() },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(_registry: &mut Registry) {}
}

#[OpenApi]
impl ExportApi {
    /// Every row of one table in `[from, to)`, oldest first, streamed as CSV (default) or
    /// NDJSON in constant memory. `kind` is `health`, `metrics`, `rollups` (one `tier`: `1m`,
    /// `1h` (default) or `1d`), `request_logs`, `state_changes`, `job_outcomes`,
    /// `error_logs` or `user_activity`. `device_id` narrows every kind that has a device
    /// (points and rollups by their `device_id` tag); `name` narrows metrics and rollups.
    /// `from` and `to` take RFC 3339 or Unix seconds; without them, every row. Admin only.
    #[oai(path = "/api/v1/export", method = "get", tag = "ApiTags::Query")]
    #[allow(clippy::too_many_arguments)]
    async fn export(
        &self,
        state: Data<&Arc<AppState>>,
        auth: ApiKeyAuth,
        /// The table.
        kind: Query<String>,
        /// Start, inclusive: RFC 3339 or Unix seconds.
        from: Query<Option<String>>,
        /// End, exclusive: RFC 3339 or Unix seconds.
        to: Query<Option<String>>,
        /// Only this device's rows.
        device_id: Query<Option<String>>,
        /// Only this metric's rows (metrics, rollups).
        #[oai(validator(min_length = 1, max_length = 256))]
        name: Query<Option<String>>,
        /// The rollup tier: `1m`, `1h` (default) or `1d`.
        tier: Query<Option<String>>,
        /// `csv` (default) or `ndjson`.
        format: Query<Option<String>>,
    ) -> Result<ExportResponse, ApiError> {
        state.authenticate(&auth).await?.require_admin()?;
        let invalid = |parameter: &str, message: String| {
            ApiError::invalid_field("query", parameter, ErrorKind::BadFormat, message)
        };
        let kind = ExportKind::parse(&kind.0).ok_or_else(|| {
            let kinds: Vec<&str> = ExportKind::ALL.iter().map(|k| k.name()).collect();
            invalid("kind", format!("kind is one of {}", kinds.join(", ")))
        })?;
        let format = match format.0.as_deref() {
            None => ExportFormat::Csv,
            Some(raw) => {
                ExportFormat::parse(raw).ok_or_else(|| invalid("format", "format is csv or ndjson".to_owned()))?
            }
        };
        let tier = match tier.0.as_deref() {
            None => Tier::Hour,
            Some(raw) => Tier::parse(raw).ok_or_else(|| invalid("tier", "tier is 1m, 1h or 1d".to_owned()))?,
        };
        let query = ExportQuery {
            kind,
            from: instant("from", from.0.as_deref(), DateTime::UNIX_EPOCH)?,
            to: instant("to", to.0.as_deref(), homepot_engine::export_end())?,
            device: device_id.0,
            name: name.0,
            tier,
        };
        Ok(ExportResponse(state.homepot.export(query, format).await?))
    }
}
