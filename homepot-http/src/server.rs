//! Assembles the API, the pipeline and the framework middleware into a running server.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use homepot_core::ApiKey;
use homepot_core::live::{LiveLimits, LiveStore};
use homepot_storage::Store;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::{CatchPanic, Tracing};
use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{AppState, DevicesApi, HealthApi, LiveApi, MetricsApi, ServiceApi, SimulatorApi};
use crate::auth::Authenticator;
use crate::body::BodyLimit;
use crate::error::catch_all;
use crate::pipeline::{Pipeline, WriterHandle};

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// An operator-configured admin key (`HOMEPOT_ADMIN_KEY`); stored keys work too.
    pub admin_key: Option<ApiKey>,
    /// Serve `POST /api/v1/simulator/device-metrics`.
    pub simulator: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Writes that may wait for storage before ingest answers 503.
    pub write_queue_capacity: usize,
    /// Most writes committed in one transaction.
    pub max_write_batch: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Limits of the live metrics store (retention, most series).
    pub live: LiveLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            admin_key: None,
            simulator: false,
            max_body_bytes: 1024 * 1024,
            write_queue_capacity: 16_384,
            max_write_batch: 1_000,
            shutdown_timeout: Duration::from_secs(10),
            live: LiveLimits::default(),
        }
    }
}

type Apis = (ServiceApi, DevicesApi, HealthApi, MetricsApi, LiveApi, SimulatorApi);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (ServiceApi, DevicesApi, HealthApi, MetricsApi, LiveApi, SimulatorApi),
        "homepot",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Collects, filters, stores and serves telemetry from fleets of devices.")
}

/// The OpenAPI document of the whole API, as served at `/openapi.json`.
pub fn openapi_json() -> String {
    api_service().spec()
}

/// A server accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
    writer: WriterHandle,
}

impl RunningServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), then
    /// drains queued writes to storage.
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(());
        let served = match self.server.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        };
        self.writer.drain().await;
        served
    }
}

/// Binds `bind` and serves the API on it in the background.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(bind: &str, store: Arc<dyn Store>, config: ServerConfig) -> io::Result<RunningServer> {
    let live = Arc::new(RwLock::new(LiveStore::new(config.live)));
    let (pipeline, writer) =
        Pipeline::start(Arc::clone(&store), Arc::clone(&live), config.write_queue_capacity, config.max_write_batch);
    let state = Arc::new(AppState {
        live,
        auth: Authenticator::new(config.admin_key.as_ref(), Arc::clone(&store)),
        store,
        pipeline,
        started: Instant::now(),
        simulator: config.simulator,
    });
    let service = api_service();
    let app = Route::new()
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service)
        .data(state)
        .data(BodyLimit(config.max_body_bytes))
        .with(CatchPanic::new())
        .with(Tracing)
        .catch_all_error(catch_all);

    let acceptor = TcpListener::bind(bind.to_owned()).into_acceptor().await?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| io::Error::other("listener has no socket address"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let timeout = config.shutdown_timeout;
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = stopped.await;
                },
                Some(timeout),
            )
            .await
    });
    Ok(RunningServer { addr, stop, server, writer })
}
