//! Rollups: a row per series, found by the SHA-256 of its key, and a row per series, tier
//! and bucket. A merge reads what is stored and writes back the merge in one transaction:
//! the sum is an exact decimal that SQL cannot add, and min, max and last follow
//! `Aggregate::merge`'s rules, which a SQL expression would have to repeat.
//!
//! Series ids never change once assigned, so they are cached after their transaction
//! commits. Every merge starts with a write, so on SQLite it holds the write lock before it
//! reads and cannot lose a race with another writer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use homepot_core::rollup::{Aggregate, ExactSum, Tier};
use homepot_storage::{RollupDelta, RollupStore, SeriesId, SeriesKey, StorageError, StoredBucket, StoredSeries};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Statement};
use sha2::{Digest, Sha256};

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::point_codec::tags_to_json_text;
use crate::sql::{Bind, insert_sql};

/// Rows per statement: nine parameters each stay well under SQLite's limit.
const CHUNK: usize = 300;

const SERIES_COLUMNS: &[(&str, Bind)] =
    &[("key_hash", Bind::Plain), ("name", Bind::Plain), ("field", Bind::Plain), ("tags", Bind::Plain)];

const BUCKET_COLUMNS: &[(&str, Bind)] = &[
    ("series_id", Bind::Plain),
    ("tier", Bind::Plain),
    ("bucket_start", Bind::Plain),
    ("sample_count", Bind::Plain),
    ("value_sum", Bind::Plain),
    ("value_min", Bind::Plain),
    ("value_max", Bind::Plain),
    ("value_last", Bind::Plain),
    ("last_ns", Bind::Plain),
];

/// Series ids already resolved, shared by every clone of the store.
pub(crate) type SeriesCache = Arc<Mutex<HashMap<SeriesKey, i64>>>;

/// One bucket row's key: series id, tier width in seconds, start.
type BucketKey = (i64, i32, i64);

fn key_hash(key: &SeriesKey, tags: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [key.name.as_str(), key.field.as_str(), tags] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn tier_seconds(tier: Tier) -> i32 {
    // 60, 3,600 and 86,400 all fit.
    i32::try_from(tier.seconds()).unwrap_or(i32::MAX)
}

/// `?, ?, ?` or `$n, $n+1, ...`: `count` parameters numbered from `first` (1-based).
fn parameters(backend: DbBackend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| if backend == DbBackend::Postgres { format!("${n}") } else { "?".to_owned() })
        .collect::<Vec<_>>()
        .join(", ")
}

fn corrupt(what: &str) -> StorageError {
    StorageError::backend(format!("rollup row is corrupt: {what}"))
}

pub(crate) fn aggregate_from(row: &QueryResult) -> Result<Aggregate, StorageError> {
    let get_i64 = |column: &str| row.try_get::<i64>("", column).map_err(db_error);
    let get_f64 = |column: &str| row.try_get::<f64>("", column).map_err(db_error);
    let sum: String = row.try_get("", "value_sum").map_err(db_error)?;
    Ok(Aggregate {
        count: u64::try_from(get_i64("sample_count")?).map_err(|_| corrupt("negative count"))?,
        sum: ExactSum::parse_decimal(&sum).ok_or_else(|| corrupt("sum"))?,
        min: get_f64("value_min")?,
        max: get_f64("value_max")?,
        last: get_f64("value_last")?,
        last_ns: get_i64("last_ns")?,
    })
}

fn bucket_values(values: &mut Vec<sea_orm::Value>, (series, tier, start): BucketKey, a: &Aggregate) {
    values.push(series.into());
    values.push(tier.into());
    values.push(start.into());
    values.push(i64::try_from(a.count).unwrap_or(i64::MAX).into());
    values.push(a.sum.to_decimal().into());
    values.push(a.min.into());
    values.push(a.max.into());
    values.push(a.last.into());
    values.push(a.last_ns.into());
}

