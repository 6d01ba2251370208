//! Assembles the API and the framework middleware into an endpoint ([`routes`]), serves it
//! ([`serve`]), and, for the common case, builds the engine first ([`start`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use homepot_core::ApiKey;
use homepot_core::filter::FilterConfig;
use homepot_core::live::LiveLimits;
use homepot_core::node::Thresholds;
use homepot_engine::{AlertSettings, AnalyticsSettings, Engine, ForwardSettings, Homepot, Settings, SystemClock};
use homepot_storage::Store;
use homepot_storage::retention::RetentionPolicy;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use poem_openapi::{OpenApi, OpenApiService};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::analytics::{AnalyticsConfig, RequestLogger};
use crate::api::{
    AlertsApi, AnalyticsApi, AppState, ContainersApi, DevicesApi, ExportApi, HealthApi, KeysApi, LiveApi, MetricsApi,
    MonitoringApi, PrometheusApi, QueryApi, ServiceApi, SessionApi, SimulatorApi, StreamApi,
};
use crate::body::{BodyLimit, BodyTimeout};
use crate::error::catch_all;
use crate::listener::HeadDeadlineAcceptor;
use crate::rate_limit::{RateLimitConfig, RateLimiter};

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
    /// on the same database) within `key_revision_poll`. Zero asks storage on every request.
    pub key_cache_ttl: Duration,
    /// How often storage is asked whether keys were revoked elsewhere.
    pub key_revision_poll: Duration,
    /// Names this instance among several on one database; shown by `/health`, and holds its
    /// leases on singleton work: unique per instance.
    pub instance_id: String,
    /// How soon another instance takes singleton work over when its holder dies.
    pub lease_ttl: Duration,
    /// Serve the metrics endpoints without a key, as the original metrics service did (lab use only).
    pub open_metrics: bool,
    /// The SmartDataFilter; off in the library default (every sample stored).
    pub filter: FilterConfig,
    /// A gateway node that has not reported for this long is stale.
    pub node_stale_after: Duration,
    /// Alert thresholds for the `/ws` node events.
    pub thresholds: Thresholds,
    /// Request logging, the analytics collection endpoints and retention.
    pub analytics: AnalyticsConfig,
    /// How often devices are expected to send a health check.
    pub heartbeat_interval: Duration,
    /// Heartbeats a device may miss before it is marked offline.
    pub missed_heartbeats: u32,
    /// How long raw health checks and points, and each rollup tier, are kept.
    pub retention: RetentionPolicy,
    /// How often rollups gathered in memory are merged into storage.
    pub rollup_flush_interval: Duration,
    /// Alert rules from a file, evaluation interval and notification delivery.
    pub alerting: AlertSettings,
    /// Remote write forwarding of every accepted sample; off without targets.
    pub forward: ForwardSettings,
    /// How long an ingest request's `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// Origins whose pages may call the API with credentials (CORS); none by default.
    pub cors_origins: Vec<String>,
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
            key_cache_ttl: homepot_engine::DEFAULT_KEY_CACHE_TTL,
            key_revision_poll: Duration::from_secs(1),
            instance_id: Settings::default().instance_id,
            lease_ttl: Duration::from_secs(15),
            open_metrics: false,
            filter: FilterConfig { enabled: false, ..FilterConfig::default() },
            node_stale_after: Duration::from_secs(60),
            thresholds: Thresholds::default(),
            analytics: AnalyticsConfig::default(),
            heartbeat_interval: Duration::from_secs(60),
            missed_heartbeats: 3,
            retention: RetentionPolicy::default(),
            rollup_flush_interval: Duration::from_secs(10),
            alerting: AlertSettings::default(),
            forward: ForwardSettings::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
            session_ttl: Duration::from_secs(12 * 3600),
            cors_origins: Vec::new(),
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
    // The read side; nested because tuples implement `Default` up to twelve.
    (QueryApi, PrometheusApi, ExportApi, AlertsApi, SessionApi),
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

impl ServerConfig {
    /// The engine's part of these settings.
    pub fn engine_settings(&self) -> Settings {
        Settings {
            instance_id: self.instance_id.clone(),
            lease_ttl: self.lease_ttl,
            admin_key: self.admin_key.clone(),
            write_queue_capacity: self.write_queue_capacity,
            max_write_batch: self.max_write_batch,
            live: self.live,
            key_cache_ttl: self.key_cache_ttl,
            key_revision_poll: self.key_revision_poll,
            filter: self.filter,
            node_stale_after: self.node_stale_after,
            thresholds: self.thresholds,
            analytics: AnalyticsSettings {
                enabled: self.analytics.enabled,
                queue_capacity: self.analytics.queue_capacity,
                max_batch: self.analytics.max_batch,
                retention: self.analytics.retention,
                retention_interval: self.analytics.retention_interval,
            },
            heartbeat_interval: self.heartbeat_interval,
            missed_heartbeats: self.missed_heartbeats,
            retention: self.retention,
            rollup_flush_interval: self.rollup_flush_interval,
            alerting: self.alerting.clone(),
            forward: self.forward.clone(),
            idempotency_window: self.idempotency_window,
        }
    }
}

