//! The sea-orm backend: one implementation of the storage traits for SQLite (the embedded
//! default) and PostgreSQL, chosen by the connection URL.

mod analytics;
mod entity;
mod migration;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::{Device, DeviceId, KeyHash, MetricType, NewDevice, Point, Role};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, PrimaryKeyTrait, QueryFilter, QueryOrder,
    QuerySelect, RuntimeErr, SqlErr, Statement, TransactionTrait, sqlx,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;

use self::entity::{api_key, device, metric_point};
use crate::{
    DeviceStore, HealthCheckId, HealthStore, KeyId, KeyInfo, KeyStore, MetricStore, NewHealthCheck, NewKey,
    StorageError, Store, StoredHealthCheck, StoredKey, fields_from_json, fields_to_json_text, tags_to_json_text,
};

/// Rows per INSERT statement: well under SQLite's bound-parameter limit.
pub(super) const INSERT_CHUNK: usize = 500;

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

/// The storage traits over sea-orm. `sqlite://path.db` or `postgres://...`.
#[derive(Debug, Clone)]
pub struct SeaOrmStore {
    pub(super) db: DatabaseConnection,
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
        Ok(Self { db })
    }

    /// Inserts one row and returns its id. Always in a transaction: on SQLite a lone
    /// `INSERT ... RETURNING` leaves its statement open, and that read snapshot keeps
    /// checkpoints from ever recycling the WAL.
    pub(super) async fn insert_one<A>(&self, row: A) -> Result<i64, DbErr>
    where
        A: ActiveModelTrait + Send,
        <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType: Into<i64>,
    {
        let txn = self.db.begin().await?;
        let id = A::Entity::insert(row).exec(&txn).await?.last_insert_id;
        txn.commit().await?;
        Ok(id.into())
    }

    async fn device_pk(&self, id: &DeviceId) -> Result<Option<i64>, StorageError> {
        let row = device::Entity::find()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(|d| d.id))
    }
}

/// A row count as SQL's LIMIT takes it: the drivers bind it as a signed 64-bit integer (a
/// larger value makes sqlx's SQLite binding panic), so "no limit" is `i64::MAX`.
pub(super) fn row_limit(limit: impl TryInto<i64>) -> u64 {
    limit.try_into().map_or(i64::MAX as u64, |n: i64| n.max(0) as u64)
}

/// How a bound value becomes a column's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    /// As it is.
    Plain,
    /// JSON text (PostgreSQL casts it to `jsonb`).
    Json,
    /// A device id, turned into the device's key (NULL when unknown).
    DeviceKey,
}

/// Columns bound per health check, in order.
const HEALTH_COLUMNS: &[(&str, Bind)] = &[
    ("device_id", Bind::DeviceKey),
    ("is_healthy", Bind::Plain),
    ("response_time_ms", Bind::Plain),
    ("status_code", Bind::Plain),
    ("endpoint", Bind::Plain),
    ("response_data", Bind::Json),
    ("error_message", Bind::Plain),
    ("cpu_percent", Bind::Plain),
    ("memory_percent", Bind::Plain),
    ("disk_percent", Bind::Plain),
    ("checked_at", Bind::Plain),
];

/// Columns bound per metric point, in order.
const POINT_COLUMNS: &[(&str, Bind)] = &[
    ("name", Bind::Plain),
    ("tags", Bind::Json),
    ("fields", Bind::Json),
    ("metric_type", Bind::Plain),
    ("time_ns", Bind::Plain),
];

/// `INSERT INTO table (columns) VALUES (...), (...)` for `rows` rows, then `suffix`.
/// PostgreSQL numbers its parameters.
fn insert_sql(backend: DbBackend, table: &str, columns: &[(&str, Bind)], rows: usize, suffix: &str) -> String {
    use std::fmt::Write;
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut sql = String::with_capacity(100 + rows * columns.len() * 8);
    let _ = write!(sql, "INSERT INTO {table} ({}) VALUES ", names.join(", "));
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for (i, (_, bind)) in columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            if *bind == Bind::DeviceKey {
                sql.push_str("(SELECT id FROM devices WHERE device_id = ");
            }
            match backend {
                DbBackend::Postgres => {
                    let _ = write!(sql, "${}", row * columns.len() + i + 1);
                }
                _ => sql.push('?'),
            }
            match (bind, backend) {
                (Bind::DeviceKey, _) => sql.push(')'),
                (Bind::Json, DbBackend::Postgres) => sql.push_str("::jsonb"),
                _ => {}
            }
        }
        sql.push(')');
    }
    sql.push_str(suffix);
    sql
}

