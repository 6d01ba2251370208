//! Plain SQL for the hot inserts: multi-row `INSERT`s with per-backend placeholders. sea-orm
//! models of `serde_json::Value` trees cost more than the database's own work there.

use sea_orm::DbBackend;

/// Rows per INSERT statement: well under SQLite's bound-parameter limit.
pub(crate) const INSERT_CHUNK: usize = 500;

/// A row count as SQL's LIMIT takes it: the drivers bind it as a signed 64-bit integer (a
/// larger value makes sqlx's SQLite binding panic), so "no limit" is `i64::MAX`.
pub(crate) fn row_limit(limit: impl TryInto<i64>) -> u64 {
    limit.try_into().map_or(i64::MAX as u64, |n: i64| n.max(0) as u64)
}

/// How a bound value becomes a column's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind {
    /// As it is.
    Plain,
    /// JSON text (PostgreSQL casts it to `jsonb`).
    Json,
    /// A device id, turned into the device's key (NULL when unknown).
    DeviceKey,
}

/// `INSERT INTO table (columns) VALUES (...), (...)` for `rows` rows, then `suffix`.
/// PostgreSQL numbers its parameters.
pub(crate) fn insert_sql(
    backend: DbBackend,
    table: &str,
    columns: &[(&str, Bind)],
    rows: usize,
    suffix: &str,
) -> String {
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

/// `sql` with its `?` placeholders numbered `$1, $2, ...` for PostgreSQL. The statements
/// written here hold no `?` other than placeholders.
pub(crate) fn numbered(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            out.push_str(&format!("${n}"));
        }
        out.push_str(part);
    }
    out
}

impl crate::SeaOrmStore {
    /// Deletes at most `max_rows` rows of `table` (rows named by `key`, a column or a list of
    /// them) where `condition` (with `?` placeholders for `values`) holds, in its own short
    /// transaction, and returns how many it deleted.
    pub(crate) async fn delete_some(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        mut values: Vec<sea_orm::Value>,
        max_rows: u64,
    ) -> Result<u64, homepot_storage::StorageError> {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = self.db.get_database_backend();
        let sql = numbered(
            backend,
            &format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT ?)"),
        );
        values.push(i64::try_from(row_limit(max_rows)).unwrap_or(i64::MAX).into());
        let (_gate, txn) = self.begin_write().await.map_err(crate::error::db_error)?;
        let deleted = txn
            .execute(Statement::from_sql_and_values(backend, sql, values))
            .await
            .map_err(crate::error::db_error)?
            .rows_affected();
        txn.commit().await.map_err(crate::error::db_error)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::{Bind, DbBackend, insert_sql, numbered};

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered(DbBackend::Postgres, "a = ? AND b < ? LIMIT ?"), "a = $1 AND b < $2 LIMIT $3");
        assert_eq!(numbered(DbBackend::Sqlite, "a = ?"), "a = ?");
    }

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
}
