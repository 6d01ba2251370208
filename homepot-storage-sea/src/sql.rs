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

#[cfg(test)]
mod tests {
    use super::{Bind, DbBackend, insert_sql};

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