impl SeaOrmStore {
    /// The ids of `keys`, creating the series that do not exist yet within `txn`.
    async fn series_ids(
        &self,
        txn: &DatabaseTransaction,
        keys: &[&SeriesKey],
    ) -> Result<HashMap<SeriesKey, i64>, StorageError> {
        let backend = txn.get_database_backend();
        let mut ids = HashMap::with_capacity(keys.len());
        let mut missing = Vec::new();
        {
            let cache = self.series_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in keys {
                match cache.get(*key) {
                    Some(id) => {
                        ids.insert((*key).clone(), *id);
                    }
                    None => missing.push(*key),
                }
            }
        }
        // In key order: two instances creating the same series at once wait for each other
        // instead of deadlocking.
        missing.sort_unstable();
        for chunk in missing.chunks(CHUNK) {
            let mut by_hash = HashMap::with_capacity(chunk.len());
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 4);
            for key in chunk {
                let tags = tags_to_json_text(&key.tags);
                let hash = key_hash(key, &tags);
                values.extend([hash.clone().into(), key.name.clone().into(), key.field.clone().into(), tags.into()]);
                by_hash.insert(hash, *key);
            }
            let sql =
                insert_sql(backend, "rollup_series", SERIES_COLUMNS, chunk.len(), " ON CONFLICT (key_hash) DO NOTHING");
            txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
            let hashes: Vec<sea_orm::Value> = by_hash.keys().map(|h| h.clone().into()).collect();
            let sql = format!(
                "SELECT id, key_hash FROM rollup_series WHERE key_hash IN ({})",
                parameters(backend, 1, hashes.len())
            );
            for row in txn.query_all(Statement::from_sql_and_values(backend, sql, hashes)).await.map_err(db_error)? {
                let hash: String = row.try_get("", "key_hash").map_err(db_error)?;
                let id: i64 = row.try_get("", "id").map_err(db_error)?;
                if let Some(key) = by_hash.get(&hash) {
                    ids.insert((*key).clone(), id);
                }
            }
        }
        if ids.len() != keys.len() {
            return Err(StorageError::backend("rollup series were not created"));
        }
        Ok(ids)
    }

    /// The stored aggregates of `keys`, which exist.
    async fn stored_buckets(
        &self,
        txn: &DatabaseTransaction,
        keys: &[BucketKey],
    ) -> Result<HashMap<BucketKey, Aggregate>, StorageError> {
        let backend = txn.get_database_backend();
        let mut stored = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("({})", parameters(backend, 3 * i + 1, 3))).collect();
            // On PostgreSQL another instance may merge into the same buckets at once: lock the
            // rows until this transaction ends, in key order (as every merge does) so that two
            // merges cannot deadlock. Without it both read the same count and one merge is lost.
            // SQLite needs no lock: a merge holds the database's write lock from its first write.
            let lock =
                if backend == DbBackend::Postgres { " ORDER BY series_id, tier, bucket_start FOR UPDATE" } else { "" };
            let sql = format!(
                "SELECT series_id, tier, bucket_start, sample_count, value_sum, value_min, value_max, value_last, \
                 last_ns FROM rollup_buckets WHERE (series_id, tier, bucket_start) IN (VALUES {}){lock}",
                rows.join(", ")
            );
            let values: Vec<sea_orm::Value> =
                chunk.iter().flat_map(|(s, t, b)| [(*s).into(), (*t).into(), (*b).into()]).collect();
            for row in txn.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)? {
                let key = (
                    row.try_get::<i64>("", "series_id").map_err(db_error)?,
                    row.try_get::<i32>("", "tier").map_err(db_error)?,
                    row.try_get::<i64>("", "bucket_start").map_err(db_error)?,
                );
                stored.insert(key, aggregate_from(&row)?);
            }
        }
        Ok(stored)
    }
}

