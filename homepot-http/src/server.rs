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
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::analytics::{AnalyticsConfig, RequestLogger, run_retention};
use crate::api::{
    AnalyticsApi, AppState, ContainersApi, DevicesApi, HealthApi, KeysApi, LiveApi, MetricsApi, MonitoringApi,
    NodeSnapshots, ServiceApi, SimulatorApi, StreamApi,
};
use crate::auth::Authenticator;
use crate::body::{BodyLimit, BodyTimeout};
use crate::device_state::DeviceStates;
use crate::error::catch_all;
use crate::listener::HeadDeadlineAcceptor;
use crate::mqtt::{MqttBridge, MqttConfig, run_bridge};
use crate::pipeline::{Pipeline, WriterHandle};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::restore::{RestoreWindows, restore_views};
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
    /// How long a request body may take to arrive (408 beyond).
    pub body_read_timeout: Duration,
    /// How long a new connection may take to send its first request head (408 and closed
    /// beyond): trickling header bytes does not keep a connection.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (idle keep-alives, stalled
    /// clients).
    pub idle_timeout: Duration,
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
    /// How long a valid key is remembered without asking storage again. Revocations through
    /// the API take effect at once regardless; those made elsewhere (the CLI, another server
    /// on the same database) within this time. Zero asks storage on every request.
    pub key_cache_ttl: Duration,
    /// Serve the metrics endpoints without a key, as the original metrics service did (lab use only).
    pub open_metrics: bool,
    /// The SmartDataFilter; off in the library default (every sample stored).
    pub filter: FilterConfig,
    /// A gateway node that has not reported for this long is stale.
    pub node_stale_after: Duration,
    /// Alert thresholds for the `/ws` node events.
    pub thresholds: Thresholds,
    /// The MQTT bridge for container metrics; `None` runs none.
    pub mqtt: Option<MqttConfig>,
    /// Request logging, the analytics collection endpoints and retention.
    pub analytics: AnalyticsConfig,
    /// How often devices are expected to send a health check.
    pub heartbeat_interval: Duration,
    /// Heartbeats a device may miss before it is marked offline.
    pub missed_heartbeats: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            admin_key: None,
            simulator: false,
            max_body_bytes: 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_queue_capacity: 16_384,
            max_write_batch: 1_000,
            shutdown_timeout: Duration::from_secs(10),
            live: LiveLimits::default(),
            stream_interval: Duration::from_millis(500),
            rate_limit: None,
            key_cache_ttl: Duration::from_secs(1),
            open_metrics: false,
            filter: FilterConfig { enabled: false, ..FilterConfig::default() },
            node_stale_after: Duration::from_secs(60),
            thresholds: Thresholds::default(),
            mqtt: None,
            analytics: AnalyticsConfig::default(),
            heartbeat_interval: Duration::from_secs(60),
            missed_heartbeats: 3,
        }
    }
}

type Apis = (
    ServiceApi,
    DevicesApi,
    KeysApi,
    HealthApi,
    MetricsApi,
    LiveApi,
    StreamApi,
    MonitoringApi,
    ContainersApi,
    AnalyticsApi,
    SimulatorApi,
);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(Apis::default(), "homepot", env!("CARGO_PKG_VERSION"))
        .description("Collects, filters, stores and serves telemetry from fleets of devices.")
}

/// The OpenAPI document of the whole API, as served at `/openapi.json`.
pub fn openapi_json() -> String {
    crate::openapi::narrowed(&api_service().spec())
}

/// `/openapi.json` and the Swagger UI at `/docs`, both showing the narrowed document.
fn documentation(service: &OpenApiService<Apis, ()>) -> (impl Endpoint + use<>, impl Endpoint + use<>) {
    let generated = service.spec();
    let spec = crate::openapi::narrowed(&generated);
    // The page embeds the document as generated; it is swapped for the narrowed one.
    let page = service.swagger_ui_html().replacen(&generated, &spec, 1);
    let spec_endpoint = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json").body(spec.clone())
    });
    let docs_endpoint = poem::endpoint::make_sync(move |_| poem::web::Html(page.clone()));
    (spec_endpoint, docs_endpoint)
}

/// A server accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
    writer: WriterHandle,
    /// Background loops that hold no unwritten data: aborted at shutdown.
    tasks: Vec<JoinHandle<()>>,
    bridge: Option<JoinHandle<()>>,
    logger: Option<(Arc<RequestLogger>, JoinHandle<()>)>,
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
        for task in &self.tasks {
            task.abort();
        }
        // A message the bridge was storing stays unacknowledged: the broker delivers it again.
        if let Some(bridge) = &self.bridge {
            bridge.abort();
        }
        let served = match self.server.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        };
        self.writer.drain().await;
        // The server (and with it every clone of the logger) is gone once it has stopped:
        // dropping the last sender lets the log writer store what is queued, then end.
        if let Some((logger, log_writer)) = self.logger {
            drop(logger);
            let _ = log_writer.await;
        }
        served
    }
}

