//! Request bodies read as raw bytes, within the server's size limit, for the `homepot-core`
//! adapters to parse: each adapter then reports every problem in the original APIs' shapes, and one
//! limit covers every format. `K` says which content types a body accepts and what the OpenAPI
//! document shows for it.

use std::marker::PhantomData;

use poem::{Request, RequestBody, Result};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::error::{ApiError, ErrorDetail};

/// Largest body accepted, set by the server as request data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// How long a request body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) std::time::Duration);

/// The content types a body accepts. The first is assumed when a request sends none.
pub(crate) trait BodyKind: Send {
    /// Accepted media types (essence, lower case).
    const CONTENT_TYPES: &'static [&'static str];
    /// Whether any other media type is read as the first one (line protocol: InfluxDB ignores
    /// the header, and its clients send `application/octet-stream`).
    const ANY_CONTENT_TYPE: bool = false;
    /// Whether an empty body is an error. Line protocol and OTLP take it as zero points, as
    /// InfluxDB and the OTLP protocol do.
    const REQUIRED: bool = true;
    /// The documented schema of the media type at `index` of [`Self::CONTENT_TYPES`].
    fn schema_ref(index: usize) -> MetaSchemaRef;
    /// Registers the schemas.
    fn register(_registry: &mut Registry) {}
}

/// A JSON body documented as `T`.
#[derive(Debug)]
pub(crate) struct JsonKind<T>(PhantomData<fn() -> T>);

impl<T: Type> BodyKind for JsonKind<T> {
    const CONTENT_TYPES: &'static [&'static str] = &["application/json"];
    fn schema_ref(_: usize) -> MetaSchemaRef {
        T::schema_ref()
    }
    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// A UTF-8 text body (line protocol).
#[derive(Debug)]
pub(crate) struct TextKind;

impl BodyKind for TextKind {
    const CONTENT_TYPES: &'static [&'static str] = &["text/plain"];
    const ANY_CONTENT_TYPE: bool = true;
    const REQUIRED: bool = false;
    fn schema_ref(_: usize) -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }
}

/// A Prometheus remote write body: a snappy-compressed protobuf `WriteRequest`.
#[derive(Debug)]
pub(crate) struct RemoteWriteKind;

impl BodyKind for RemoteWriteKind {
    const CONTENT_TYPES: &'static [&'static str] = &["application/x-protobuf"];
    // Read whatever the header says, so that the key is checked first; a body that is not
    // a snappy-compressed request is refused with 400 after it.
    const ANY_CONTENT_TYPE: bool = true;
    fn schema_ref(_: usize) -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")))
    }
}

/// Form parameters (`application/x-www-form-urlencoded`), as the Prometheus API takes them.
#[derive(Debug)]
pub(crate) struct FormKind;

impl BodyKind for FormKind {
    const CONTENT_TYPES: &'static [&'static str] = &["application/x-www-form-urlencoded"];
    const ANY_CONTENT_TYPE: bool = true;
    const REQUIRED: bool = false;
    fn schema_ref(_: usize) -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
    }
}

impl RawBody<FormKind> {
    /// The body's `name=value` pairs, decoded.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.bytes).into_owned().collect()
    }
}

/// An OTLP/HTTP body: protobuf or JSON.
#[derive(Debug)]
pub(crate) struct OtlpKind;

impl BodyKind for OtlpKind {
    const CONTENT_TYPES: &'static [&'static str] = &["application/x-protobuf", "application/json"];
    const REQUIRED: bool = false;
    fn schema_ref(index: usize) -> MetaSchemaRef {
        if index == 0 {
            MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "binary")))
        } else {
            MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
        }
    }
}

/// A body of kind `K`, read whole within the size limit.
#[derive(Debug)]
pub(crate) struct RawBody<K> {
    pub(crate) bytes: Vec<u8>,
    /// Index into `K::CONTENT_TYPES` of the request's media type.
    pub(crate) media: usize,
    kind: PhantomData<fn() -> K>,
}

/// A JSON body documented as `T`.
pub(crate) type JsonBody<T> = RawBody<JsonKind<T>>;

fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Which accepted type `content_type` is; `+json` suffixes count as JSON.
fn media_index(accepted: &[&str], content_type: &str) -> Option<usize> {
    let essence = essence(content_type);
    accepted.iter().position(|t| {
        *t == essence || (*t == "application/json" && essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

impl<'a, K: BodyKind> ApiExtractor<'a> for RawBody<K> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        K::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        let content = K::CONTENT_TYPES
            .iter()
            .enumerate()
            .map(|(i, content_type)| MetaMediaType { content_type, schema: K::schema_ref(i) })
            .collect();
        Some(MetaRequest { description: None, content, required: K::REQUIRED })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        // No Content-Type at all is read as the first accepted type, as the original service did.
        let media = match request.content_type() {
            None => 0,
            Some(content_type) => match media_index(K::CONTENT_TYPES, content_type) {
                Some(index) => index,
                None if K::ANY_CONTENT_TYPE => 0,
                None => {
                    return Err(ApiError::UnsupportedMediaType(Json(ErrorDetail::new(format!(
                        "Content-Type must be {}, got {content_type}",
                        K::CONTENT_TYPES.join(" or ")
                    ))))
                    .into());
                }
            },
        };
        let limit = request.data::<BodyLimit>().map_or(usize::MAX, |l| l.0);
        let timeout = request.data::<BodyTimeout>().map_or(std::time::Duration::MAX, |t| t.0);
        // A client trickling its body would otherwise hold a connection and a task forever.
        let read = tokio::time::timeout(timeout, body.take()?.into_bytes_limit(limit)).await.map_err(|_| {
            poem::Error::from(ApiError::RequestTimeout(Json(ErrorDetail::new(format!(
                "Request body not received within {} s",
                timeout.as_secs_f64()
            )))))
        })?;
        let bytes = read.map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => {
                poem::Error::from(ApiError::PayloadTooLarge(Json(ErrorDetail::too_large(limit))))
            }
            other => other.into(),
        })?;
        Ok(Self { bytes: bytes.to_vec(), media, kind: PhantomData })
    }
}

impl RawBody<TextKind> {
    /// The body as text.
    pub(crate) fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.bytes).map_err(|e| {
            ApiError::invalid_field(
                "body",
                "text",
                homepot_core::ErrorKind::Undecodable,
                format!("body is not UTF-8: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::media_index;

    #[test]
    fn content_types() {
        let otlp = ["application/x-protobuf", "application/json"];
        assert_eq!(media_index(&otlp, "application/x-protobuf"), Some(0));
        assert_eq!(media_index(&otlp, "Application/JSON; charset=utf-8"), Some(1));
        assert_eq!(media_index(&otlp, "application/vnd.api+json"), Some(1));
        assert_eq!(media_index(&["text/plain"], "text/plain; charset=utf-8"), Some(0));
        assert_eq!(media_index(&["text/plain"], "application/json"), None);
    }
}