#[async_trait]
impl RollupStore for SeaOrmStore {
    async fn merge_rollups(&self, deltas: &[RollupDelta]) -> Result<(), StorageError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let keys: Vec<&SeriesKey> = deltas.iter().map(|d| &d.series).collect::<HashSet<_>>().into_iter().collect();
        let backend = self.db.get_database_backend();
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
        let ids = self.series_ids(&txn, &keys).await?;
        // Deltas of the same bucket are folded here first: each bucket row is written once.
        let mut merged: BTreeMap<BucketKey, Aggregate> = BTreeMap::new();
        for delta in deltas {
            let key = (ids[&delta.series], tier_seconds(delta.tier), delta.start);
            merged.entry(key).and_modify(|a| a.merge(&delta.aggregate)).or_insert(delta.aggregate);
        }
        let merged: Vec<(BucketKey, Aggregate)> = merged.into_iter().collect();

        // New buckets are inserted as they are; the rest are read, merged and written back.
        let mut existing = Vec::new();
        for chunk in merged.chunks(CHUNK) {
            let mut values = Vec::with_capacity(chunk.len() * BUCKET_COLUMNS.len());
            for (key, aggregate) in chunk {
                bucket_values(&mut values, *key, aggregate);
            }
            let suffix =
                " ON CONFLICT (series_id, tier, bucket_start) DO NOTHING RETURNING series_id, tier, bucket_start";
            let sql = insert_sql(backend, "rollup_buckets", BUCKET_COLUMNS, chunk.len(), suffix);
            let rows = txn.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
            let mut inserted = HashSet::with_capacity(rows.len());
            for row in rows {
                inserted.insert((
                    row.try_get::<i64>("", "series_id").map_err(db_error)?,
                    row.try_get::<i32>("", "tier").map_err(db_error)?,
                    row.try_get::<i64>("", "bucket_start").map_err(db_error)?,
                ));
            }
            existing.extend(chunk.iter().filter(|(key, _)| !inserted.contains(key)).copied());
        }
        if !existing.is_empty() {
            let keys: Vec<BucketKey> = existing.iter().map(|(key, _)| *key).collect();
            let stored = self.stored_buckets(&txn, &keys).await?;
            for chunk in existing.chunks(CHUNK) {
                let mut values = Vec::with_capacity(chunk.len() * BUCKET_COLUMNS.len());
                for (key, delta) in chunk {
                    let mut aggregate = *stored.get(key).ok_or_else(|| corrupt("a bucket vanished mid-merge"))?;
                    aggregate.merge(delta);
                    bucket_values(&mut values, *key, &aggregate);
                }
                let suffix = " ON CONFLICT (series_id, tier, bucket_start) DO UPDATE SET \
                     sample_count = excluded.sample_count, value_sum = excluded.value_sum, \
                     value_min = excluded.value_min, value_max = excluded.value_max, \
                     value_last = excluded.value_last, last_ns = excluded.last_ns";
                let sql = insert_sql(backend, "rollup_buckets", BUCKET_COLUMNS, chunk.len(), suffix);
                txn.execute(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?;
            }
        }
        txn.commit().await.map_err(db_error)?;
        self.series_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ids);
        Ok(())
    }

    async fn find_series(
        &self,
        names: &[&str],
        field: &str,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<StoredSeries>, StorageError> {
        if names.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let backend = self.db.get_database_backend();
        // Each wanted tag narrows the scan in SQL to rows whose compact JSON holds `"k":"v"`,
        // so a device's series are not found by decoding every device's tags. The text match
        // can only over-select (SQLite's LIKE ignores ASCII case); the decoded tags decide.
        let tag_filters: String = (0..tags.len())
            .map(|i| format!(" AND tags LIKE {} ESCAPE '\\'", parameters(backend, 2 + names.len() + i, 1)))
            .collect();
        let sql = format!(
            "SELECT id, name, tags FROM rollup_series WHERE field = {} AND name IN ({}){tag_filters} ORDER BY id",
            parameters(backend, 1, 1),
            parameters(backend, 2, names.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![field.into()];
        values.extend(names.iter().map(|n| (*n).into()));
        values.extend(tags.iter().map(|(k, v)| {
            let pair = tags_to_json_text(&[(k.clone(), v.clone())]);
            let inner = &pair[1..pair.len() - 1];
            let escaped = inner.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%").into()
        }));
        let mut found = Vec::new();
        for row in self.db.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)? {
            let text: String = row.try_get("", "tags").map_err(db_error)?;
            let series_tags: Vec<(String, String)> = serde_json::from_str::<BTreeMap<String, String>>(&text)
                .map_err(|_| corrupt("tags"))?
                .into_iter()
                .collect();
            if !tags.iter().all(|pair| series_tags.contains(pair)) {
                continue;
            }
            found.push(StoredSeries {
                id: SeriesId(row.try_get("", "id").map_err(db_error)?),
                key: SeriesKey {
                    name: row.try_get("", "name").map_err(db_error)?,
                    tags: series_tags,
                    field: field.to_owned(),
                },
            });
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    async fn series_names(&self) -> Result<Vec<(String, String)>, StorageError> {
        let backend = self.db.get_database_backend();
        let sql = "SELECT DISTINCT name, field FROM rollup_series";
        let rows = self.db.query_all(Statement::from_string(backend, sql)).await.map_err(db_error)?;
        let mut names = rows
            .iter()
            .map(|row| Ok((row.try_get("", "name").map_err(db_error)?, row.try_get("", "field").map_err(db_error)?)))
            .collect::<Result<Vec<(String, String)>, StorageError>>()?;
        // Ordered here, bytewise: PostgreSQL's collation would order by the locale's rules.
        names.sort_unstable();
        Ok(names)
    }

    async fn rollup_buckets(
        &self,
        series: &[SeriesId],
        tier: Tier,
        from_s: i64,
        to_s: i64,
    ) -> Result<Vec<StoredBucket>, StorageError> {
        if series.is_empty() || from_s >= to_s {
            return Ok(Vec::new());
        }
        let backend = self.db.get_database_backend();
        let mut buckets = Vec::new();
        let mut ids: Vec<i64> = series.iter().map(|s| s.0).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT series_id, bucket_start, sample_count, value_sum, value_min, value_max, value_last, last_ns \
                 FROM rollup_buckets WHERE tier = {} AND bucket_start >= {} AND bucket_start < {} \
                 AND series_id IN ({}) ORDER BY series_id, bucket_start",
                parameters(backend, 1, 1),
                parameters(backend, 2, 1),
                parameters(backend, 3, 1),
                parameters(backend, 4, chunk.len())
            );
            let mut values: Vec<sea_orm::Value> = vec![tier_seconds(tier).into(), from_s.into(), to_s.into()];
            values.extend(chunk.iter().map(|id| (*id).into()));
            for row in
                self.db.query_all(Statement::from_sql_and_values(backend, sql, values)).await.map_err(db_error)?
            {
                buckets.push(StoredBucket {
                    series: SeriesId(row.try_get("", "series_id").map_err(db_error)?),
                    start: row.try_get("", "bucket_start").map_err(db_error)?,
                    aggregate: aggregate_from(&row)?,
                });
            }
        }
        Ok(buckets)
    }

    async fn purge_rollups(&self, tier: Tier, before_s: i64, max_rows: u64) -> Result<u64, StorageError> {
        let values = vec![tier_seconds(tier).into(), before_s.into()];
        self.delete_some(
            "rollup_buckets",
            "series_id, tier, bucket_start",
            "tier = ? AND bucket_start < ?",
            values,
            max_rows,
        )
        .await
    }

    async fn oldest_bucket(&self, tier: Tier) -> Result<Option<i64>, StorageError> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT MIN(bucket_start) AS oldest FROM rollup_buckets WHERE tier = {}",
            parameters(backend, 1, 1)
        );
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(backend, sql, [tier_seconds(tier).into()]))
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => row.try_get::<Option<i64>>("", "oldest").map_err(db_error),
            None => Ok(None),
        }
    }
}