/// How often to look for silence that lasts `window`: four times per window, so it is
/// noticed within a quarter of it, but no more than every 10 ms and at least every 5 s.
pub(crate) fn sweep_period(window: chrono::TimeDelta) -> Duration {
    (window / 4).to_std().unwrap_or(Duration::from_secs(1)).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// Announces nodes that went silent, a few times per stale interval.
async fn sweep_stale_nodes(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(sweep_period(state.node_stale_after));
    loop {
        ticks.tick().await;
        for event in state.nodes.sweep(crate::api::now() - state.node_stale_after) {
            let _ = state.node_events.send(event);
        }
    }
}

/// Marks silent devices offline, a few times per allowed silence.
async fn sweep_device_states(states: Arc<DeviceStates>) {
    let mut ticks = tokio::time::interval(sweep_period(states.allowed_silence()));
    loop {
        ticks.tick().await;
        states.sweep(crate::api::now()).await;
    }
}

/// Binds `bind` and serves the API on it in the background.
///
/// # Errors
/// When the address cannot be bound, or the device states cannot be read from storage.
pub async fn start(bind: &str, store: Arc<dyn Store>, config: ServerConfig) -> io::Result<RunningServer> {
    let allowed_silence = config.heartbeat_interval.saturating_mul(config.missed_heartbeats.max(1));
    let states = Arc::new(
        DeviceStates::load(Arc::clone(&store), allowed_silence, crate::api::now())
            .await
            .map_err(|e| io::Error::other(format!("reading device states: {e}")))?,
    );
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
    let trust_forwarded = config.rate_limit.is_some_and(|r| r.trust_forwarded_headers);
    let logger = config.analytics.enabled.then(|| {
        let documented: Vec<String> =
            <Apis as OpenApi>::meta().into_iter().flat_map(|api| api.paths).map(|path| path.path).collect();
        RequestLogger::start(
            Arc::clone(&store),
            &config.analytics,
            documented.iter().map(String::as_str),
            trust_forwarded,
            Arc::clone(&stats),
        )
    });
    let mqtt_events = match &config.mqtt {
        Some(mqtt) => Some(MqttBridge::new(mqtt).map_err(|e| io::Error::other(format!("MQTT bridge: {e}")))?),
        None => None,
    };
    let state = Arc::new(AppState {
        mqtt: mqtt_events.as_ref().map(|(handle, _)| Arc::clone(handle)),
        container_reporters: std::sync::Mutex::default(),
        live,
        stats,
        stream_interval: config.stream_interval.max(Duration::from_millis(10)),
        nodes: NodeSnapshots::default(),
        thresholds: config.thresholds,
        node_events: tokio::sync::broadcast::channel(1_024).0,
        node_stale_after: chrono::TimeDelta::from_std(config.node_stale_after).unwrap_or(chrono::TimeDelta::MAX),
        auth: Authenticator::new(
            config.admin_key.as_ref(),
            Arc::clone(&store),
            config.open_metrics,
            config.key_cache_ttl,
        ),
        store,
        pipeline,
        started: Instant::now(),
        simulator: config.simulator,
        analytics_enabled: config.analytics.enabled,
        states: Arc::clone(&states),
    });
    let windows = RestoreWindows {
        node_stale_after: state.node_stale_after,
        live_retention: chrono::TimeDelta::nanoseconds(config.live.retention_ns),
        stored_every: chrono::TimeDelta::nanoseconds(if config.filter.enabled { config.filter.interval_ns } else { 0 }),
    };
    let (nodes, series) = restore_views(state.store.as_ref(), &state.live, &state.nodes, windows, crate::api::now())
        .await
        .map_err(|e| io::Error::other(format!("rebuilding the live views: {e}")))?;
    tracing::info!(nodes, container_series = series, "live views rebuilt from stored history");
    let limiter = config.rate_limit.map(|c| Arc::new(RateLimiter::new(c, state.auth.clone())));
    let mut tasks =
        vec![tokio::spawn(sweep_stale_nodes(Arc::clone(&state))), tokio::spawn(sweep_device_states(states))];
    if let Some(retention) = config.analytics.retention {
        tasks.push(tokio::spawn(run_retention(
            Arc::clone(&state.store),
            retention,
            config.analytics.retention_interval,
        )));
    }
    let request_logger = logger.as_ref().map(|(logger, _)| Arc::clone(logger));
    let bridge = match (config.mqtt.clone(), mqtt_events) {
        (Some(mqtt), Some((handle, events))) => {
            Some(tokio::spawn(run_bridge(mqtt, handle, events, Arc::clone(&state))))
        }
        _ => None,
    };
    let service = api_service();
    let (spec_endpoint, docs_endpoint) = documentation(&service);
    let app = Route::new()
        .at("/openapi.json", spec_endpoint)
        .at("/docs", docs_endpoint)
        .nest("/", service)
        .data(state)
        .data(BodyLimit(config.max_body_bytes))
        .data(BodyTimeout(config.body_read_timeout))
        .with(CatchPanic::new())
        .around(move |endpoint, request| {
            let limiter = limiter.clone();
            async move {
                if let Some(limiter) = &limiter
                    && let Err(refused) = limiter.check(&request).await
                {
                    return Ok(refused.into_response());
                }
                endpoint.call(request).await.map(IntoResponse::into_response)
            }
        })
        .around(|endpoint, request| async move { crate::access_log::log_request(&endpoint, request).await })
        .catch_all_error(catch_all)
        .around(move |endpoint, request| {
            let logger = request_logger.clone();
            async move {
                match logger {
                    Some(logger) => logger.around(&endpoint, request).await,
                    None => endpoint.call(request).await,
                }
            }
        })
        .around(move |endpoint, request| {
            let stats = Arc::clone(&counted);
            async move {
                let response = endpoint.call(request).await?;
                stats.request(response.status().as_u16());
                Ok(response)
            }
        });

    let acceptor = TcpListener::bind(bind.to_owned()).into_acceptor().await?;
    let acceptor = HeadDeadlineAcceptor::new(acceptor, config.header_read_timeout);
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| io::Error::other("listener has no socket address"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let timeout = config.shutdown_timeout;
    let idle_timeout = config.idle_timeout;
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .idle_timeout(idle_timeout)
            .run_with_graceful_shutdown(
                app,
                async move {
                    let _ = stopped.await;
                },
                Some(timeout),
            )
            .await
    });
    Ok(RunningServer { addr, stop, server, writer, tasks, bridge, logger })
}