/// Whether a health insert failed for want of its device: the key subquery found none
/// (NOT NULL: SQLite 1299, PostgreSQL 23502), or the device went away (foreign key).
fn is_missing_device(err: &DbErr) -> bool {
    if matches!(err.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) = err else {
        return false;
    };
    match error {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code == "1299" || code == "23502"),
        _ => false,
    }
}

/// Maps errors no caller singled out. Transient ones (unreachable server, exhausted pool, a
/// locked SQLite file) become `Unavailable`, which clients may retry; the rest do not.
pub(super) fn db_error(err: DbErr) -> StorageError {
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

fn to_device(model: device::Model) -> Device {
    let labels: BTreeMap<String, String> = serde_json::from_value(model.labels).unwrap_or_default();
    Device::from_stored(model.device_id, model.name, model.device_type, labels, model.created_at)
}

impl SeaOrmStore {
    /// A device's checks, newest first, optionally since a time. Plain SQL read by column: a
    /// day of checks decoded through sea-orm models took about three times as long
    /// (BENCHMARKS.md). The device's key is found in a subquery, so an unknown device simply
    /// has no checks.
    async fn health_rows(
        &self,
        device: &DeviceId,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        let backend = self.db.get_database_backend();
        let postgres = backend == DbBackend::Postgres;
        let parameter = |n: usize| if postgres { format!("${n}") } else { "?".to_owned() };
        let mut values: Vec<sea_orm::Value> = vec![device.as_str().into()];
        let mut sql = format!(
            "SELECT id, is_healthy, response_time_ms, status_code, endpoint, {}, error_message, checked_at \
             FROM health_checks WHERE device_id = (SELECT id FROM devices WHERE device_id = {})",
            if postgres { "response_data::text AS response_data" } else { "response_data" },
            parameter(1)
        );
        if let Some(since) = since {
            values.push(since.into());
            sql.push_str(&format!(" AND checked_at >= {}", parameter(values.len())));
        }
        values.push(i64::try_from(row_limit(limit)).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" ORDER BY checked_at DESC, id DESC LIMIT {}", parameter(values.len())));
        let rows = self.db.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("", "response_data")?;
                let response_data = match serde_json::from_str(&text) {
                    Ok(Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                };
                Ok(StoredHealthCheck {
                    id: HealthCheckId(row.try_get("", "id")?),
                    device_id: device.clone(),
                    is_healthy: row.try_get("", "is_healthy")?,
                    response_time_ms: i64::from(row.try_get::<i32>("", "response_time_ms")?),
                    status_code: i64::from(row.try_get::<i32>("", "status_code")?),
                    endpoint: row.try_get("", "endpoint")?,
                    response_data,
                    error_message: row.try_get("", "error_message")?,
                    checked_at: row.try_get("", "checked_at")?,
                })
            })
            .collect::<Result<_, DbErr>>()
            .map_err(db_error)
    }
}

