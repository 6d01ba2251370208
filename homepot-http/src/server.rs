//! Assembles the API, the pipeline and the framework middleware into a running server.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use homepot_core::ApiKey;
use homepot_core::filter::FilterConfig;
use homepot_core::live::{LiveLimits, LiveStore};
use homepot_core::node::Thresholds;
use homepot_storage::Store;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::{CatchPanic, Tracing};
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::OpenApiService;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{
    AppState, ContainersApi, DevicesApi, HealthApi, LiveApi, MetricsApi, MonitoringApi, NodeSnapshots, ServiceApi,
    SimulatorApi, StreamApi,
};
use crate::auth::Authenticator;
use crate::body::BodyLimit;
use crate::error::catch_all;
use crate::mqtt::{MqttConfig, run_bridge};
use crate::pipeline::{Pipeline, WriterHandle};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::stats::Stats;

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
    /// How often `/metrics/stream` sends an event (`PROMETHEUS_POLLER_INTERVAL_MS`).
    pub stream_interval: Duration,
    /// Per-client rate limiting; `None` turns it off (the library default: embedders decide).
    pub rate_limit: Option<RateLimitConfig>,
    /// Serve the metrics endpoints without a key, as the seed's service did (lab use only).
    pub open_metrics: bool,
    /// The SmartDataFilter; off in the library default (every sample stored).
    pub filter: FilterConfig,
    /// A gateway node that has not reported for this long is stale.
    pub node_stale_after: Duration,
    /// Alert thresholds for the `/ws` node events.
    pub thresholds: Thresholds,
    /// The MQTT bridge for container metrics; `None` runs none.
    pub mqtt: Option<MqttConfig>,
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
            stream_interval: Duration::from_millis(500),
            rate_limit: None,
            open_metrics: false,
            filter: FilterConfig { enabled: false, ..FilterConfig::default() },
            node_stale_after: Duration::from_secs(60),
            thresholds: Thresholds::default(),
            mqtt: None,
        }
    }
}

type Apis =
    (ServiceApi, DevicesApi, HealthApi, MetricsApi, LiveApi, StreamApi, MonitoringApi, ContainersApi, SimulatorApi);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (ServiceApi, DevicesApi, HealthApi, MetricsApi, LiveApi, StreamApi, MonitoringApi, ContainersApi, SimulatorApi),
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
    sweeper: JoinHandle<()>,
    bridge: Option<JoinHandle<()>>,
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
        self.sweeper.abort();
        // A message the bridge was storing stays unacknowledged: the broker delivers it again.
        if let Some(bridge) = &self.bridge {
            bridge.abort();
        }
        let served = match self.server.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        };
        self.writer.drain().await;
        served
    }
}

/// Announces nodes that went silent, a few times per stale interval.
async fn sweep_stale_nodes(state: Arc<AppState>) {
    let period = (state.node_stale_after / 4)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        for event in state.nodes.sweep(crate::api::now() - state.node_stale_after) {
            let _ = state.node_events.send(event);
        }
    }
}

/// Binds `bind` and serves the API on it in the background.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(bind: &str, store: Arc<dyn Store>, config: ServerConfig) -> io::Result<RunningServer> {
    let live = Arc::new(RwLock::new(LiveStore::new(config.live)));
    let stats = Arc::new(Stats::default());
    let (pipeline, writer) = Pipeline::start(
        Arc::clone(&store),
        Arc::clone(&live),
        Arc::clone(&stats),
        config.filter,
        config.write_queue_capacity,
        config.max_write_batch,
    );
    let counted = Arc::clone(&stats);
    let limiter = config.rate_limit.map(|c| Arc::new(RateLimiter::new(c)));
    let state = Arc::new(AppState {
        live,
        stats,
        stream_interval: config.stream_interval.max(Duration::from_millis(10)),
        nodes: NodeSnapshots::default(),
        thresholds: config.thresholds,
        node_events: tokio::sync::broadcast::channel(1_024).0,
        node_stale_after: chrono::TimeDelta::from_std(config.node_stale_after).unwrap_or(chrono::TimeDelta::MAX),
        auth: Authenticator::new(config.admin_key.as_ref(), Arc::clone(&store), config.open_metrics),
        store,
        pipeline,
        started: Instant::now(),
        simulator: config.simulator,
    });
    let sweeper = tokio::spawn(sweep_stale_nodes(Arc::clone(&state)));
    let bridge = config.mqtt.clone().map(|mqtt| tokio::spawn(run_bridge(mqtt, Arc::clone(&state))));
    let service = api_service();
    let app = Route::new()
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service)
        .data(state)
        .data(BodyLimit(config.max_body_bytes))
        .with(CatchPanic::new())
        .around(move |endpoint, request| {
            let limiter = limiter.clone();
            async move {
                if let Some(limiter) = &limiter
                    && let Err(refused) = limiter.check(&request)
                {
                    return Ok(refused.into_response());
                }
                endpoint.call(request).await.map(IntoResponse::into_response)
            }
        })
        .with(Tracing)
        .catch_all_error(catch_all)
        .around(move |endpoint, request| {
            let stats = Arc::clone(&counted);
            async move {
                let response = endpoint.call(request).await?;
                stats.request(response.status().as_u16());
                Ok(response)
            }
        });

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
    Ok(RunningServer { addr, stop, server, writer, sweeper, bridge })
}
