//! homepot's storage API: the traits every backend implements (the **API boundary**), the
//! records they exchange, `StorageError`, the rules shared by every backend (key revocation,
//! bounded retention), a conformance kit that checks any backend against the traits'
//! contracts (feature `conformance`), an in-memory backend (feature `memory`) and a layer
//! that observes or delays any backend's operations.
//!
//! Trait signatures use `homepot-core` types only. Must not depend on sea-orm, sqlx or any
//! database driver, on the engine, or on a transport: a third-party backend compiles this
//! crate and `homepot-core`, nothing more.
#![forbid(unsafe_code)]

pub mod alerts;
mod error;
pub mod export;
pub mod fleet;
pub mod keys;
pub mod layer;
mod record;
pub mod retention;
mod traits;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "memory")]
mod memory;

pub use error::StorageError;
#[cfg(feature = "memory")]
pub use memory::InMemoryStore;
pub use record::{
    HealthCheckId, KeyId, KeyInfo, NewHealthCheck, NewKey, NewReceipt, Receipt, RecordId, RollupDelta, SeriesId,
    SeriesKey, StoredBucket, StoredHealthCheck, StoredKey, StoredSeries,
};
pub use traits::{
    AlertStore, AnalyticsStore, DeviceStore, ExportStore, HealthStore, KeyStore, LeaseStore, MetricStore,
    PresenceStore, ReceiptStore, RollupStore, SilentDevice, Store,
};
