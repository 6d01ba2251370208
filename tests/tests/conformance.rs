//! The storage conformance kit against every backend homepot ships or documents.

use homepot_storage::InMemoryStore;
use homepot_storage::conformance;
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use homepot_tests::{Backend, init, open_store};

#[tokio::test]
async fn sqlite_file_conforms() {
    let (store, _dir) = open_store(Backend::Sqlite, "sqlite_file_conforms").await.expect("SQLite is always available");
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn sqlite_in_memory_conforms() {
    init();
    let store = SeaOrmStore::connect("sqlite::memory:", &StoreOptions::default()).await.expect("open");
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn postgres_conforms() {
    let Some((store, _)) = open_store(Backend::Postgres, "postgres_conforms").await else { return };
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn in_memory_conforms() {
    conformance::run_all(&InMemoryStore::new()).await;
}

#[tokio::test]
async fn migrations_are_idempotent_across_restarts() {
    init();
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("h.db").display());
    let first = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("first start");
    conformance::registers_and_reads_devices(&first).await;
    drop(first);
    let second = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("second start");
    conformance::stores_health_checks_in_order(&second).await;
}