#[async_trait]
impl DeviceStore for SeaOrmStore {
    async fn register_device(
        &self,
        new: &NewDevice,
        key: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Device, StorageError> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let labels = serde_json::to_value(new.labels().as_map()).map_err(StorageError::backend)?;
        let inserted = device::ActiveModel {
            device_id: Set(new.id().as_str().to_owned()),
            name: Set(new.name().map(str::to_owned)),
            device_type: Set(new.device_type().map(str::to_owned)),
            labels: Set(labels),
            created_at: Set(now),
            container_metrics_since: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::conflict(format!("device '{}'", new.id())),
            _ => db_error(e),
        })?;
        api_key::ActiveModel {
            key_hash: Set(key.to_hex()),
            role: Set(Role::Device.as_str().to_owned()),
            device_id: Set(Some(inserted.id)),
            created_at: Set(now),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(to_device(inserted))
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError> {
        let row = device::Entity::find()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(row.map(to_device))
    }

    async fn devices(&self) -> Result<Vec<Device>, StorageError> {
        let rows =
            device::Entity::find().order_by_asc(device::Column::DeviceId).all(&self.db).await.map_err(db_error)?;
        Ok(rows.into_iter().map(to_device).collect())
    }

    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError> {
        let result = device::Entity::delete_many()
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(StorageError::not_found(format!("device '{id}'")));
        }
        Ok(())
    }

    async fn mark_container_reporter(&self, id: &DeviceId, at: DateTime<Utc>) -> Result<(), StorageError> {
        device::Entity::update_many()
            .col_expr(device::Column::ContainerMetricsSince, sea_orm::sea_query::Expr::value(at))
            .filter(device::Column::DeviceId.eq(id.as_str()))
            .filter(device::Column::ContainerMetricsSince.is_null())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError> {
        let rows = device::Entity::find()
            .filter(device::Column::ContainerMetricsSince.is_not_null())
            .order_by_asc(device::Column::DeviceId)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(|d| to_device(d).id).collect())
    }
}

#[async_trait]
impl KeyStore for SeaOrmStore {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError> {
        let device_pk = match &key.device_id {
            Some(id) => {
                Some(self.device_pk(id).await?.ok_or_else(|| StorageError::not_found(format!("device '{id}'")))?)
            }
            None => None,
        };
        let row = api_key::ActiveModel {
            key_hash: Set(key.hash.to_hex()),
            role: Set(key.role.as_str().to_owned()),
            device_id: Set(device_pk),
            created_at: Set(key.created_at),
            revoked_at: Set(None),
            ..Default::default()
        };
        let id = self.insert_one(row).await.map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::conflict("api key"),
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => StorageError::not_found("device"),
            _ => db_error(e),
        })?;
        Ok(KeyId(id))
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError> {
        let Some(row) = api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash.to_hex()))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let (Some(role), Some(stored_hash)) = (Role::parse(&row.role), KeyHash::from_hex(&row.key_hash)) else {
            return Err(StorageError::backend(format!("api key {} has a corrupt role or hash", row.id)));
        };
        let device_id = match row.device_id {
            Some(pk) => device::Entity::find_by_id(pk).one(&self.db).await.map_err(db_error)?.map(|d| to_device(d).id),
            None => None,
        };
        Ok(Some(StoredKey { id: KeyId(row.id), hash: stored_hash, role, device_id }))
    }

    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError> {
        let count = api_key::Entity::find()
            .filter(api_key::Column::Role.eq(role.as_str()))
            .filter(api_key::Column::RevokedAt.is_null())
            .count(&self.db)
            .await
            .map_err(db_error)?;
        Ok(count > 0)
    }

    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError> {
        let owner = match device {
            Some(id) => match self.device_pk(id).await? {
                Some(pk) => api_key::Column::DeviceId.eq(pk),
                None => return Ok(Vec::new()),
            },
            None => api_key::Column::DeviceId.is_null(),
        };
        let rows = api_key::Entity::find()
            .filter(owner)
            .filter(api_key::Column::RevokedAt.is_null())
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let role = Role::parse(&row.role)
                    .ok_or_else(|| StorageError::backend(format!("api key {} has a corrupt role", row.id)))?;
                Ok(KeyInfo { id: KeyId(row.id), role, device_id: device.cloned(), created_at: row.created_at })
            })
            .collect()
    }

    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> Result<(), StorageError> {
        let owner = match device {
            Some(device_id) => match self.device_pk(device_id).await? {
                Some(pk) => api_key::Column::DeviceId.eq(pk),
                None => return Err(StorageError::not_found(format!("device '{device_id}'"))),
            },
            None => api_key::Column::DeviceId.is_null(),
        };
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, sea_orm::sea_query::Expr::value(now))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(owner)
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        if result.rows_affected == 0 {
            return Err(StorageError::not_found(format!("key {}", id.0)));
        }
        Ok(())
    }
}

