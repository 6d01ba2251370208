//! Rate limiting (metrics service): a token bucket per client IP and one per presented API key, each
//! refilled at `requests_per_minute` and holding `burst` tokens, by the governor crate. A refused request
//! gets 429 with `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` (Unix seconds) and
//! `Retry-After`. Liveness and the stream are exempt, so monitoring never locks itself out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use homepot_core::KeyHash;
use poem::Request;

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
    /// Sustained requests per minute per client (`RATE_LIMIT_REQUESTS_PER_MINUTE`).
    pub requests_per_minute: NonZeroU32,
    /// Requests a client may make at once (`RATE_LIMIT_BURST`).
    pub burst: NonZeroU32,
    /// Take the client from `X-Forwarded-For` (`TRUST_FORWARDED_HEADERS`); only behind a
    /// proxy that sets it, or clients choose their own identity.
    pub trust_forwarded_headers: bool,
}

/// The limiter shared by all requests.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// The same quota per API key, so one key spread over many addresses (a fleet behind
    /// changing IPs, a leaked key) is limited too.
    per_key: DefaultKeyedRateLimiter<KeyHash>,
    clock: DefaultClock,
    trust_forwarded_headers: bool,
    checks: AtomicU64,
}

/// Forget idle clients every this many checks, so the key map stays bounded.
const SWEEP_EVERY: u64 = 4_096;

impl RateLimiter {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        let quota = Quota::per_minute(config.requests_per_minute).allow_burst(config.burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            per_key: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            trust_forwarded_headers: config.trust_forwarded_headers,
            checks: AtomicU64::new(0),
        }
    }

    fn client(&self, request: &Request) -> Option<IpAddr> {
        client_ip(request, self.trust_forwarded_headers)
    }

    /// `Err` with the 429 answer when the client must wait: its address or its key has
    /// used up its quota.
    pub(crate) fn check(&self, request: &Request) -> Result<(), ApiError> {
        if EXEMPT.contains(&request.uri().path()) {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            self.per_key.retain_recent();
            self.per_key.shrink_to_fit();
        }
        let refused = |not_until: governor::NotUntil<_>| {
            let wait = not_until.wait_time_from(self.clock.now());
            let reset = chrono::Utc::now().timestamp() + wait.as_secs() as i64 + 1;
            ApiError::too_many_requests(wait, reset)
        };
        // Connections without an IP (e.g. Unix sockets) are limited by key only. The address
        // is checked first, so a client inventing keys spends its own address's quota.
        if let Some(client) = self.client(request) {
            self.limiter.check_key(&client).map_err(refused)?;
        }
        if let Some(key) = presented_key(request) {
            self.per_key.check_key(&KeyHash::of(&key)).map_err(refused)?;
        }
        Ok(())
    }
}
