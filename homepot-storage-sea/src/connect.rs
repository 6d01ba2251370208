//! Opening a database: the pool, SQLite's settings (WAL, fsync per commit, a busy timeout,
//! statement journals in memory, a 16 MiB page cache, checkpoints every 10,000 pages) and the
//! migrations that bring the schema up to date.

use std::time::Duration;

use homepot_storage::StorageError;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::{SeaOrmStore, migration};

/// How hard SQLite syncs commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// fsync the WAL at every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of homepot, may lose the last commits
    /// on power loss.
    Normal,
}

/// Connection settings for [`SeaOrmStore::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long to wait for a connection before reporting the store unavailable.
    pub acquire_timeout: Duration,
    /// SQLite's `synchronous` setting (ignored for PostgreSQL).
    pub sqlite_sync: SqliteSync,
    /// How long SQLite waits for another writer's lock before reporting the store unavailable.
    pub sqlite_busy_timeout: Duration,
    /// WAL pages after which a commit checkpoints (`wal_autocheckpoint`). Larger means fewer,
    /// longer checkpoints, with pages that change often copied once instead of many times;
    /// the WAL file grows to about this many 4 KiB pages.
    pub sqlite_checkpoint_pages: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_sync: SqliteSync::Full,
            sqlite_busy_timeout: Duration::from_secs(5),
            // 40 MiB: measured against SQLite's 1,000 in bench/health_load.sh (BENCHMARKS.md).
            sqlite_checkpoint_pages: 10_000,
        }
    }
}

impl SeaOrmStore {
    /// Connects and brings the schema up to date.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the database cannot be reached;
    /// [`StorageError::Backend`] when a migration fails.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StorageError> {
        let mut connect = ConnectOptions::new(url);
        connect
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.acquire_timeout)
            .sqlx_logging(false);
        let sync = match options.sqlite_sync {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let busy_timeout = options.sqlite_busy_timeout;
        let checkpoint_pages = options.sqlite_checkpoint_pages.to_string();
        connect.map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sync)
                .foreign_keys(true)
                .busy_timeout(busy_timeout)
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-16384")
                .pragma("wal_autocheckpoint", checkpoint_pages.clone())
        });
        let db = Database::connect(connect).await.map_err(|e| StorageError::Unavailable { source: Box::new(e) })?;
        migration::Migrator::up(&db, None).await.map_err(StorageError::backend)?;
        let write_gate = (db.get_database_backend() == DbBackend::Sqlite).then(Default::default);
        Ok(Self { db, series_cache: Default::default(), write_gate })
    }
}
