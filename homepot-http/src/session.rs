//! Browser sessions. Signing in with an API key (`POST /api/v1/session`) sets an HttpOnly,
//! SameSite=Strict cookie, Secure behind TLS, that expires; the key never appears in a URL.
//! [`around`] turns a session cookie back into the key for the rest of the stack, so every
//! route authorises a session exactly as it does the key: revoking the key ends its sessions
//! at the next request. A request that changes something with only the cookie must also send
//! the session's CSRF token in `X-CSRF-Token`; without it the answer is 403 and nothing runs.
//!
//! Sessions live in this process: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use rand::RngCore;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "homepot_session";
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Most sessions held; beyond it expired ones are dropped, then the oldest.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    key: String,
    pub(crate) csrf: String,
    pub(crate) role: String,
    pub(crate) expires: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("role", &self.role).finish_non_exhaustive()
    }
}

/// The sessions of this process.
#[derive(Debug)]
pub(crate) struct Sessions {
    entries: Mutex<HashMap<String, Session>>,
    pub(crate) ttl: Duration,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::default(), ttl }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `key` (of `role`); its token and the session.
    pub(crate) fn open(&self, key: String, role: &str) -> (String, Session) {
        let token = random_token();
        let session = Session { key, csrf: random_token(), role: role.to_owned(), expires: Instant::now() + self.ttl };
        let mut entries = self.entries();
        if entries.len() >= MAX_SESSIONS {
            let now = Instant::now();
            entries.retain(|_, s| s.expires > now);
            if entries.len() >= MAX_SESSIONS
                && let Some(oldest) = entries.iter().min_by_key(|(_, s)| s.expires).map(|(t, _)| t.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session of `token`.
    pub(crate) fn get(&self, token: &str) -> Option<Session> {
        let mut entries = self.entries();
        match entries.get(token) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub(crate) fn close(&self, token: &str) {
        self.entries().remove(token);
    }
}

/// The session token among a request's cookies.
pub(crate) fn token(request: &Request) -> Option<String> {
    request.headers().get_all("cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
    })
}

/// The `Set-Cookie` value for `token` (or, with `None`, one that deletes the cookie). Secure
/// when the request came over TLS through a proxy that says so.
pub(crate) fn cookie(request: &Request, token: Option<&str>, ttl: Duration) -> String {
    let secure = request.header("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
        || request.header("forwarded").is_some_and(|f| f.to_ascii_lowercase().contains("proto=https"));
    let (value, max_age) = match token {
        Some(token) => (token, ttl.as_secs()),
        None => ("", 0),
    };
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the request presents a key itself (API clients), so a cookie is not consulted.
fn presents_key(request: &Request) -> bool {
    request.header("x-api-key").is_some()
        || request.header("authorization").is_some()
        || request.uri().query().is_some_and(|q| q.split('&').any(|pair| pair.starts_with("p=")))
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Runs `endpoint` with a session's key in place of its cookie; refuses cookie-only writes
/// without the session's CSRF token.
pub(crate) async fn around<E: Endpoint>(
    sessions: &Sessions,
    endpoint: &E,
    mut request: Request,
) -> poem::Result<Response> {
    if !presents_key(&request)
        && let Some(session) = token(&request).and_then(|t| sessions.get(&t))
    {
        if changes_something(request.method()) && request.header(CSRF_HEADER) != Some(session.csrf.as_str()) {
            let body = serde_json::json!({"detail": "This request needs the session's CSRF token in X-CSRF-Token"});
            return Ok((StatusCode::FORBIDDEN, poem::web::Json(body)).into_response());
        }
        if let Ok(key) = HeaderValue::from_str(&session.key) {
            request.headers_mut().insert("x-api-key", key);
        }
    }
    endpoint.call(request).await.map(IntoResponse::into_response)
}
