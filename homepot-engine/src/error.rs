//! `EngineError`: every way an engine operation can fail, in terms an adapter can answer
//! with (the HTTP adapter maps each to one status in one place).

use std::sync::Arc;

use homepot_core::live::SeriesLimitExceeded;
use homepot_core::{ErrorKind, FieldError, LocSegment, ValidationErrors};
use homepot_storage::StorageError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No key, or a key that matches none.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid key used outside its role.
    #[error("{0}")]
    Forbidden(String),
    /// The device named in a request is not registered.
    #[error("Device '{0}' not found")]
    DeviceNotFound(String),
    /// Something else that was asked for does not exist (a key, a feature switched off).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what is stored (a taken id, the last admin key).
    #[error("{0}")]
    Conflict(String),
    /// Input that breaks a rule, located field by field, within `part` of the request
    /// (`body`, `query`).
    #[error("invalid {part}: {errors}")]
    Invalid {
        /// Which part of the request the locations are in.
        part: &'static str,
        /// Every problem found.
        errors: ValidationErrors,
    },
    /// The points would take their sender over its live series limit; nothing was stored.
    #[error(transparent)]
    SeriesLimit(#[from] SeriesLimitExceeded),
    /// The write queue is full: storage is not keeping up. Retry later.
    #[error("Write queue is full, retry later")]
    Overloaded,
    /// The engine is shutting down.
    #[error("Server is shutting down")]
    Stopped,
    /// A transport the operation needs is not running (no MQTT bridge, say).
    #[error("{0}")]
    NoTransport(String),
    /// A device did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// A PromQL query that is not PromQL, or outside what homepot evaluates.
    #[error(transparent)]
    Promql(homepot_core::promql::PromqlError),
    /// Storage refused or failed (shared: one failed commit answers every sender in it).
    #[error(transparent)]
    Storage(Arc<StorageError>),
}

impl From<StorageError> for EngineError {
    fn from(error: StorageError) -> Self {
        Self::Storage(Arc::new(error))
    }
}

impl EngineError {
    /// Whether trying again later may succeed: storage busy, unreachable or locked, the
    /// queue full, the engine restarting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Overloaded | Self::Stopped => true,
            Self::Storage(error) => matches!(**error, StorageError::Unavailable { .. }),
            _ => false,
        }
    }

    /// Invalid input in `part` of the request.
    pub fn invalid(part: &'static str, errors: ValidationErrors) -> Self {
        Self::Invalid { part, errors }
    }

    /// A query parameter that cannot be answered as given (422 at `["query", parameter]`).
    pub fn invalid_parameter(parameter: &str, message: String) -> Self {
        let error = FieldError::new(vec![LocSegment::from(parameter)], ErrorKind::BadFormat, message);
        Self::invalid("query", ValidationErrors::single(error))
    }
}
