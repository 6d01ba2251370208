//! Several processes on one database (homepot instances behind a balancer, or a server and the
//! CLI): what each of them merges into the rollups must add up exactly.

use std::sync::Arc;

use homepot_core::rollup::{Aggregate, Tier};
use homepot_storage::{RollupDelta, RollupStore, SeriesKey};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::{Backend, open_store, postgres_url, unique};

/// Processes that each merge this many one-sample deltas into the same buckets.
const PROCESSES: usize = 2;
const TASKS_PER_PROCESS: usize = 4;
const MERGES_PER_TASK: usize = 25;

#[tokio::test]
async fn postgres_concurrent_merges_into_one_bucket_add_up() {
    let Some(url) = postgres_url("postgres_concurrent_merges_into_one_bucket_add_up") else { return };
    // Connects after the shared helper, which runs the migrations once.
    let Some((first, _)) = open_store(Backend::Postgres, "shared_database").await else { return };
    let second = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("a second process");
    merges_add_up(vec![Arc::new(first), Arc::new(second)]).await;
}

#[tokio::test]
async fn sqlite_concurrent_merges_into_one_bucket_add_up() {
    let (first, dir) = open_store(Backend::Sqlite, "shared_database").await.expect("SQLite");
    let url = format!("sqlite://{}", dir.as_ref().expect("a file").path().join("homepot.db").display());
    let second = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("a second process");
    merges_add_up(vec![Arc::new(first), Arc::new(second)]).await;
}

/// Every process merges deltas of one sample into the same minute, hour and day buckets at
/// once; each bucket must end up counting every one of them.
async fn merges_add_up(stores: Vec<Arc<SeaOrmStore>>) {
    assert_eq!(stores.len(), PROCESSES);
    let series = SeriesKey { name: unique("contended"), tags: vec![], field: "value".into() };
    let start = chrono::Utc::now().timestamp() / 86_400 * 86_400;
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..TASKS_PER_PROCESS {
            let (store, series) = (Arc::clone(store), series.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..MERGES_PER_TASK {
                    let sample = Aggregate::sample(1.0, start * 1_000_000_000 + i64::try_from(i).unwrap());
                    let deltas: Vec<RollupDelta> = [Tier::Minute, Tier::Hour, Tier::Day]
                        .into_iter()
                        .map(|tier| RollupDelta { series: series.clone(), tier, start, aggregate: sample })
                        .collect();
                    store.merge_rollups(&deltas).await.expect("merged");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("joined");
    }
    let expected = (PROCESSES * TASKS_PER_PROCESS * MERGES_PER_TASK) as u64;
    let found = stores[0].find_series(&[&series.name], "value", &[], 10).await.expect("series");
    assert_eq!(found.len(), 1, "one series, however many processes created it: {found:?}");
    for tier in [Tier::Minute, Tier::Hour, Tier::Day] {
        let buckets = stores[0].rollup_buckets(&[found[0].id], tier, start, start + 1).await.expect("buckets");
        assert_eq!(buckets.len(), 1, "{tier:?}");
        assert_eq!(buckets[0].aggregate.count, expected, "{tier:?}: every merge counted once");
        assert_eq!(buckets[0].aggregate.sum.to_f64(), expected as f64, "{tier:?}");
    }
}
