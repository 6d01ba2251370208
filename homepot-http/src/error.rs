//! `ApiError`: every failure the API reports, mapped to a status and the original APIs'
//! `{"detail": ...}` bodies in one place. Lower crates' errors convert here, and
//! [`catch_all`] gives framework errors (bad parameters, unknown routes) the same shape.

use homepot_core::{ErrorKind, FieldError, LocSegment, ValidationErrors};
use homepot_storage::StorageError;

use homepot_engine::EngineError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

/// `{"detail": "..."}`.
#[derive(Debug, Object)]
pub(crate) struct ErrorDetail {
    /// What went wrong.
    detail: String,
}

/// One invalid field, as the original APIs' 422 bodies list them.
#[derive(Debug, Object)]
pub(crate) struct FieldErrorBody {
    /// Path to the field: `["body", "system", "cpu_percent"]`, `["query", "hours"]`.
    loc: Vec<Value>,
    /// What is wrong.
    msg: String,
    /// Machine-readable kind, e.g. `value_error.missing`.
    #[oai(rename = "type")]
    kind: String,
}

/// `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
#[derive(Debug, Object)]
pub(crate) struct ValidationErrorBody {
    /// Every invalid field.
    detail: Vec<FieldErrorBody>,
}

/// Every error response of the API.
#[derive(Debug, ApiResponse)]
pub(crate) enum ApiError {
    /// The API key is missing or unknown.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorDetail>),
    /// The API key may not do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorDetail>),
    /// The resource does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorDetail>),
    /// The request body did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorDetail>),
    /// The resource already exists, or the change would conflict with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorDetail>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorDetail>),
    /// The request body is not JSON.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorDetail>),
    /// Too many requests from this client: retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorDetail>,
        #[oai(header = "Retry-After")] u64,
        #[oai(header = "X-RateLimit-Remaining")] u32,
        #[oai(header = "X-RateLimit-Reset")] i64,
    ),
    /// A field is missing, of the wrong type or out of range.
    #[oai(status = 422)]
    Unprocessable(Json<ValidationErrorBody>),
    /// An unexpected server fault.
    #[oai(status = 500)]
    Internal(Json<ErrorDetail>),
    /// Storage is unavailable or the write queue is full: retry after the given seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorDetail>, #[oai(header = "Retry-After")] u32),
    /// A device did not answer in time.
    #[oai(status = 504)]
    GatewayTimeout(Json<ErrorDetail>),
}

impl ErrorDetail {
    pub(crate) fn new(detail: String) -> Self {
        Self { detail }
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self { detail: format!("Request body exceeds the limit of {limit} bytes") }
    }
}

fn detail(message: impl Into<String>) -> Json<ErrorDetail> {
    Json(ErrorDetail { detail: message.into() })
}

impl ApiError {
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(detail(message))
    }
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(detail(message))
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(detail(message))
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(detail(message))
    }
    pub(crate) fn device_not_found(device_id: &str) -> Self {
        Self::not_found(format!("Device '{device_id}' not found"))
    }
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(detail(message), 1)
    }
    pub(crate) fn too_many_requests(wait: std::time::Duration, reset_unix: i64) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::TooManyRequests(
            detail(format!("Rate limit exceeded, retry in {seconds} s")),
            seconds.max(1),
            0,
            reset_unix,
        )
    }
    pub(crate) fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::GatewayTimeout(detail(message))
    }
    pub(crate) fn internal() -> Self {
        Self::Internal(detail("Internal Server Error"))
    }

    /// A 422 for errors located in `part` of the request (`body`, `query`, `path`).
    pub(crate) fn invalid(part: &str, errors: ValidationErrors) -> Self {
        let detail = errors
            .prefixed(part)
            .errors()
            .iter()
            .map(|e| FieldErrorBody {
                loc: e
                    .loc
                    .iter()
                    .map(|s| match s {
                        LocSegment::Field(name) => Value::from(name.as_str()),
                        LocSegment::Index(i) => Value::from(*i),
                    })
                    .collect(),
                msg: e.msg.clone(),
                kind: e.kind.as_str().to_owned(),
            })
            .collect();
        Self::Unprocessable(Json(ValidationErrorBody { detail }))
    }

    /// A 422 for one field.
    pub(crate) fn invalid_field(part: &str, field: &str, kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self::invalid(part, ValidationErrors::single(FieldError::new(vec![LocSegment::from(field)], kind, msg)))
    }
}

impl From<&StorageError> for ApiError {
    fn from(error: &StorageError) -> Self {
        // What a caller can act on becomes a status; the backend's details are logged, not sent.
        match error {
            StorageError::NotFound { what } => Self::not_found(format!("{what} not found")),
            StorageError::Conflict { what } => Self::Conflict(detail(format!("{what} already exists"))),
            StorageError::Unavailable { source } => {
                tracing::warn!(error = %source, "storage unavailable");
                Self::unavailable("Storage is unavailable, retry later")
            }
            error => {
                tracing::error!(%error, "storage failed");
                Self::internal()
            }
        }
    }
}

