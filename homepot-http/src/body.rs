//! `JsonBody<T>`: a JSON request body handed to the handler as raw bytes, so the domain
//! adapter in `homepot-core` parses it once and reports every bad field; `T` supplies the
//! documented schema. A missing `Content-Type` is read as JSON, as the original service did.

use std::marker::PhantomData;

use poem::{Request, RequestBody, Result};
use poem_openapi::error::ContentTypeError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::error::ApiError;

/// Largest body accepted, set by the server as request data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// A JSON body documented as `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T> {
    pub(crate) bytes: Vec<u8>,
    schema: PhantomData<fn() -> T>,
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let limit = request.data::<BodyLimit>().map_or(usize::MAX, |l| l.0);
        let bytes = body.take()?.into_bytes_limit(limit).await.map_err(|e| {
            if matches!(e, poem::error::ReadBodyError::PayloadTooLarge) {
                poem::Error::from(ApiError::PayloadTooLarge(poem_openapi::payload::Json(
                    crate::error::ErrorDetail::too_large(limit),
                )))
            } else {
                e.into()
            }
        })?;
        Ok(Self { bytes: bytes.to_vec(), schema: PhantomData })
    }
}

impl<'a, T: Type> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        match request.content_type() {
            Some(content_type) if !is_json(content_type) => {
                Err(ContentTypeError::NotSupported { content_type: content_type.to_owned() }.into())
            }
            _ => <Self as ParsePayload>::from_request(request, body).await,
        }
    }
}