#[async_trait]
impl HealthStore for SeaOrmStore {
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Plain SQL with the document bound as JSON text, as for metric points: cheaper than
        // ActiveModels holding `serde_json::Value` trees. Each row finds its device's key in
        // a subquery, which saves a round trip and keeps the transaction's first statement a
        // write (on SQLite, one that reads first fails with BUSY_SNAPSHOT when another
        // connection wrote meanwhile). An unknown device leaves the key NULL: NotFound.
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await.map_err(db_error)?;
        let mut ids = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * HEALTH_COLUMNS.len());
            for item in chunk {
                let report = item.check.report();
                let document = serde_json::to_string(&item.check.document()).map_err(StorageError::backend)?;
                values.extend([
                    item.device_id.as_str().into(),
                    report.is_healthy.into(),
                    // Validation bounds both to i32.
                    i32::try_from(report.response_time_ms).unwrap_or(i32::MAX).into(),
                    i32::try_from(report.status_code).unwrap_or(0).into(),
                    report.endpoint.clone().into(),
                    document.into(),
                    report.error_message.clone().into(),
                    item.check.cpu_percent().into(),
                    item.check.memory_percent().into(),
                    item.check.disk_percent().into(),
                    item.checked_at.into(),
                ]);
            }
            let sql = insert_sql(backend, "health_checks", HEALTH_COLUMNS, chunk.len(), " RETURNING id");
            let rows = txn
                .query_all(Statement::from_sql_and_values(backend, sql, values))
                .await
                .map_err(|e| if is_missing_device(&e) { StorageError::not_found("device") } else { db_error(e) })?;
            let mut chunk_ids =
                rows.iter().map(|row| row.try_get::<i64>("", "id")).collect::<Result<Vec<_>, _>>().map_err(db_error)?;
            // Both backends assign keys in VALUES order; RETURNING's row order is not promised.
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids.into_iter().map(HealthCheckId));
        }
        txn.commit().await.map_err(db_error)?;
        Ok(ids)
    }

    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        self.health_rows(device, Some(since), limit).await
    }

    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError> {
        Ok(self.health_rows(device, None, 1).await?.pop())
    }
}

/// Rows read per query while filtering history by tags.
const HISTORY_PAGE: u64 = 1_000;

fn to_point(model: metric_point::Model) -> Result<Point, StorageError> {
    let corrupt = || StorageError::backend(format!("metric point {} is corrupt", model.id));
    let tags: Vec<(String, String)> = serde_json::from_value::<BTreeMap<String, String>>(model.tags.clone())
        .map_err(|_| corrupt())?
        .into_iter()
        .collect();
    let fields = fields_from_json(&model.fields).ok_or_else(corrupt)?;
    let metric_type = MetricType::parse(&model.metric_type).ok_or_else(corrupt)?;
    Point::new(model.name.clone(), tags, fields, model.time_ns, metric_type).map_err(|_| corrupt())
}