/// The one place engine errors become HTTP statuses.
impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Unauthorized(message) => Self::unauthorized(message),
            EngineError::Forbidden(message) => Self::forbidden(message),
            EngineError::DeviceNotFound(device) => Self::device_not_found(&device),
            EngineError::NotFound(message) => Self::not_found(message),
            EngineError::Conflict(message) => Self::conflict(message),
            EngineError::Invalid { part, errors } => Self::invalid(part, errors),
            EngineError::SeriesLimit(error) => {
                Self::invalid_field("body", "tags", ErrorKind::TooLarge, error.to_string())
            }
            EngineError::Overloaded => Self::unavailable("Write queue is full, retry later"),
            EngineError::Stopped => Self::unavailable("Server is shutting down"),
            EngineError::NoTransport(message) => Self::unavailable(message),
            EngineError::Timeout(message) => Self::gateway_timeout(message),
            EngineError::Storage(error) => Self::from(error.as_ref()),
            EngineError::Promql(error) => {
                Self::invalid_field("query", "query", ErrorKind::BadFormat, error.to_string())
            }
            error => {
                tracing::error!(%error, "request failed");
                Self::internal()
            }
        }
    }
}

/// Gives every error that did not come from a handler (framework parse errors, unknown
/// routes, panics) the API's error shape, so clients meet one format.
pub(crate) async fn catch_all(error: poem::Error) -> Response {
    if error.is_from_response() {
        return error.into_response();
    }
    // The matched route travels on, so the request log can name it.
    let pattern = error.data::<poem::PathPattern>().cloned();
    let mut response = shape(error);
    if let Some(pattern) = pattern {
        response.set_data(pattern);
    }
    response
}

fn shape(error: poem::Error) -> Response {
    let api_error = if let Some(e) = error.downcast_ref::<ParseParamError>() {
        let (kind, msg) = describe_param_error(&e.reason);
        ApiError::invalid_field("query", e.name, kind, msg)
    } else if let Some(e) = error.downcast_ref::<ParsePathError>() {
        ApiError::not_found(e.to_string())
    } else if let Some(e) = error.downcast_ref::<ParseRequestPayloadError>() {
        ApiError::invalid(
            "body",
            ValidationErrors::single(FieldError::new(Vec::new(), ErrorKind::JsonDecode, e.reason.clone())),
        )
    } else if let Some(e) = error.downcast_ref::<ContentTypeError>() {
        let got = match e {
            ContentTypeError::NotSupported { content_type } => content_type.as_str(),
            _ => "none",
        };
        ApiError::UnsupportedMediaType(detail(format!("Unsupported Content-Type {got}")))
    } else if error.is::<AuthorizationError>() {
        ApiError::unauthorized("Missing API key: send it in the X-API-Key header")
    } else if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(detail("Request body too large"))
    } else if error.status().is_server_error() {
        tracing::error!(%error, "request failed");
        ApiError::internal()
    } else {
        let status = error.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        return (status, poem::web::Json(serde_json::json!({ "detail": reason }))).into_response();
    };
    api_error.into_response()
}

/// Turns poem-openapi's parameter messages (`verification failed. maximum(720, exclusive:
/// false)`) into the original APIs' wording; anything else passes through.
fn describe_param_error(reason: &str) -> (ErrorKind, String) {
    let bound =
        |prefix: &str| reason.split_once(prefix).and_then(|(_, rest)| rest.split([',', ')']).next()).map(str::trim);
    if reason.contains("expects an input value") {
        (ErrorKind::Missing, "field required".to_owned())
    } else if let Some(limit) = bound("minimum(") {
        (ErrorKind::TooSmall, format!("ensure this value is greater than or equal to {limit}"))
    } else if let Some(limit) = bound("maximum(") {
        (ErrorKind::TooLarge, format!("ensure this value is less than or equal to {limit}"))
    } else {
        (ErrorKind::NotInteger, reason.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_messages_use_the_documented_wording() {
        for (reason, kind, msg) in [
            (
                "verification failed. minimum(1, exclusive: false)",
                ErrorKind::TooSmall,
                "ensure this value is greater than or equal to 1",
            ),
            (
                "verification failed. maximum(720, exclusive: false)",
                ErrorKind::TooLarge,
                "ensure this value is less than or equal to 720",
            ),
            ("Type \"string\" expects an input value.", ErrorKind::Missing, "field required"),
            (
                "failed to parse \"integer(int32)\": invalid digit",
                ErrorKind::NotInteger,
                "failed to parse \"integer(int32)\": invalid digit",
            ),
        ] {
            assert_eq!(describe_param_error(reason), (kind, msg.to_owned()), "{reason}");
        }
    }
}
