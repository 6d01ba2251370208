use std::error::Error as StdError;

/// Why a storage operation failed, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The record the operation needs does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `device 'pos-1'`.
        what: String,
    },
    /// The record would duplicate an existing one.
    #[error("{what} already exists")]
    Conflict {
        /// What collided.
        what: String,
    },
    /// The backend cannot be reached or is overloaded; retrying later may succeed.
    #[error("storage unavailable: {source}")]
    Unavailable {
        /// The backend's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Any other backend failure.
    #[error("storage backend failed: {source}")]
    Backend {
        /// The backend's error.
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl StorageError {
    /// A [`StorageError::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// A [`StorageError::Conflict`].
    pub fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    /// A [`StorageError::Backend`] from any error.
    pub fn backend(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backend { source: source.into() }
    }
}