#[async_trait]
impl MetricStore for SeaOrmStore {
    async fn insert_points(&self, batch: &[Point]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Plain SQL with the JSON columns bound as text: an ActiveModel per point built and
        // cloned `serde_json::Value` trees, which cost more than SQLite's own work.
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await.map_err(db_error)?;
        for chunk in batch.chunks(INSERT_CHUNK) {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 5);
            for p in chunk {
                values.push(p.name().into());
                values.push(tags_to_json_text(p.tags()).into());
                values.push(fields_to_json_text(p.fields()).into());
                values.push(p.metric_type().as_str().into());
                values.push(p.timestamp_ns().into());
            }
            let sql = insert_sql(backend, "metric_points", POINT_COLUMNS, chunk.len(), "");
            txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
        }
        txn.commit().await.map_err(db_error)
    }

    async fn points_since(
        &self,
        name: &str,
        since_ns: i64,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, StorageError> {
        let mut found = Vec::new();
        // Keyset pagination on (time_ns, id), the order rows are read in.
        let mut after: Option<(i64, i64)> = None;
        // Tag filters run here rather than in SQL, where JSON operators differ per backend;
        // pages keep the memory bounded however selective the filter is.
        while found.len() < limit {
            let page = metric_point::Entity::find()
                .filter(metric_point::Column::Name.eq(name))
                .filter(metric_point::Column::TimeNs.gte(since_ns))
                .filter(match after {
                    Some((time_ns, id)) => Condition::any().add(metric_point::Column::TimeNs.lt(time_ns)).add(
                        Condition::all()
                            .add(metric_point::Column::TimeNs.eq(time_ns))
                            .add(metric_point::Column::Id.lt(id)),
                    ),
                    None => Condition::all(),
                })
                .order_by_desc(metric_point::Column::TimeNs)
                .order_by_desc(metric_point::Column::Id)
                .limit(HISTORY_PAGE)
                .all(&self.db)
                .await
                .map_err(db_error)?;
            let exhausted = (page.len() as u64) < HISTORY_PAGE;
            for row in page {
                after = Some((row.time_ns, row.id));
                let point = to_point(row)?;
                if tags.iter().all(|pair| point.tags().contains(pair)) {
                    found.push(point);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(found)
    }

    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Oldest first, so each series keeps its last row; memory follows the series count.
        let mut latest: HashMap<(String, serde_json::Value), metric_point::Model> = HashMap::new();
        self.scan_points(names, since_ns, |row| {
            latest.insert((row.name.clone(), row.tags.clone()), row);
            Ok(())
        })
        .await?;
        latest.into_values().map(to_point).collect()
    }
}

impl SeaOrmStore {
    /// Rows named one of `names` at or after `since_ns`, oldest first, in keyset pages;
    /// `visit` sees each.
    async fn scan_points(
        &self,
        names: &[&str],
        since_ns: i64,
        mut visit: impl FnMut(metric_point::Model) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut after: Option<(i64, i64)> = None;
        loop {
            let page = metric_point::Entity::find()
                .filter(metric_point::Column::Name.is_in(names.iter().copied()))
                .filter(metric_point::Column::TimeNs.gte(since_ns))
                .filter(match after {
                    Some((time_ns, id)) => Condition::any().add(metric_point::Column::TimeNs.gt(time_ns)).add(
                        Condition::all()
                            .add(metric_point::Column::TimeNs.eq(time_ns))
                            .add(metric_point::Column::Id.gt(id)),
                    ),
                    None => Condition::all(),
                })
                .order_by_asc(metric_point::Column::TimeNs)
                .order_by_asc(metric_point::Column::Id)
                .limit(HISTORY_PAGE)
                .all(&self.db)
                .await
                .map_err(db_error)?;
            let exhausted = (page.len() as u64) < HISTORY_PAGE;
            for row in page {
                after = Some((row.time_ns, row.id));
                visit(row)?;
            }
            if exhausted {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl Store for SeaOrmStore {
    async fn ping(&self) -> Result<(), StorageError> {
        self.db.ping().await.map_err(|e| StorageError::Unavailable { source: Box::new(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::{Bind, DbBackend, insert_sql, is_transient_code};

    #[test]
    fn multi_row_inserts_per_backend() {
        let columns = &[("a", Bind::Plain), ("j", Bind::Json), ("d", Bind::DeviceKey)];
        let device = "(SELECT id FROM devices WHERE device_id = ?)";
        assert_eq!(
            insert_sql(DbBackend::Sqlite, "t", columns, 2, ""),
            format!("INSERT INTO t (a, j, d) VALUES (?, ?, {device}), (?, ?, {device})")
        );
        assert_eq!(
            insert_sql(DbBackend::Postgres, "t", columns, 2, " RETURNING id"),
            "INSERT INTO t (a, j, d) VALUES ($1, $2::jsonb, (SELECT id FROM devices WHERE device_id = $3)), \
             ($4, $5::jsonb, (SELECT id FROM devices WHERE device_id = $6)) RETURNING id"
        );
    }

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
