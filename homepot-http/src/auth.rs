//! Authentication: who holds the presented `X-API-Key`, and what that role may do.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;

use chrono::Utc;
use homepot_core::{ApiKey, DeviceId, KeyHash, Role};
use homepot_storage::{NewKey, StorageError, Store};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::ApiKey as PresentedKey;
use rand::RngCore;

use crate::error::ApiError;

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
    fn presented(&self) -> Cow<'_, str> {
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
    fn presented(&self) -> Option<Cow<'_, str>> {
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

/// The holder of a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    Admin,
    Device(DeviceId),
    Reader,
}

impl Principal {
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::forbidden("This operation requires an admin API key")),
        }
    }

    /// Reading fleet data: admin and read keys. Device keys read nothing.
    pub(crate) fn require_reader(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Reader => Ok(()),
            Principal::Device(_) => Err(ApiError::forbidden("Device API keys cannot read data")),
        }
    }

    /// Writing data for some device (which one is checked later): refused to read keys before
    /// the body is even parsed.
    pub(crate) fn require_some_writer(&self) -> Result<(), ApiError> {
        match self {
            Principal::Reader => Err(ApiError::forbidden("Read-only API keys cannot write data")),
            _ => Ok(()),
        }
    }

    /// Writing a device's data: admin keys, or that device's own key.
    pub(crate) fn require_writer_for(&self, device: &str) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Device(own) if own.as_str() == device => Ok(()),
            Principal::Device(_) => {
                Err(ApiError::forbidden(format!("This API key may not write data for device '{device}'")))
            }
            Principal::Reader => Err(ApiError::forbidden("Read-only API keys cannot write data")),
        }
    }
}

/// Resolves presented keys to principals.
#[derive(Debug, Clone)]
pub(crate) struct Authenticator {
    configured_admin: Option<KeyHash>,
    store: Arc<dyn Store>,
    open_metrics: bool,
    cache: Arc<KeyCache>,
}

/// Valid keys seen recently, so that a device sending often costs one storage read per
/// `ttl`, not one per request. Only valid keys are kept (unknown ones cannot fill it). Every
/// revocation through this server empties it at once; a revocation made elsewhere (the CLI,
/// another instance) takes effect within `ttl`.
#[derive(Debug)]
struct KeyCache {
    entries: RwLock<HashMap<KeyHash, (Principal, Instant)>>,
    /// Bumped by every revocation: a lookup that began before it does not store its
    /// (possibly revoked) answer.
    generation: AtomicU64,
    ttl: Duration,
}

/// Most keys remembered; beyond it the cache starts over.
const KEY_CACHE_CAPACITY: usize = 65_536;

impl KeyCache {
    fn get(&self, hash: &KeyHash) -> Option<Principal> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(hash).filter(|(_, at)| at.elapsed() < self.ttl).map(|(principal, _)| principal.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn remember(&self, hash: KeyHash, principal: &Principal, looked_up_in: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation() != looked_up_in {
            return;
        }
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(hash, (principal.clone(), Instant::now()));
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl Authenticator {
    pub(crate) fn new(
        configured_admin: Option<&ApiKey>,
        store: Arc<dyn Store>,
        open_metrics: bool,
        key_cache_ttl: Duration,
    ) -> Self {
        let cache =
            Arc::new(KeyCache { entries: RwLock::default(), generation: AtomicU64::new(0), ttl: key_cache_ttl });
        Self { configured_admin: configured_admin.map(ApiKey::hash), store, open_metrics, cache }
    }

    /// Call after a key was revoked or a device (with its keys) removed: no cached answer
    /// outlives it.
    pub(crate) fn keys_changed(&self) {
        self.cache.forget_all();
    }

    /// Whether the operator configured an admin key (which no API call can revoke).
    pub(crate) fn has_configured_admin(&self) -> bool {
        self.configured_admin.is_some()
    }

    pub(crate) async fn authenticate(&self, auth: &ApiKeyAuth) -> Result<Principal, ApiError> {
        self.principal_for(&auth.presented()).await
    }

    /// For the metrics routes: a presented key is checked as anywhere else; no key is an
    /// admin in open-metrics mode and a 401 otherwise.
    pub(crate) async fn authenticate_metrics(&self, auth: &MetricsAuth) -> Result<Principal, ApiError> {
        match auth.presented() {
            Some(key) => self.principal_for(&key).await,
            None if self.open_metrics => Ok(Principal::Admin),
            None => Err(ApiError::unauthorized("Missing API key: send it in the X-API-Key header")),
        }
    }

    async fn principal_for(&self, presented: &str) -> Result<Principal, ApiError> {
        self.principal_for_hash(KeyHash::of(presented)).await
    }

    /// The holder of a key known without asking storage: the configured admin key, or one
    /// found valid within the cache's time to live.
    pub(crate) fn known(&self, hash: &KeyHash) -> Option<Principal> {
        if self.configured_admin.is_some_and(|admin| admin.matches(hash)) {
            return Some(Principal::Admin);
        }
        self.cache.get(hash)
    }

    /// The holder of the key with this hash, asking storage when it is not known.
    pub(crate) async fn principal_for_hash(&self, hash: KeyHash) -> Result<Principal, ApiError> {
        if let Some(principal) = self.known(&hash) {
            return Ok(principal);
        }
        let generation = self.cache.generation();
        let principal = match self.store.key_by_hash(&hash).await? {
            Some(key) if key.hash.matches(&hash) => match (key.role, key.device_id) {
                (Role::Admin, _) => Principal::Admin,
                (Role::Read, _) => Principal::Reader,
                (Role::Device, Some(device)) => Principal::Device(device),
                (Role::Device, None) => return Err(ApiError::unauthorized("Invalid API key")),
            },
            _ => return Err(ApiError::unauthorized("Invalid API key")),
        };
        self.cache.remember(hash, &principal, generation);
        Ok(principal)
    }
}

/// A new key with 256 bits from the thread-local CSPRNG (seeded by the OS).
pub fn generate_key() -> ApiKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    ApiKey::from_entropy(bytes)
}

/// What [`ensure_admin_key`] found or did.
#[derive(Debug)]
pub enum AdminKeyOutcome {
    /// The operator configured one; nothing is stored.
    Configured,
    /// An admin key is already stored.
    Existing,
    /// None existed: this one was generated and its hash stored. Show it once.
    Generated(ApiKey),
}

/// Makes sure some admin key can reach the server: the configured one, a stored one, or a
/// newly generated one whose hash is stored.
///
/// # Errors
/// Storage failures.
pub async fn ensure_admin_key(store: &dyn Store, configured: Option<&ApiKey>) -> Result<AdminKeyOutcome, StorageError> {
    if configured.is_some() {
        return Ok(AdminKeyOutcome::Configured);
    }
    if store.has_key_with_role(Role::Admin).await? {
        return Ok(AdminKeyOutcome::Existing);
    }
    let key = generate_key();
    store.insert_key(&NewKey { hash: key.hash(), role: Role::Admin, device_id: None, created_at: Utc::now() }).await?;
    Ok(AdminKeyOutcome::Generated(key))
}
