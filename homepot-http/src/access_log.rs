//! The access log: one INFO event per request with its method, path, status and duration.
//!
//! It replaces poem's `Tracing` middleware, which logs the whole URI: InfluxDB 1.x clients
//! put their credentials in the query string (`/write?u=…&p=KEY`), so that put keys in every
//! log. Here query values whose names carry credentials are replaced with `REDACTED`, and no
//! header is ever logged.

use std::borrow::Cow;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};

/// Query parameters that carry credentials, compared without regard to case.
const SECRET_PARAMETERS: [&str; 14] = [
    "p",
    "u",
    "password",
    "pass",
    "passwd",
    "pwd",
    "user",
    "username",
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "secret",
];

fn is_secret(name: &str) -> bool {
    let name = name.trim();
    SECRET_PARAMETERS.iter().any(|secret| secret.eq_ignore_ascii_case(name))
        || ["key", "token", "secret", "password", "auth"].iter().any(|part| name.to_ascii_lowercase().contains(part))
}

/// `query` with the value of every credential parameter replaced by `REDACTED`.
pub(crate) fn redact_query(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(|pair| is_secret(pair.split_once('=').map_or(pair, |(name, _)| name))) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// Calls `endpoint` and logs the request once it has an answer.
pub(crate) async fn log_request<E: Endpoint>(endpoint: &E, request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(|q| redact_query(q).into_owned());
    let remote = request.remote_addr().to_string();
    let result = endpoint.call(request).await.map(IntoResponse::into_response);
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1_000.0;
    tracing::info!(
        target: "homepot::access",
        %method,
        path,
        query = query.as_deref().unwrap_or(""),
        status = status.as_u16(),
        elapsed_ms = format_args!("{elapsed_ms:.3}"),
        remote,
        "request"
    );
    result
}

#[cfg(test)]
mod tests {
    use super::redact_query;

    #[test]
    fn credentials_are_redacted() {
        for (query, expected) in [
            ("db=bench&precision=s", "db=bench&precision=s"),
            ("u=homepot&p=hpk_secret&db=x", "u=REDACTED&p=REDACTED&db=x"),
            ("api_key=hpk_1&X-Api-Key=hpk_2", "api_key=REDACTED&X-Api-Key=REDACTED"),
            ("access_token=t&hours=24", "access_token=REDACTED&hours=24"),
            ("P=upper&name=fps", "P=REDACTED&name=fps"),
            ("p", "p"),
            ("", ""),
        ] {
            assert_eq!(redact_query(query), expected, "{query}");
        }
    }
}
