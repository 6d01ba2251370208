//! The fleet query in SQL: devices joined with `device_latest`, filtered on text, state and
//! health, sorted on one column with absent values last and ties broken by device id, and
//! continued by keyset. Text compares byte by byte on both backends (`COLLATE "C"` on
//! PostgreSQL), as `homepot_storage::fleet::fleet_order` does. Labels are matched after the
//! query, in pages, because the backends' JSON operators differ.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use homepot_core::Device;
use homepot_storage::StorageError;
use homepot_storage::fleet::{FleetDevice, FleetPage, FleetQuery, FleetSortKey, LatestHealth, SortValue};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};

use crate::SeaOrmStore;
use crate::error::db_error;
use crate::sql::numbered;

/// Rows read per query while labels filter them.
const PAGE: usize = 500;

fn column(key: FleetSortKey) -> &'static str {
    match key {
        FleetSortKey::DeviceId => "d.device_id",
        FleetSortKey::Name => "d.name",
        FleetSortKey::CreatedAt => "d.created_at",
        FleetSortKey::CheckedAt => "l.checked_at",
        FleetSortKey::IsHealthy => "l.is_healthy",
        FleetSortKey::ResponseTimeMs => "l.response_time_ms",
        FleetSortKey::CpuPercent => "l.cpu_percent",
        FleetSortKey::MemoryPercent => "l.memory_percent",
        FleetSortKey::DiskPercent => "l.disk_percent",
    }
}

fn bind(value: &SortValue) -> sea_orm::Value {
    match value {
        SortValue::Null => sea_orm::Value::String(None),
        SortValue::Bool(b) => (*b).into(),
        SortValue::Int(i) => (*i).into(),
        SortValue::Float(f) => (*f).into(),
        SortValue::Text(t) => t.clone().into(),
        SortValue::Time(t) => (*t).into(),
    }
}

/// `%text%` for LIKE, with the wildcards and the escape character taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn row_device(row: &QueryResult) -> Result<FleetDevice, StorageError> {
    let labels: String = row.try_get("", "labels").map_err(db_error)?;
    let labels: BTreeMap<String, String> = serde_json::from_str(&labels).unwrap_or_default();
    let device = Device::from_stored(
        row.try_get("", "device_id").map_err(db_error)?,
        row.try_get("", "name").map_err(db_error)?,
        row.try_get("", "device_type").map_err(db_error)?,
        labels,
        row.try_get("", "created_at").map_err(db_error)?,
    );
    let checked_at: Option<DateTime<Utc>> = row.try_get("", "checked_at").map_err(db_error)?;
    let latest = match checked_at {
        Some(checked_at) => Some(LatestHealth {
            checked_at,
            is_healthy: row.try_get("", "is_healthy").map_err(db_error)?,
            response_time_ms: row.try_get("", "response_time_ms").map_err(db_error)?,
            cpu_percent: row.try_get("", "cpu_percent").map_err(db_error)?,
            memory_percent: row.try_get("", "memory_percent").map_err(db_error)?,
            disk_percent: row.try_get("", "disk_percent").map_err(db_error)?,
        }),
        None => None,
    };
    let state: Option<String> = row.try_get("", "state").map_err(db_error)?;
    let since: Option<DateTime<Utc>> = row.try_get("", "state_since").map_err(db_error)?;
    Ok(FleetDevice { device, latest, state: state.zip(since) })
}

impl SeaOrmStore {
    pub(crate) async fn fleet_page(&self, query: &FleetQuery) -> Result<FleetPage, StorageError> {
        let backend = self.db.get_database_backend();
        let collate = if backend == DbBackend::Postgres { " COLLATE \"C\"" } else { "" };
        let text_key = matches!(query.sort, FleetSortKey::DeviceId | FleetSortKey::Name);
        let sorted = format!("{}{}", column(query.sort), if text_key { collate } else { "" });
        let id = format!("d.device_id{collate}");
        let direction = if query.descending { "DESC" } else { "ASC" };
        let beyond = if query.descending { "<" } else { ">" };

        let mut filters = Vec::new();
        let mut values: Vec<sea_orm::Value> = Vec::new();
        if let Some(text) = &query.text {
            filters.push("(LOWER(d.device_id) LIKE ? ESCAPE '\\' OR LOWER(d.name) LIKE ? ESCAPE '\\')".to_owned());
            let pattern = like_pattern(text);
            values.extend([pattern.clone().into(), pattern.into()]);
        }
        if let Some(state) = &query.state {
            filters.push("l.state = ?".to_owned());
            values.push(state.clone().into());
        }
        if let Some(healthy) = query.healthy {
            filters.push("l.is_healthy = ?".to_owned());
            values.push(healthy.into());
        }
        let wanted = query.limit.saturating_add(1);
        let mut found = Vec::with_capacity(wanted.min(PAGE));
        let mut after = query.after.clone();
        loop {
            let mut conditions = filters.clone();
            let mut bound = values.clone();
            match after.as_ref().map(|c| (&c.value, c.device_id.as_str())) {
                Some((SortValue::Null, last)) => {
                    conditions.push(format!("({sorted} IS NULL AND {id} > ?)"));
                    bound.push(last.to_owned().into());
                }
                Some((value, last)) => {
                    conditions
                        .push(format!("({sorted} {beyond} ? OR ({sorted} = ? AND {id} > ?) OR {sorted} IS NULL)"));
                    bound.extend([bind(value), bind(value), last.to_owned().into()]);
                }
                None => {}
            }
            let condition =
                if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
            // Without label filters the page is exactly what is wanted; with them, read ahead.
            let rows = if query.labels.is_empty() { wanted } else { PAGE.max(wanted) };
            let sql = numbered(
                backend,
                &format!(
                    "SELECT d.device_id, d.name, d.device_type, CAST(d.labels AS TEXT) AS labels, d.created_at, \
                     l.checked_at, l.is_healthy, l.response_time_ms, l.cpu_percent, l.memory_percent, \
                     l.disk_percent, l.state, l.state_since \
                     FROM devices d LEFT JOIN device_latest l ON l.device_id = d.id{condition} \
                     ORDER BY {sorted} {direction} NULLS LAST, {id} ASC LIMIT ?"
                ),
            );
            bound.push(i64::try_from(rows).unwrap_or(i64::MAX).into());
            let page =
                self.db.query_all(Statement::from_sql_and_values(backend, sql, bound)).await.map_err(db_error)?;
            let exhausted = page.len() < rows;
            for row in &page {
                let device = row_device(row)?;
                after = Some(homepot_storage::fleet::FleetCursor {
                    value: device.sort_value(query.sort),
                    device_id: device.device.id.clone(),
                });
                if device.matches(query) {
                    found.push(device);
                    if found.len() == wanted {
                        return Ok(FleetPage::from_sorted(found, query));
                    }
                }
            }
            if exhausted {
                return Ok(FleetPage::from_sorted(found, query));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn search_text_is_taken_literally() {
        assert_eq!(like_pattern("Till_1%"), "%till\\_1\\%%");
    }
}
