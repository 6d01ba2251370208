//! Analytics retention: deleting old records in bounded batches, shared by the server's
//! periodic job and `homepot retention run`.

use chrono::{DateTime, Utc};

use crate::{AnalyticsStore, StorageError};

/// Rows deleted per table and statement.
pub const PURGE_BATCH: u64 = 10_000;

/// Deletes every analytics record older than `before`, [`PURGE_BATCH`] rows per table at a
/// time, and returns how many it deleted.
///
/// # Errors
/// The first backend failure; what was deleted before it stays deleted.
pub async fn purge_before<S: AnalyticsStore + ?Sized>(store: &S, before: DateTime<Utc>) -> Result<u64, StorageError> {
    let mut total = 0;
    loop {
        let deleted = store.purge_analytics(before, PURGE_BATCH).await?;
        total += deleted;
        if deleted == 0 {
            return Ok(total);
        }
    }
}
