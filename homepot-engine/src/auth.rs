//! API keys and what their holders may do: the principal a presented key stands for, a short
//! cache of valid keys, key generation and the admin key every installation starts with.
//! Transports extract the key (a header, a query parameter, an MQTT session); the rules are
//! here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use homepot_core::{ApiKey, DeviceId, KeyHash, Role};
use homepot_storage::{NewKey, StorageError, Store};
use rand::RngCore;

use crate::error::EngineError;

/// The holder of a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Device(DeviceId),
    Reader,
}

impl Principal {
    pub fn require_admin(&self) -> Result<(), EngineError> {
        match self {
            Principal::Admin => Ok(()),
            _ => Err(EngineError::Forbidden("This operation requires an admin API key".to_owned())),
        }
    }

    /// Reading fleet data: admin and read keys. Device keys read nothing.
    pub fn require_reader(&self) -> Result<(), EngineError> {
        match self {
            Principal::Admin | Principal::Reader => Ok(()),
            Principal::Device(_) => Err(EngineError::Forbidden("Device API keys cannot read data".to_owned())),
        }
    }

    /// Writing data for some device (which one is checked later): refused to read keys before
    /// the body is even parsed.
    pub fn require_some_writer(&self) -> Result<(), EngineError> {
        match self {
            Principal::Reader => Err(EngineError::Forbidden("Read-only API keys cannot write data".to_owned())),
            _ => Ok(()),
        }
    }

    /// Writing a device's data: admin keys, or that device's own key.
    pub fn require_writer_for(&self, device: &str) -> Result<(), EngineError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Device(own) if own.as_str() == device => Ok(()),
            Principal::Device(_) => {
                Err(EngineError::Forbidden(format!("This API key may not write data for device '{device}'")))
            }
            Principal::Reader => Err(EngineError::Forbidden("Read-only API keys cannot write data".to_owned())),
        }
    }
}

/// Resolves presented keys to principals.
#[derive(Debug, Clone)]
pub struct Authenticator {
    configured_admin: Option<KeyHash>,
    store: Arc<dyn Store>,
    cache: Arc<KeyCache>,
}

/// Valid keys seen recently, so that a device sending often costs one storage read per
/// `ttl`, not one per request. Only valid keys are kept (unknown ones cannot fill it). Every
/// revocation through this server empties it at once; one made elsewhere (the CLI, another
/// instance) grows storage's key revision, which [`Authenticator::watch_revocations`] polls,
/// and empties it within a poll. `ttl` bounds what a missed poll could keep.
#[derive(Debug)]
struct KeyCache {
    entries: RwLock<HashMap<KeyHash, (Principal, Instant)>>,
    /// Bumped by every revocation: a lookup that began before it does not store its
    /// (possibly revoked) answer.
    generation: AtomicU64,
    ttl: Duration,
    /// Storage's key revision at the last poll; `u64::MAX` before the first.
    revision: AtomicU64,
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
    /// Keys are checked against `configured_admin` first, then `store`; valid ones are
    /// remembered for `key_cache_ttl`.
    pub fn new(configured_admin: Option<&ApiKey>, store: Arc<dyn Store>, key_cache_ttl: Duration) -> Self {
        let cache = Arc::new(KeyCache {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            ttl: key_cache_ttl,
            revision: AtomicU64::new(u64::MAX),
        });
        Self { configured_admin: configured_admin.map(ApiKey::hash), store, cache }
    }

    /// Call after a key was revoked or a device (with its keys) removed: no cached answer
    /// outlives it.
    pub fn keys_changed(&self) {
        self.cache.forget_all();
    }

    /// Empties the cache when storage's key revision moved since the last call: a key was
    /// revoked or a device removed by another process on the same database.
    ///
    /// # Errors
    /// Storage failures; the cache is then left as it is, and its time to live still bounds it.
    pub async fn watch_revocations(&self) -> Result<(), StorageError> {
        let revision = self.store.key_revision().await?;
        let seen = self.cache.revision.swap(revision, Ordering::SeqCst);
        // The first poll empties it too: a key remembered before it may have been revoked
        // before it.
        if seen != revision {
            tracing::debug!(revision, "keys revoked elsewhere: remembered keys forgotten");
            self.cache.forget_all();
        }
        Ok(())
    }

    /// Whether the operator configured an admin key (which no API call can revoke).
    pub fn has_configured_admin(&self) -> bool {
        self.configured_admin.is_some()
    }

    /// The holder of `presented`, or 401. With `anonymous_admin` (open-metrics routes), no
    /// key at all counts as an admin; a key that is presented is checked all the same.
    ///
    /// # Errors
    /// [`EngineError::Unauthorized`] for a missing or unknown key; storage failures.
    pub async fn authenticate(&self, presented: Option<&str>, anonymous_admin: bool) -> Result<Principal, EngineError> {
        match presented {
            Some(key) => self.principal_for(key).await,
            None if anonymous_admin => Ok(Principal::Admin),
            None => Err(EngineError::Unauthorized("Missing API key: send it in the X-API-Key header".to_owned())),
        }
    }

    async fn principal_for(&self, presented: &str) -> Result<Principal, EngineError> {
        self.principal_for_hash(KeyHash::of(presented)).await
    }

    /// The holder of a key known without asking storage: the configured admin key, or one
    /// found valid within the cache's time to live.
    pub fn known(&self, hash: &KeyHash) -> Option<Principal> {
        if self.configured_admin.is_some_and(|admin| admin.matches(hash)) {
            return Some(Principal::Admin);
        }
        self.cache.get(hash)
    }

    /// The holder of the key with this hash, asking storage when it is not known.
    pub async fn principal_for_hash(&self, hash: KeyHash) -> Result<Principal, EngineError> {
        if let Some(principal) = self.known(&hash) {
            return Ok(principal);
        }
        let generation = self.cache.generation();
        let principal = match self.store.key_by_hash(&hash).await? {
            Some(key) if key.hash.matches(&hash) => match (key.role, key.device_id) {
                (Role::Admin, _) => Principal::Admin,
                (Role::Read, _) => Principal::Reader,
                (Role::Device, Some(device)) => Principal::Device(device),
                (Role::Device, None) => return Err(EngineError::Unauthorized("Invalid API key".to_owned())),
            },
            _ => return Err(EngineError::Unauthorized("Invalid API key".to_owned())),
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
pub async fn ensure_admin_key(
    store: &dyn Store,
    configured: Option<&ApiKey>,
    now: DateTime<Utc>,
) -> Result<AdminKeyOutcome, StorageError> {
    if configured.is_some() {
        return Ok(AdminKeyOutcome::Configured);
    }
    if store.has_key_with_role(Role::Admin).await? {
        return Ok(AdminKeyOutcome::Existing);
    }
    let key = generate_key();
    store.insert_key(&NewKey { hash: key.hash(), role: Role::Admin, device_id: None, created_at: now }).await?;
    Ok(AdminKeyOutcome::Generated(key))
}
