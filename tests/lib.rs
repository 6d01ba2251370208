//! Helpers for homepot's end-to-end tests: start the real server on `127.0.0.1:0` over a
//! real backend and talk to it with a real HTTP client.
//!
//! PostgreSQL tests run when `HOMEPOT_TEST_DATABASE_URL` is set and skip with a notice
//! otherwise, so a machine without PostgreSQL still passes.
#![forbid(unsafe_code)]

use std::sync::Arc;

pub mod gated;
pub mod webhook;

use homepot_core::ApiKey;
use homepot_http::{RunningServer, ServerConfig};
use homepot_mqtt::MqttConfig;
use homepot_storage::Store;
use homepot_storage::retention::RetentionPolicy;
use homepot_storage_sea::{SeaOrmStore, StoreOptions};
use rand::Rng;
use serde_json::Value;
use tokio::sync::Mutex;

/// The environment variable naming the PostgreSQL database for tests.
pub const POSTGRES_ENV: &str = "HOMEPOT_TEST_DATABASE_URL";

/// The backends a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a fresh temporary directory.
    Sqlite,
    /// The PostgreSQL database named by [`POSTGRES_ENV`].
    Postgres,
}

/// Installs rustls' provider once (sqlx and reqwest share rustls).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PostgreSQL URL, or `None` after printing why the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: set {POSTGRES_ENV} to run it against PostgreSQL");
            None
        }
    }
}

// Migrations of concurrent tests in one process must not race on PostgreSQL.
static CONNECT: Mutex<()> = Mutex::const_new(());

/// An open store on `backend`, with the directory that holds it (if any); `None` when the
/// backend is not configured.
pub async fn open_store(backend: Backend, test: &str) -> Option<(SeaOrmStore, Option<tempfile::TempDir>)> {
    init();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("homepot.db").display());
            let store = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open SQLite");
            Some((store, Some(dir)))
        }
        Backend::Postgres => {
            let url = postgres_url(test)?;
            let _guard = CONNECT.lock().await;
            let store = SeaOrmStore::connect(&url, &StoreOptions::default()).await.expect("open PostgreSQL");
            Some((store, None))
        }
    }
}

/// Like [`open_store`], but on PostgreSQL a database of its own, created for this call: for
/// tests whose effects reach across the database (retention).
pub async fn open_isolated_store(backend: Backend, test: &str) -> Option<(SeaOrmStore, Option<tempfile::TempDir>)> {
    if backend == Backend::Sqlite {
        return open_store(backend, test).await;
    }
    let isolated = isolated_postgres_url(test).await?;
    let store = SeaOrmStore::connect(&isolated, &StoreOptions::default()).await.expect("open the new database");
    Some((store, None))
}

/// The URL of a new, empty PostgreSQL database for this call (`None`, after a notice, when
/// PostgreSQL is not configured). Databases such tests created more than an hour ago are
/// dropped first.
pub async fn isolated_postgres_url(test: &str) -> Option<String> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    init();
    let url = postgres_url(test)?;
    let admin = Database::connect(&url).await.expect("connect to PostgreSQL");
    let backend_kind = admin.get_database_backend();
    let now = chrono::Utc::now().timestamp();
    let stale = admin
        .query_all(Statement::from_string(
            backend_kind,
            "SELECT datname FROM pg_database WHERE datname LIKE 'homepot_isolated_%'".to_owned(),
        ))
        .await
        .expect("list databases");
    for row in stale {
        let name: String = row.try_get("", "datname").expect("name");
        let created = name.split('_').nth(2).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        if created < now - 3_600 {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = admin.execute(Statement::from_string(backend_kind, drop)).await;
        }
    }
    let name = format!("homepot_isolated_{now}_{}", unique(""));
    admin
        .execute(Statement::from_string(backend_kind, format!("CREATE DATABASE {name}")))
        .await
        .expect("create a database");
    let (base, query) = url.split_once('?').map_or((url.as_str(), ""), |(b, q)| (b, q));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    Some(if query.is_empty() { format!("{prefix}/{name}") } else { format!("{prefix}/{name}?{query}") })
}

