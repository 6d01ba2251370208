//! Storage of homepot: the storage traits (the **API boundary** for backends), the sea-orm
//! backend for SQLite and PostgreSQL, and a conformance kit (feature `conformance`) that
//! checks any backend against the traits' contracts.
//!
//! Trait signatures use `homepot-core` types only; sea-orm entities, migrations and row
//! mappings stay private to [`sea`]. Must not depend on poem or know about HTTP.
#![forbid(unsafe_code)]

mod error;
pub mod keys;
mod point_codec;
mod record;
pub mod retention;
pub mod sea;
mod traits;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StorageError;
pub use point_codec::{fields_from_json, fields_to_json, fields_to_json_text, tags_to_json_text};
pub use record::{HealthCheckId, KeyId, KeyInfo, NewHealthCheck, NewKey, RecordId, StoredHealthCheck, StoredKey};
pub use sea::{SeaOrmStore, SqliteSync, StoreOptions};
pub use traits::{AnalyticsStore, DeviceStore, HealthStore, KeyStore, MetricStore, Store};