/// A server accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<io::Result<()>>,
    homepot: Homepot,
    /// The engine [`start`] built, drained at shutdown; `None` when the caller owns it.
    engine: Option<Engine>,
}

impl RunningServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine it serves.
    pub fn homepot(&self) -> &Homepot {
        &self.homepot
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), then,
    /// when the server built its engine, commits every queued write.
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(());
        let served = match self.server.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(join)),
        };
        if let Some(engine) = self.engine {
            engine.shutdown().await;
        }
        served
    }
}

/// Builds the engine over `store` with the system clock, then serves it on `bind` in the
/// background. Shutting the server down also shuts the engine down.
///
/// # Errors
/// When storage cannot be read or the address cannot be bound.
pub async fn start(bind: &str, store: Arc<dyn Store>, config: ServerConfig) -> io::Result<RunningServer> {
    let (homepot, engine) = Homepot::start(store, config.engine_settings(), Arc::new(SystemClock))
        .await
        .map_err(|e| io::Error::other(format!("starting the engine: {e}")))?;
    let mut server = serve(bind, homepot, &config).await?;
    server.engine = Some(engine);
    Ok(server)
}

/// The whole HTTP API over `homepot` as one endpoint, with its middleware (panics caught,
/// rate limits, the access log, error shapes, the request log, counters): to serve, or to
/// nest in another poem application.
pub fn routes(homepot: &Homepot, config: &ServerConfig) -> impl Endpoint + use<> {
    let trust_forwarded = config.rate_limit.is_some_and(|r| r.trust_forwarded_headers);
    let request_logger = config.analytics.enabled.then(|| {
        let documented: Vec<String> =
            <Apis as OpenApi>::meta().into_iter().flat_map(|api| api.paths).map(|path| path.path).collect();
        Arc::new(RequestLogger::new(
            homepot.clone(),
            &config.analytics.skip,
            documented.iter().map(String::as_str),
            trust_forwarded,
        ))
    });
    let limiter = config.rate_limit.map(|c| Arc::new(RateLimiter::new(c, homepot.clone())));
    let sessions = Arc::new(crate::session::Sessions::new(config.session_ttl));
    let cors = (!config.cors_origins.is_empty()).then(|| {
        poem::middleware::Cors::new()
            .allow_origins(config.cors_origins.iter().map(String::as_str))
            .allow_credentials(true)
            .allow_methods([poem::http::Method::GET, poem::http::Method::POST, poem::http::Method::OPTIONS])
            .allow_headers(["content-type", "x-api-key", "authorization", crate::session::CSRF_HEADER])
            .max_age(600)
    });
    let state = Arc::new(AppState {
        homepot: homepot.clone(),
        simulator: config.simulator,
        open_metrics: config.open_metrics,
        stream_interval: config.stream_interval.max(Duration::from_millis(10)),
        sessions: Arc::clone(&sessions),
    });
    let counted = Arc::clone(homepot.stats());
    let service = api_service();
    let (spec_endpoint, docs_endpoint) = documentation(&service);
    let app = Route::new()
        .at("/openapi.json", spec_endpoint)
        .at("/docs", docs_endpoint)
        .at("/ui/app.js", poem::get(crate::dashboard::script))
        .at("/ui/app.css", poem::get(crate::dashboard::style))
        .nest("/", service)
        // The API is nested at the root, so its router would answer `/` itself (404).
        .around(|endpoint, request| async move {
            if request.uri().path() == "/" && request.method() == poem::http::Method::GET {
                let mut page = crate::dashboard::page();
                // Named like any routed page, so the request log groups it.
                page.set_data(poem::PathPattern(Arc::from("/")));
                return Ok(page);
            }
            endpoint.call(request).await.map(IntoResponse::into_response)
        })
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
        })
        // Outermost: everything inside sees a session as the key it was opened with.
        .around(move |endpoint, request| {
            let sessions = Arc::clone(&sessions);
            async move { crate::session::around(&sessions, &endpoint, request).await }
        })
        // Boxed: the middleware stack's type is too deep for an application that nests it.
        .boxed();
    match cors {
        Some(cors) => app.with(cors).map_to_response().boxed(),
        None => app,
    }
}

/// Serves the API over `homepot` on `bind` in the background. The caller keeps the engine
/// and shuts it down after the server.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(bind: &str, homepot: Homepot, config: &ServerConfig) -> io::Result<RunningServer> {
    let app = routes(&homepot, config);
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
    Ok(RunningServer { addr, stop, server, homepot, engine: None })
}
