//! Signing a browser in and out: `POST /api/v1/session` trades an admin or read key for a
//! session cookie (see `session.rs`); `GET` tells the page who is signed in and its CSRF
//! token; `DELETE` signs out.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use homepot_engine::Principal;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, AppState, rfc3339};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::session::{cookie, token};

/// Browser sessions.
#[derive(Debug, Default)]
pub(crate) struct SessionApi;

/// An API key to sign in with.
#[derive(Debug, Object)]
struct SignIn {
    /// An admin or read key.
    #[oai(validator(min_length = 1, max_length = 512))]
    api_key: String,
}

/// Who is signed in.
#[derive(Debug, Object)]
struct SessionView {
    /// `admin` or `read`.
    role: String,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
    /// When the session ends (RFC 3339).
    expires_at: String,
}

#[derive(Debug, ApiResponse)]
enum SignedIn {
    /// Signed in: the cookie is set.
    #[oai(status = 201)]
    Created(Json<SessionView>, #[oai(header = "Set-Cookie")] String),
}

#[derive(Debug, ApiResponse)]
enum SignedOut {
    /// Signed out: the cookie is cleared.
    #[oai(status = 204)]
    Done(#[oai(header = "Set-Cookie")] String),
}

fn role(principal: &Principal) -> Result<&'static str, ApiError> {
    match principal {
        Principal::Admin => Ok("admin"),
        Principal::Reader => Ok("read"),
        Principal::Device(_) => Err(ApiError::forbidden("Device API keys cannot sign in to the dashboard")),
    }
}

fn view(session: &crate::session::Session) -> SessionView {
    let left = session.expires.saturating_duration_since(std::time::Instant::now());
    SessionView {
        role: session.role.clone(),
        csrf_token: session.csrf.clone(),
        expires_at: rfc3339(Utc::now() + TimeDelta::from_std(left).unwrap_or_default()),
    }
}

#[OpenApi]
impl SessionApi {
    /// Sign a browser in with an admin or read key: answers with the session's CSRF token and
    /// sets the `homepot_session` cookie (HttpOnly, SameSite=Strict, Secure behind TLS). With
    /// the cookie, every route works as with the key; requests that change something also need
    /// `X-CSRF-Token`. Revoking the key ends the session.
    #[oai(path = "/api/v1/session", method = "post", tag = "ApiTags::Service")]
    async fn sign_in(
        &self,
        state: Data<&Arc<AppState>>,
        request: &Request,
        body: JsonBody<SignIn>,
    ) -> Result<SignedIn, ApiError> {
        let document =
            homepot_core::ingest::json_reader::parse_object(&body.bytes).map_err(|e| ApiError::invalid("body", e))?;
        let Some(key) = document.get("api_key").and_then(|k| k.as_str()).filter(|k| !k.is_empty()) else {
            return Err(ApiError::invalid_field("body", "api_key", homepot_core::ErrorKind::Missing, "field required"));
        };
        let principal = state.homepot.authenticate(Some(key), false).await?;
        let role = role(&principal)?;
        let (token, session) = state.sessions.open(key.to_owned(), role);
        tracing::info!(role, "dashboard session opened");
        Ok(SignedIn::Created(Json(view(&session)), cookie(request, Some(&token), state.sessions.ttl)))
    }

    /// Who this browser is signed in as, with the CSRF token (401 without a session).
    #[oai(path = "/api/v1/session", method = "get", tag = "ApiTags::Service")]
    async fn current(&self, state: Data<&Arc<AppState>>, request: &Request) -> Result<Json<SessionView>, ApiError> {
        let session = token(request).and_then(|t| state.sessions.get(&t));
        let session = session.ok_or_else(|| ApiError::unauthorized("Not signed in"))?;
        // The key may have been revoked since.
        state.homepot.authenticate(request.header("x-api-key"), false).await?;
        Ok(Json(view(&session)))
    }

    /// Sign out: the session ends and the cookie is cleared. Needs the CSRF token.
    #[oai(path = "/api/v1/session", method = "delete", tag = "ApiTags::Service")]
    async fn sign_out(&self, state: Data<&Arc<AppState>>, request: &Request) -> SignedOut {
        if let Some(token) = token(request) {
            state.sessions.close(&token);
        }
        SignedOut::Done(cookie(request, None, state.sessions.ttl))
    }
}
