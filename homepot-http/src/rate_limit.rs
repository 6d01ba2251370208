//! Rate limiting (the metrics service's limits), by the governor crate's token buckets.
//!
//! A request that presents a valid key is limited by that key's bucket, sized by its role:
//! device and read keys get `requests_per_minute` each (or their role's own setting), admin
//! keys are unlimited unless an admin quota is set, so a provisioning script is not throttled
//! like a device. Every other request (no key, a wrong key, or a key not yet known and about
//! to be looked up in storage) is limited by its client address: inventing keys spends the
//! sender's own quota, and storage lookups cannot be driven faster than that.
//!
//! A refused request gets 429 with `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` (Unix
//! seconds) and `Retry-After`. Liveness and the stream are exempt, so monitoring never locks
//! itself out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use homepot_core::KeyHash;
use poem::Request;

use homepot_engine::{Homepot, Principal};

use crate::auth::presented_key;
use crate::error::ApiError;

/// Paths never limited.
const EXEMPT: [&str; 3] = ["/health", "/api/v1/stats", "/metrics/stream"];

/// The client's address: the first `X-Forwarded-For` entry when trusted, else the peer.
pub(crate) fn client_ip(request: &Request, trust_forwarded_headers: bool) -> Option<IpAddr> {
    if trust_forwarded_headers {
        let forwarded = request.header("x-forwarded-for").and_then(|v| v.split(',').next()).map(str::trim);
        if let Some(ip) = forwarded.and_then(|v| v.parse().ok()) {
            return Some(ip);
        }
    }
    request.remote_addr().as_socket_addr().map(|a| a.ip())
}

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per minute per client address for requests without a valid key,
    /// and per key for device and read keys unless their role sets its own
    /// (`RATE_LIMIT_REQUESTS_PER_MINUTE`).
    pub requests_per_minute: NonZeroU32,
    /// Requests a client or key may make at once (`RATE_LIMIT_BURST`).
    pub burst: NonZeroU32,
    /// Per device key; `None` takes `requests_per_minute`
    /// (`RATE_LIMIT_DEVICE_REQUESTS_PER_MINUTE`).
    pub device_requests_per_minute: Option<NonZeroU32>,
    /// Per read key; `None` takes `requests_per_minute` (`RATE_LIMIT_READ_REQUESTS_PER_MINUTE`).
    pub read_requests_per_minute: Option<NonZeroU32>,
    /// Per admin key; `None` leaves admin keys unlimited
    /// (`RATE_LIMIT_ADMIN_REQUESTS_PER_MINUTE`).
    pub admin_requests_per_minute: Option<NonZeroU32>,
    /// Take the client from `X-Forwarded-For` (`TRUST_FORWARDED_HEADERS`); only behind a
    /// proxy that sets it, or clients choose their own identity.
    pub trust_forwarded_headers: bool,
}

impl RateLimitConfig {
    /// The same quota for addresses, device keys and read keys; admin keys unlimited.
    pub fn new(requests_per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            requests_per_minute,
            burst,
            device_requests_per_minute: None,
            read_requests_per_minute: None,
            admin_requests_per_minute: None,
            trust_forwarded_headers: false,
        }
    }
}

/// The limiter shared by all requests.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_device_key: DefaultKeyedRateLimiter<KeyHash>,
    per_read_key: DefaultKeyedRateLimiter<KeyHash>,
    per_admin_key: Option<DefaultKeyedRateLimiter<KeyHash>>,
    /// Keys are resolved through its authenticator; `X-RateLimit-Reset` reads its clock.
    homepot: Homepot,
    clock: DefaultClock,
    trust_forwarded_headers: bool,
    checks: AtomicU64,
}

/// Forget idle clients every this many checks, so the key maps stay bounded.
const SWEEP_EVERY: u64 = 4_096;

impl RateLimiter {
    pub(crate) fn new(config: RateLimitConfig, homepot: Homepot) -> Self {
        let quota = |per_minute: NonZeroU32| Quota::per_minute(per_minute).allow_burst(config.burst);
        let default = config.requests_per_minute;
        Self {
            per_address: DefaultKeyedRateLimiter::keyed(quota(default)),
            per_device_key: DefaultKeyedRateLimiter::keyed(quota(config.device_requests_per_minute.unwrap_or(default))),
            per_read_key: DefaultKeyedRateLimiter::keyed(quota(config.read_requests_per_minute.unwrap_or(default))),
            per_admin_key: config.admin_requests_per_minute.map(|n| DefaultKeyedRateLimiter::keyed(quota(n))),
            homepot,
            clock: DefaultClock::default(),
            trust_forwarded_headers: config.trust_forwarded_headers,
            checks: AtomicU64::new(0),
        }
    }

    fn sweep(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
        for limiter in
            [Some(&self.per_device_key), Some(&self.per_read_key), self.per_admin_key.as_ref()].into_iter().flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn refused(&self, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
        let wait = not_until.wait_time_from(self.clock.now());
        let reset = self.homepot.now().timestamp() + wait.as_secs() as i64 + 1;
        ApiError::too_many_requests(wait, reset)
    }

    /// Spends one request of the key's role quota.
    fn check_key(&self, principal: &Principal, hash: &KeyHash) -> Result<(), ApiError> {
        let limiter = match principal {
            Principal::Device(_) => &self.per_device_key,
            Principal::Reader => &self.per_read_key,
            Principal::Admin => match &self.per_admin_key {
                Some(limiter) => limiter,
                None => return Ok(()),
            },
        };
        limiter.check_key(hash).map_err(|n| self.refused(&n))
    }

    /// `Err` with the 429 answer when the client must wait.
    pub(crate) async fn check(&self, request: &Request) -> Result<(), ApiError> {
        if EXEMPT.contains(&request.uri().path()) {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let hash = presented_key(request).map(|key| KeyHash::of(&key));
        if let Some(hash) = &hash
            && let Some(principal) = self.homepot.authenticator().known(hash)
        {
            return self.check_key(&principal, hash);
        }
        // Connections without an IP (e.g. Unix sockets) are limited by key only.
        if let Some(client) = client_ip(request, self.trust_forwarded_headers) {
            self.per_address.check_key(&client).map_err(|n| self.refused(&n))?;
        }
        let Some(hash) = hash else { return Ok(()) };
        // A wrong key, or storage failing, is the handler's to answer (401, 503).
        match self.homepot.authenticator().principal_for_hash(hash).await {
            Ok(principal) => self.check_key(&principal, &hash),
            Err(_) => Ok(()),
        }
    }
}
