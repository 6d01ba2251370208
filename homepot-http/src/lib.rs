//! The homepot server: the poem-openapi HTTP API, API-key authentication, and the ingest
//! pipeline that turns accepted data into durable writes (group commit).
//!
//! Depends on `homepot-core` for every rule and on the `homepot-storage` traits for every
//! byte it keeps; it never names a database. It takes its settings as a [`ServerConfig`]
//! and must not read the environment or the command line (the CLI does).
#![forbid(unsafe_code)]

mod access_log;
mod analytics;
mod api;
mod auth;
mod body;
mod device_state;
mod error;
mod listener;
mod mqtt;
mod openapi;
mod pipeline;
mod rate_limit;
mod restore;
mod server;
mod stats;

pub use analytics::{AnalyticsConfig, DEFAULT_SKIP};
pub use auth::{AdminKeyOutcome, ensure_admin_key, generate_key};
pub use mqtt::{MqttConfig, MqttTls, redact_url as redact_mqtt_url, request_for};
pub use rate_limit::RateLimitConfig;
pub use server::{RunningServer, ServerConfig, openapi_json, start};
