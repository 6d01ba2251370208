//! The HTTP adapter of homepot: the poem-openapi API over the engine, its OpenAPI document,
//! how keys are presented over HTTP (headers, or a browser session's cookie), rate limits, the access log and the request log's
//! middleware. [`routes`] is the whole API as one endpoint, to serve or to nest in another
//! poem application; [`start`] builds the engine and serves it.
//!
//! Handlers authenticate, hand the body to a `homepot-core` adapter, call the engine and shape
//! the answer; every rule lives below them. Depends on the engine, not on storage backends or
//! other transports, and must not read the environment: it takes a [`ServerConfig`].
#![forbid(unsafe_code)]

mod access_log;
mod analytics;
mod api;
mod auth;
mod body;
mod dashboard;
mod error;
mod listener;
mod openapi;
mod rate_limit;
mod server;
mod session;

pub use analytics::{AnalyticsConfig, DEFAULT_SKIP};
pub use rate_limit::RateLimitConfig;
pub use server::{RunningServer, ServerConfig, openapi_json, routes, serve, start};