/// A running server with an admin key and a client.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A configured admin key.
    pub admin_key: String,
    /// The client.
    pub client: reqwest::Client,
    /// The store behind the server.
    pub store: Arc<dyn Store>,
    server: Option<RunningServer>,
    /// The MQTT adapter and the engine it shares with the server, when one runs.
    bridge: Option<(homepot_mqtt::RunningBridge, homepot_engine::Engine)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on `backend` with `config` (its admin key is replaced by a fresh
    /// one). `None` when the backend is not configured. On the shared PostgreSQL database
    /// retention is off: one test's server must not delete what another test wrote; tests of
    /// retention use [`open_isolated_store`].
    ///
    /// A server that marks devices offline sooner than the default would mark other tests'
    /// devices offline too, when it holds the sweep's lease: on PostgreSQL it gets a database
    /// of its own.
    pub async fn start(backend: Backend, test: &str, mut config: ServerConfig) -> Option<Self> {
        let defaults = ServerConfig::default();
        let window = |c: &ServerConfig| c.heartbeat_interval.saturating_mul(c.missed_heartbeats.max(1));
        let (store, dir) = if window(&config) < window(&defaults) {
            open_isolated_store(backend, test).await?
        } else {
            open_store(backend, test).await?
        };
        if backend == Backend::Postgres {
            config.retention = RetentionPolicy::KEEP_ALL;
            config.analytics.retention = None;
        }
        let store: Arc<dyn Store> = Arc::new(store);
        Some(Self::start_on(store, dir, config).await)
    }

    /// Starts a server over an existing store.
    pub async fn start_on(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>, config: ServerConfig) -> Self {
        Self::start_with(store, dir, config, None).await
    }

    /// Starts a server on `backend` with the MQTT adapter beside it, on one engine.
    pub async fn start_with_mqtt(backend: Backend, test: &str, config: ServerConfig, mqtt: MqttConfig) -> Option<Self> {
        let (store, dir) = open_store(backend, test).await?;
        Some(Self::start_with(Arc::new(store), dir, config, Some(mqtt)).await)
    }

    async fn start_with(
        store: Arc<dyn Store>,
        dir: Option<tempfile::TempDir>,
        mut config: ServerConfig,
        mqtt: Option<MqttConfig>,
    ) -> Self {
        init();
        let admin_key = format!("test-admin-{}", unique(""));
        config.admin_key = Some(ApiKey::from_configured(admin_key.clone()));
        let (server, bridge) = match mqtt {
            None => (homepot_http::start("127.0.0.1:0", Arc::clone(&store), config).await.expect("start server"), None),
            Some(mqtt) => {
                let clock = Arc::new(homepot_engine::SystemClock);
                let (homepot, engine) =
                    homepot_engine::Homepot::start(Arc::clone(&store), config.engine_settings(), clock)
                        .await
                        .expect("start the engine");
                let bridge = homepot_mqtt::spawn(homepot.clone(), mqtt).expect("start the MQTT bridge");
                let server = homepot_http::serve("127.0.0.1:0", homepot, &config).await.expect("start server");
                (server, Some((bridge, engine)))
            }
        };
        Self {
            base: format!("http://{}", server.local_addr()),
            admin_key,
            client: reqwest::Client::new(),
            store,
            server: Some(server),
            bridge,
            _dir: dir,
        }
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        if let Some((bridge, engine)) = self.bridge.take() {
            bridge.stop();
            engine.shutdown().await;
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with an optional key and JSON body; returns status and JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POSTs `text` as `text/plain` (line protocol) with `key` in `X-API-Key`.
    pub async fn post_text(&self, path: &str, key: &str, text: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("X-API-Key", key)
            .header("Content-Type", "text/plain")
            .body(text.to_owned())
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        (status, serde_json::from_str(&response.text().await.expect("body read")).unwrap_or(Value::Null))
    }

    /// Registers a device with the admin key and returns its device key.
    pub async fn register(&self, device_id: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/devices",
                Some(&self.admin_key),
                Some(&serde_json::json!({"device_id": device_id})),
            )
            .await;
        assert_eq!(status, 201, "register {device_id}: {body}");
        body["api_key"].as_str().expect("api_key").to_owned()
    }

    /// Shuts the server down gracefully and starts a new one over the same store with
    /// `config`: a restart, as far as anything stored is concerned.
    pub async fn restart(mut self, config: ServerConfig) -> Self {
        self.stop().await;
        Self::start_on(Arc::clone(&self.store), self._dir.take(), config).await
    }

    /// [`TestServer::restart`] with the MQTT adapter beside the server.
    pub async fn restart_with_mqtt(mut self, config: ServerConfig, mqtt: MqttConfig) -> Self {
        self.stop().await;
        Self::start_with(Arc::clone(&self.store), self._dir.take(), config, Some(mqtt)).await
    }

    /// Graceful shutdown: in-flight requests finish and queued writes are drained.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }
}

/// A container metrics data message for `thing` (`<namespace>:<name>:edge:containers`): `Container:test`
/// with six measurements and `Container:test2` with three, one of them an unknown id.
pub fn container_data_message(thing: &str) -> Value {
    serde_json::json!({
        "topic": homepot_core::container::ditto_topic(thing, "data"),
        "headers": {"content-type": "application/json"},
        "path": "/features/Metrics/outbox/messages/data",
        "value": {"snapshot": [
            {"originator": "Container:test", "measurements": [
                {"id": "memory.total", "value": 10371616768_u64}, {"id": "memory.used", "value": 1396736},
                {"id": "memory.utilization", "value": 0.01346690714903206}, {"id": "net.readBytes", "value": 180},
                {"id": "net.writeBytes", "value": 0}, {"id": "pids", "value": 6}]},
            {"originator": "Container:test2", "measurements": [
                {"id": "cpu.utilization", "value": 8.751566666666667}, {"id": "io.writeBytes", "value": 4096},
                {"id": "gpu.custom", "value": 3}]}
        ], "timestamp": chrono::Utc::now().timestamp_millis()}
    })
}

/// A port on 127.0.0.1 that was free a moment ago, for a real client's or peer's own listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// A child process (Prometheus, vmagent, vmalert...) killed when the test ends, however it ends.
#[derive(Debug)]
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A string unique to this test run, with `prefix` (device ids that never collide, even in
/// a shared PostgreSQL database).
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}{n:016x}")
}

/// Generates one `#[tokio::test]` per backend for each scenario
/// `async fn name(server: &TestServer)` in scope, each on a fresh server with the default
/// configuration, or with `config()` after `config = path;`. PostgreSQL variants skip with a
/// notice when it is not configured.
#[macro_export]
macro_rules! on_every_backend {
    (config = $config:path; $($scenario:ident),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() {
                    let server = $crate::TestServer::start($crate::Backend::Sqlite, stringify!($scenario), $config())
                        .await
                        .expect("SQLite is always available");
                    super::$scenario(&server).await;
                    server.shutdown().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() {
                    let Some(server) = $crate::TestServer::start($crate::Backend::Postgres, stringify!($scenario), $config()).await
                    else { return };
                    super::$scenario(&server).await;
                    server.shutdown().await;
                }
            )*
        }
    };
    ($($scenario:ident),* $(,)?) => {
        $crate::on_every_backend!(config = ::std::default::Default::default; $($scenario),*);
    };
}
