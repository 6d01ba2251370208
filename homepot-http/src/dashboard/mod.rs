//! The web dashboard: three files written for homepot, compiled into the binary, so that
//! `cargo build` alone gives a working dashboard on an air-gapped site. The page signs in for
//! a session (`api/session.rs`) and reads the same API as every other client.

use poem::http::header;
use poem::{Response, handler};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

fn asset(content_type: &str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        // Same-origin scripts and styles only: nothing inline, nothing from elsewhere.
        .header(header::CONTENT_SECURITY_POLICY, "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

/// The page itself, served at `/`.
pub(crate) fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

#[handler]
pub(crate) fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[handler]
pub(crate) fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
