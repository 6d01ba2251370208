//! Metric history: a row per point (name, tags and typed fields as JSON text, `time_ns`),
//! written by multi-row SQL and read in keyset pages.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use async_trait::async_trait;
use homepot_core::{MetricType, Point};
use homepot_storage::{MetricStore, NewReceipt, StorageError};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use crate::SeaOrmStore;
use crate::entity::metric_point;
use crate::error::db_error;
use crate::point_codec::{fields_from_json, fields_to_json_text, tags_to_json_text};
use crate::sql::{Bind, INSERT_CHUNK, insert_sql};

/// Columns bound per metric point, in order.
const POINT_COLUMNS: &[(&str, Bind)] = &[
    ("name", Bind::Plain),
    ("tags", Bind::Json),
    ("fields", Bind::Json),
    ("metric_type", Bind::Plain),
    ("time_ns", Bind::Plain),
];

/// Rows read per query while filtering history by tags.
const HISTORY_PAGE: u64 = 1_000;

pub(crate) fn to_point(model: metric_point::Model) -> Result<Point, StorageError> {
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
    async fn insert_points(&self, batch: &[Point], receipts: &[NewReceipt]) -> Result<(), StorageError> {
        if batch.is_empty() && receipts.is_empty() {
            return Ok(());
        }
        // Plain SQL with the JSON columns bound as text: an ActiveModel per point built and
        // cloned `serde_json::Value` trees, which cost more than SQLite's own work.
        let backend = self.db.get_database_backend();
        let (_gate, txn) = self.begin_write().await.map_err(db_error)?;
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
        crate::receipts::insert_receipts(&txn, receipts.iter().map(|r| (r, None))).await?;
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
        if limit == 0 {
            return Ok(found);
        }
        // Tag filters run here rather than in SQL, where JSON operators differ per backend;
        // pages keep the memory bounded however selective the filter is.
        self.scan_points(&[name], since_ns, Order::Desc, |row| {
            let point = to_point(row)?;
            if tags.iter().all(|pair| point.tags().contains(pair)) {
                found.push(point);
            }
            Ok(if found.len() == limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(found)
    }

    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Oldest first, so each series keeps its last row; memory follows the series count.
        let mut latest: HashMap<(String, serde_json::Value), metric_point::Model> = HashMap::new();
        self.scan_points(names, since_ns, Order::Asc, |row| {
            latest.insert((row.name.clone(), row.tags.clone()), row);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        latest.into_values().map(to_point).collect()
    }

    async fn purge_points(&self, from_ns: i64, before_ns: i64, max_rows: u64) -> Result<u64, StorageError> {
        let values = vec![from_ns.into(), before_ns.into()];
        self.delete_some("metric_points", "id", "time_ns >= ? AND time_ns < ?", values, max_rows).await
    }
}

impl SeaOrmStore {
    /// Rows named one of `names` at or after `since_ns`, in `order` of (time, id), read in
    /// keyset pages so memory stays bounded; `visit` sees each until it breaks.
    async fn scan_points(
        &self,
        names: &[&str],
        since_ns: i64,
        order: Order,
        mut visit: impl FnMut(metric_point::Model) -> Result<ControlFlow<()>, StorageError>,
    ) -> Result<(), StorageError> {
        use metric_point::Column::{Id, Name, TimeNs};
        let descending = matches!(order, Order::Desc);
        let mut after: Option<(i64, i64)> = None;
        loop {
            // The cursor bounds the index range itself; as an OR alone it would leave every
            // page scanning from the newest (or `since_ns`) row again.
            let resume = match after {
                Some((time_ns, id)) if descending => Condition::all()
                    .add(TimeNs.lte(time_ns))
                    .add(Condition::any().add(TimeNs.lt(time_ns)).add(Id.lt(id))),
                Some((time_ns, id)) => Condition::all()
                    .add(TimeNs.gte(time_ns))
                    .add(Condition::any().add(TimeNs.gt(time_ns)).add(Id.gt(id))),
                None => Condition::all(),
            };
            let page = metric_point::Entity::find()
                .filter(Name.is_in(names.iter().copied()))
                .filter(TimeNs.gte(since_ns))
                .filter(resume)
                .order_by(TimeNs, order.clone())
                .order_by(Id, order.clone())
                .limit(HISTORY_PAGE)
                .all(&self.db)
                .await
                .map_err(db_error)?;
            let exhausted = (page.len() as u64) < HISTORY_PAGE;
            for row in page {
                after = Some((row.time_ns, row.id));
                if visit(row)?.is_break() {
                    return Ok(());
                }
            }
            if exhausted {
                return Ok(());
            }
        }
    }
}
