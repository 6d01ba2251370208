//! SQLite's write-ahead log stays bounded under sustained writes. Checkpoints can recycle it
//! only when no connection holds a read snapshot, so no write may leave a statement open.

use std::path::Path;

use homepot_core::analytics::{JobOutcome, JobStatus, StateChange};
use homepot_core::{ApiKey, DeviceId, HealthCheck, HealthReport, NewDevice};
use homepot_storage::{AnalyticsStore, DeviceStore, HealthStore, KeyStore, NewHealthCheck, NewKey};
use homepot_storage_sea::{SeaOrmStore, StoreOptions};

/// Commits that each write about one page: with a recycled WAL it stays near a 1,000-page
/// checkpoint threshold (4 MiB); without, it grows by several pages per commit.
const COMMITS: usize = 5_000;
const BOUND: u64 = 16 * 1024 * 1024;

fn wal_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("homepot.db-wal")).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_wal_is_recycled_under_single_record_writes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("homepot.db").display());
    let options = StoreOptions { sqlite_checkpoint_pages: 1_000, ..StoreOptions::default() };
    let store = SeaOrmStore::connect(&url, &options).await.expect("open SQLite");
    let dir = dir.path().to_owned();
    let device = DeviceId::parse("pos-1").expect("valid id");
    store
        .register_device(&NewDevice::with_id(device.clone()), &ApiKey::from_entropy([7; 32]).hash(), chrono::Utc::now())
        .await
        .expect("register");
    let change = StateChange {
        timestamp: chrono::Utc::now(),
        device_id: "pos-1".to_owned(),
        previous_state: None,
        new_state: "online".to_owned(),
        changed_by: "system".to_owned(),
        recorded_by: Some("system".to_owned()),
        reason: None,
        metadata: serde_json::Map::new(),
    };
    let job = JobOutcome {
        timestamp: chrono::Utc::now(),
        job_id: "job-1".to_owned(),
        job_type: "restart".to_owned(),
        device_id: None,
        status: JobStatus::Success,
        duration_ms: Some(5),
        error_code: None,
        error_message: None,
        retry_count: 0,
        initiated_by: None,
        metadata: serde_json::Map::new(),
    };
    let check = NewHealthCheck {
        device_id: device.clone(),
        checked_at: chrono::Utc::now(),
        check: HealthCheck::validate(HealthReport::minimal(true, 5)).expect("valid"),
        receipt: None,
    };
    for i in 0..COMMITS {
        store.insert_state_change(&change).await.expect("state change");
        store.insert_job_outcome(&job).await.expect("job outcome");
        store.insert_health(std::slice::from_ref(&check)).await.expect("health check");
        if i % 50 == 0 {
            let mut entropy = [0u8; 32];
            entropy[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let key = NewKey {
                hash: ApiKey::from_entropy(entropy).hash(),
                role: homepot_core::Role::Read,
                device_id: None,
                created_at: chrono::Utc::now(),
            };
            store.insert_key(&key).await.expect("key");
        }
    }
    let size = wal_size(&dir);
    assert!(size < BOUND, "the WAL grew to {size} bytes after {COMMITS} rounds: checkpoints cannot recycle it");
}
