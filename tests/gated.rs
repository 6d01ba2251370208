//! [`GatedStore`]: a real store whose request-log writes wait at a gate the test opens, to
//! show that a stalled analytics store never holds up requests.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homepot_core::analytics::{
    EndpointLatency, ErrorLog, ErrorTrend, JobOutcome, JobStatusCount, RequestLog, StateChange, UserActivity,
};
use homepot_core::{Device, DeviceId, KeyHash, NewDevice, Point, Role};
use homepot_storage::{
    AnalyticsStore, DeviceStore, HealthCheckId, HealthStore, KeyId, KeyInfo, KeyStore, MetricStore, NewHealthCheck,
    NewKey, RecordId, StorageError, Store, StoredHealthCheck, StoredKey,
};
use tokio::sync::Semaphore;

/// Delegates everything to `inner`; `insert_request_logs` first waits for a permit.
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn Store>,
    gate: Arc<Semaphore>,
}

impl GatedStore {
    /// A closed gate in front of `inner`'s request-log writes.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, gate: Arc::new(Semaphore::new(0)) }
    }

    /// Lets every waiting and future request-log write through.
    pub fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl DeviceStore for GatedStore {
    async fn register_device(&self, d: &NewDevice, k: &KeyHash, now: DateTime<Utc>) -> Result<Device, StorageError> {
        self.inner.register_device(d, k, now).await
    }
    async fn device(&self, id: &DeviceId) -> Result<Option<Device>, StorageError> {
        self.inner.device(id).await
    }
    async fn devices(&self) -> Result<Vec<Device>, StorageError> {
        self.inner.devices().await
    }
    async fn remove_device(&self, id: &DeviceId) -> Result<(), StorageError> {
        self.inner.remove_device(id).await
    }
    async fn mark_container_reporter(&self, id: &DeviceId, at: DateTime<Utc>) -> Result<(), StorageError> {
        self.inner.mark_container_reporter(id, at).await
    }
    async fn container_reporters(&self) -> Result<Vec<DeviceId>, StorageError> {
        self.inner.container_reporters().await
    }
}

#[async_trait]
impl KeyStore for GatedStore {
    async fn insert_key(&self, key: &NewKey) -> Result<KeyId, StorageError> {
        self.inner.insert_key(key).await
    }
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<StoredKey>, StorageError> {
        self.inner.key_by_hash(hash).await
    }
    async fn has_key_with_role(&self, role: Role) -> Result<bool, StorageError> {
        self.inner.has_key_with_role(role).await
    }
    async fn keys(&self, device: Option<&DeviceId>) -> Result<Vec<KeyInfo>, StorageError> {
        self.inner.keys(device).await
    }
    async fn revoke_key(&self, id: KeyId, device: Option<&DeviceId>, now: DateTime<Utc>) -> Result<(), StorageError> {
        self.inner.revoke_key(id, device, now).await
    }
}

#[async_trait]
impl HealthStore for GatedStore {
    async fn insert_health(&self, batch: &[NewHealthCheck]) -> Result<Vec<HealthCheckId>, StorageError> {
        self.inner.insert_health(batch).await
    }
    async fn health_since(
        &self,
        device: &DeviceId,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredHealthCheck>, StorageError> {
        self.inner.health_since(device, since, limit).await
    }
    async fn latest_health(&self, device: &DeviceId) -> Result<Option<StoredHealthCheck>, StorageError> {
        self.inner.latest_health(device).await
    }
}

#[async_trait]
impl MetricStore for GatedStore {
    async fn insert_points(&self, batch: &[Point]) -> Result<(), StorageError> {
        self.inner.insert_points(batch).await
    }
    async fn points_since(
        &self,
        name: &str,
        since_ns: i64,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Point>, StorageError> {
        self.inner.points_since(name, since_ns, tags, limit).await
    }
    async fn latest_points(&self, names: &[&str], since_ns: i64) -> Result<Vec<Point>, StorageError> {
        self.inner.latest_points(names, since_ns).await
    }
}

#[async_trait]
impl AnalyticsStore for GatedStore {
    async fn insert_request_logs(&self, batch: &[RequestLog]) -> Result<(), StorageError> {
        let permit = self.gate.acquire().await.map_err(StorageError::backend)?;
        permit.forget();
        self.inner.insert_request_logs(batch).await
    }
    async fn insert_state_change(&self, change: &StateChange) -> Result<RecordId, StorageError> {
        self.inner.insert_state_change(change).await
    }
    async fn insert_job_outcome(&self, outcome: &JobOutcome) -> Result<RecordId, StorageError> {
        self.inner.insert_job_outcome(outcome).await
    }
    async fn insert_error_log(&self, error: &ErrorLog) -> Result<RecordId, StorageError> {
        self.inner.insert_error_log(error).await
    }
    async fn insert_user_activity(&self, activity: &UserActivity) -> Result<RecordId, StorageError> {
        self.inner.insert_user_activity(activity).await
    }
    async fn request_latencies(
        &self,
        since: DateTime<Utc>,
        endpoint: Option<&str>,
    ) -> Result<Vec<EndpointLatency>, StorageError> {
        self.inner.request_latencies(since, endpoint).await
    }
    async fn job_status_counts(
        &self,
        since: DateTime<Utc>,
        job_type: Option<&str>,
    ) -> Result<Vec<JobStatusCount>, StorageError> {
        self.inner.job_status_counts(since, job_type).await
    }
    async fn error_trends(
        &self,
        since: DateTime<Utc>,
        category: Option<&str>,
    ) -> Result<Vec<ErrorTrend>, StorageError> {
        self.inner.error_trends(since, category).await
    }
    async fn state_history(
        &self,
        device_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StateChange>, StorageError> {
        self.inner.state_history(device_id, since, limit).await
    }
    async fn latest_states(&self) -> Result<Vec<StateChange>, StorageError> {
        self.inner.latest_states().await
    }
    async fn purge_analytics(&self, before: DateTime<Utc>, max_rows: u64) -> Result<u64, StorageError> {
        self.inner.purge_analytics(before, max_rows).await
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
}
