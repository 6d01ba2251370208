//! How HTTP clients present their API key: the security schemes the OpenAPI document
//! declares, and reading the key out of a request. What a key may do is the engine's
//! ([`homepot_engine::Principal`]).

use std::borrow::Cow;

use base64::Engine;
use homepot_core::KeyHash;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::ApiKey as PresentedKey;

/// The `X-API-Key` header.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-API-Key", key_in = "header")]
pub(crate) struct XApiKey(PresentedKey);

/// `Authorization: Bearer <key>` (Prometheus scrapers, OTLP exporters),
/// `Authorization: Token <key>` (InfluxDB 2 clients) or `Authorization: Basic` with the key as
/// the password (InfluxDB 1 clients; the user name is ignored).
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "Authorization", key_in = "header")]
pub(crate) struct AuthorizationHeader(PresentedKey);

/// InfluxDB 1.x clients' `p` query parameter (their `u` is ignored).
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "p", key_in = "query")]
pub(crate) struct InfluxPassword(PresentedKey);

/// Any of the ways a client may present its API key.
#[derive(SecurityScheme)]
pub(crate) enum ApiKeyAuth {
    XApiKey(XApiKey),
    Authorization(AuthorizationHeader),
    InfluxPassword(InfluxPassword),
}

/// The metrics routes' schemes: the same three, and no key at all, which only
/// `HOMEPOT_OPEN_METRICS` admits (the original metrics service had no authentication).
#[derive(SecurityScheme)]
pub(crate) enum MetricsAuth {
    XApiKey(XApiKey),
    Authorization(AuthorizationHeader),
    InfluxPassword(InfluxPassword),
    #[oai(fallback)]
    Anonymous,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsAuth(<redacted>)")
    }
}

/// The key in an `Authorization` value: `Bearer KEY`, `Token KEY`, or `Basic` with the key as
/// the password. A malformed Basic value yields an empty key, which matches nothing.
fn authorization_key(value: &str) -> Cow<'_, str> {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") => {
            Cow::Borrowed(key.trim())
        }
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap_or_default();
            let credentials = String::from_utf8_lossy(&decoded);
            Cow::Owned(credentials.split_once(':').map(|(_, password)| password.to_owned()).unwrap_or_default())
        }
        _ => Cow::Borrowed(value),
    }
}

/// The key a request presents, if any, read the way the security schemes read it; for the
/// request log, which runs outside the handlers.
pub(crate) fn presented_key(request: &poem::Request) -> Option<String> {
    if let Some(key) = request.header("x-api-key") {
        return Some(key.to_owned());
    }
    if let Some(value) = request.header("authorization") {
        return Some(authorization_key(value).into_owned());
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("p=")).map(str::to_owned)
}

impl ApiKeyAuth {
    /// The fingerprint of the presented key: who did something, without the secret.
    pub(crate) fn fingerprint(&self) -> String {
        KeyHash::of(&self.presented()).fingerprint()
    }

    /// The key itself, without an `Authorization` scheme word.
    pub(crate) fn presented(&self) -> Cow<'_, str> {
        match self {
            ApiKeyAuth::XApiKey(k) => Cow::Borrowed(&k.0.key),
            ApiKeyAuth::InfluxPassword(k) => Cow::Borrowed(&k.0.key),
            ApiKeyAuth::Authorization(k) => authorization_key(&k.0.key),
        }
    }
}

impl MetricsAuth {
    /// Whom the live store counts a sender's series against: the key's fingerprint, or one
    /// shared owner for all requests without a key (open-metrics mode).
    pub(crate) fn owner(&self) -> String {
        self.presented().map_or_else(|| "anonymous".to_owned(), |key| KeyHash::of(&key).fingerprint())
    }

    /// The key, if one was presented.
    pub(crate) fn presented(&self) -> Option<Cow<'_, str>> {
        match self {
            MetricsAuth::XApiKey(k) => Some(Cow::Borrowed(&k.0.key)),
            MetricsAuth::InfluxPassword(k) => Some(Cow::Borrowed(&k.0.key)),
            MetricsAuth::Authorization(k) => Some(authorization_key(&k.0.key)),
            MetricsAuth::Anonymous => None,
        }
    }
}

impl std::fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyAuth(<redacted>)")
    }
}
