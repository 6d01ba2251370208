//! Pure domain of homepot: devices, API keys, health checks, their validation and the
//! adapters that turn submitted documents into domain values.
//!
//! Must not depend on tokio, sea-orm, poem, the filesystem or the system clock: time and
//! randomness come in as arguments, so everything here is deterministic under test.
#![forbid(unsafe_code)]

pub mod alert;
pub mod analytics;
pub mod api_key;
pub mod container;
pub mod device;
pub mod export;
pub mod filter;
pub mod health;
pub mod ingest;
pub mod live;
pub mod metric;
pub mod node;
pub mod prometheus;
pub mod promql;
pub mod rollup;
pub mod simulate;
pub mod validation;

pub use api_key::{ApiKey, KeyHash, Role};
pub use device::{Device, DeviceId, Labels, NewDevice};
pub use health::{AppMetrics, HealthCheck, HealthReport, NetworkMetrics, SystemMetrics};
pub use metric::{FieldValue, MetricType, Point, PointError};
pub use validation::{ErrorKind, FieldError, LocSegment, ValidationErrors};
