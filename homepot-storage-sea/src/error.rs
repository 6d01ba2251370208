//! Database errors as `StorageError`: transient ones (an unreachable server, an exhausted
//! pool, a locked SQLite file) become `Unavailable`, which clients may retry.

use homepot_storage::StorageError;
use sea_orm::{DbErr, RuntimeErr, sqlx};

/// Maps errors no caller singled out. Transient ones (unreachable server, exhausted pool, a
/// locked SQLite file) become `Unavailable`, which clients may retry; the rest do not.
pub(crate) fn db_error(err: DbErr) -> StorageError {
    if is_transient(&err) { StorageError::Unavailable { source: Box::new(err) } } else { StorageError::backend(err) }
}

fn is_transient(err: &DbErr) -> bool {
    let runtime = match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(error) = runtime else { return false };
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs have five characters: classes 08 (connection), 53 (resources) and 57P
/// (server shutting down, which includes a full disk) are transient. SQLite's extended codes
/// have at most four digits and their low byte is the primary code: the file's environment
/// rather than the data is at fault for 5 (BUSY), 6 (LOCKED), 8 (READONLY), 10 (IOERR), 13
/// (FULL) and 14 (CANTOPEN), and an operator can clear each of them.
fn is_transient_code(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P");
    }
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

#[cfg(test)]
mod tests {
    use super::is_transient_code;

    #[test]
    fn transient_codes() {
        for code in [
            "5", "6", "517", "261", "262", "773", "8", "1032", "10", "3338", "13", "14", "08006", "08001", "53300",
            "57P01", "57P03",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["19", "1", "11", "2067", "23505", "23503", "42P01", "22001"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
