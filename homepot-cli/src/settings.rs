//! Settings from flags and environment variables. Secrets never appear in `Debug`.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, ValueEnum};
use homepot_core::ApiKey;
use homepot_core::container::MetricsFilter;
use homepot_core::filter::FilterConfig;
use homepot_core::ingest::container_json::parse_frequency;
use homepot_core::live::LiveLimits;
use homepot_core::node::Thresholds;
use homepot_engine::{AlertSettings, DeliveryPolicy, ForwardAuth, ForwardSettings, ForwardTarget};
use homepot_http::{AnalyticsConfig, DEFAULT_SKIP, RateLimitConfig, ServerConfig};
use homepot_mqtt::{MqttConfig, MqttTls};
use homepot_storage::retention::RetentionPolicy;
use homepot_storage_sea::{SqliteSync, StoreOptions};

/// Where data lives.
#[derive(Clone, Args)]
pub(crate) struct DatabaseArgs {
    /// Database URL: `sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "HOMEPOT_DATABASE_URL", default_value = "sqlite://homepot.db")]
    pub(crate) database_url: String,
    /// SQLite durability: `full` syncs every commit (survives power loss), `normal` only
    /// survives a crash of homepot itself.
    #[arg(long, env = "HOMEPOT_SQLITE_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub(crate) sqlite_sync: SyncMode,
    /// Most database connections.
    #[arg(long, env = "HOMEPOT_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub(crate) max_connections: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SyncMode {
    Full,
    Normal,
}

impl DatabaseArgs {
    pub(crate) fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.max_connections,
            sqlite_sync: match self.sqlite_sync {
                SyncMode::Full => SqliteSync::Full,
                SyncMode::Normal => SqliteSync::Normal,
            },
            ..StoreOptions::default()
        }
    }

    /// The URL without its password, for messages.
    pub(crate) fn redacted_url(&self) -> String {
        redact_password(&self.database_url)
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &self.redacted_url())
            .field("sqlite_sync", &self.sqlite_sync)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// How the MQTT bridge and `homepot containers request` reach a broker that wants
/// credentials or TLS.
#[derive(Clone, Args)]
pub(crate) struct MqttAuthArgs {
    /// User name for the broker (or in the URL: `mqtts://user:password@host`).
    #[arg(long = "mqtt-username", env = "HOMEPOT_MQTT_USERNAME")]
    pub(crate) username: Option<String>,
    /// Password for the broker.
    #[arg(long = "mqtt-password", env = "HOMEPOT_MQTT_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// PEM file of the CA that signed the broker's certificate, instead of the system's
    /// roots (implies TLS).
    #[arg(long = "mqtt-ca-file", env = "HOMEPOT_MQTT_CA_FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for MqttAuthArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttAuthArgs")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl MqttAuthArgs {
    /// The broker settings for `url` with these credentials and CA.
    ///
    /// # Errors
    /// When the URL is malformed.
    pub(crate) fn config(&self, url: &str) -> anyhow::Result<MqttConfig> {
        let mut config = MqttConfig::from_url(url).map_err(anyhow::Error::msg)?;
        if let Some(username) = &self.username {
            config.username = Some(username.clone());
        }
        if let Some(password) = &self.password {
            config.password = Some(password.clone());
        }
        if let Some(ca_file) = &self.ca_file {
            config.tls = Some(MqttTls::CaFile(ca_file.clone()));
        }
        Ok(config)
    }
}

/// How long raw rows and rollups are kept; shared by `serve` and `retention run`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RetentionArgs {
    /// Days raw health checks and metric points are kept (rollups keep their history); 0 keeps them forever.
    #[arg(long, env = "HOMEPOT_RAW_RETENTION_DAYS", default_value_t = 30)]
    pub(crate) raw_retention_days: u32,
    /// Days 1-minute rollups are kept; 0 keeps them forever.
    #[arg(long, env = "HOMEPOT_ROLLUP_1M_RETENTION_DAYS", default_value_t = 90)]
    pub(crate) rollup_1m_retention_days: u32,
    /// Days 1-hour rollups are kept; 0 keeps them forever.
    #[arg(long, env = "HOMEPOT_ROLLUP_1H_RETENTION_DAYS", default_value_t = 730)]
    pub(crate) rollup_1h_retention_days: u32,
    /// Days 1-day rollups are kept; 0 (the default) keeps them forever.
    #[arg(long, env = "HOMEPOT_ROLLUP_1D_RETENTION_DAYS", default_value_t = 0)]
    pub(crate) rollup_1d_retention_days: u32,
}

impl RetentionArgs {
    /// The policy these flags describe.
    ///
    /// # Errors
    /// When a coarser level would be kept for less time than a finer one.
    pub(crate) fn policy(&self) -> anyhow::Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            raw: retention(self.raw_retention_days),
            minute: retention(self.rollup_1m_retention_days),
            hour: retention(self.rollup_1h_retention_days),
            day: retention(self.rollup_1d_retention_days),
        };
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

/// `homepot serve`.
#[derive(Clone, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, env = "HOMEPOT_BIND", default_value = "127.0.0.1:8000")]
    pub(crate) bind: String,
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    /// Admin API key. Without one, the first start generates a key and prints it once.
    #[arg(long, env = "HOMEPOT_ADMIN_KEY", hide_env_values = true)]
    pub(crate) admin_key: Option<String>,
    /// Enable `POST /api/v1/simulator/device-metrics` (development only).
    #[arg(long, env = "HOMEPOT_SIMULATOR", default_value_t = false)]
    pub(crate) simulator: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "HOMEPOT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Seconds a request body may take to arrive (408 beyond).
    #[arg(long, env = "HOMEPOT_BODY_READ_TIMEOUT_SECONDS", default_value_t = 30)]
    pub(crate) body_read_timeout_seconds: u64,
    /// Seconds a new connection may take to send its first request head (408 beyond).
    #[arg(long, env = "HOMEPOT_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 30)]
    pub(crate) header_read_timeout_seconds: u64,
    /// Milliseconds a valid API key is remembered without a storage read. Revocations through
    /// the API apply at once; those made elsewhere (the CLI, another instance) within
    /// `--key-revision-poll-ms`. 0 reads storage on every request.
    #[arg(long, env = "HOMEPOT_KEY_CACHE_MS", default_value_t = 600_000)]
    pub(crate) key_cache_ms: u64,
    /// Milliseconds between reads of storage's key revision, which every revocation and device
    /// removal grows: how soon one made by another process ends this server's remembered keys.
    #[arg(long, env = "HOMEPOT_KEY_REVISION_POLL_MS", default_value_t = 1_000)]
    pub(crate) key_revision_poll_ms: u64,
    /// Names this instance among several on one database, in `/health` and the start-up log;
    /// the host name and process id by default.
    #[arg(long, env = "HOMEPOT_INSTANCE_ID")]
    pub(crate) instance_id: Option<String>,
    /// Seconds without traffic after which a connection is closed.
    #[arg(long, env = "HOMEPOT_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub(crate) idle_timeout_seconds: u64,
    /// Seconds shutdown waits for in-flight requests.
    #[arg(long, env = "HOMEPOT_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub(crate) shutdown_timeout_seconds: u64,
    /// Seconds a live metric series stays visible without updates (history is kept).
    #[arg(long, env = "HOMEPOT_METRICS_RETENTION_SECONDS", default_value_t = 300)]
    pub(crate) metrics_retention_seconds: u32,
    /// Most live metric series; points of new series beyond it are kept in history only.
    #[arg(long, env = "HOMEPOT_METRICS_MAX_SERIES", default_value_t = 100_000)]
    pub(crate) metrics_max_series: usize,
    /// Most live metric series one API key may create; a batch that would exceed it gets 422.
    #[arg(long, env = "HOMEPOT_METRICS_MAX_SERIES_PER_KEY", default_value_t = 25_000)]
    pub(crate) metrics_max_series_per_key: usize,
    /// Milliseconds between two events of `/metrics/stream`.
    #[arg(long, env = "PROMETHEUS_POLLER_INTERVAL_MS", default_value_t = 500)]
    pub(crate) stream_interval_ms: u64,
    /// Sustained requests per minute per device or read key, and per client address for
    /// requests without a valid key; 0 turns rate limiting off.
    #[arg(long, env = "RATE_LIMIT_REQUESTS_PER_MINUTE", default_value_t = 1000)]
    pub(crate) rate_limit_requests_per_minute: u32,
    /// Requests a key or client may make at once before the per-minute rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 100)]
    pub(crate) rate_limit_burst: u32,
    /// Sustained requests per minute per device key (default: RATE_LIMIT_REQUESTS_PER_MINUTE).
    #[arg(long, env = "RATE_LIMIT_DEVICE_REQUESTS_PER_MINUTE")]
    pub(crate) rate_limit_device_requests_per_minute: Option<NonZeroU32>,
    /// Sustained requests per minute per read key (default: RATE_LIMIT_REQUESTS_PER_MINUTE).
    #[arg(long, env = "RATE_LIMIT_READ_REQUESTS_PER_MINUTE")]
    pub(crate) rate_limit_read_requests_per_minute: Option<NonZeroU32>,
    /// Sustained requests per minute per admin key (default: unlimited).
    #[arg(long, env = "RATE_LIMIT_ADMIN_REQUESTS_PER_MINUTE")]
    pub(crate) rate_limit_admin_requests_per_minute: Option<NonZeroU32>,
    /// Identify clients by `X-Forwarded-For` (only behind a proxy that sets it).
    #[arg(long, env = "TRUST_FORWARDED_HEADERS", default_value_t = false)]
    pub(crate) trust_forwarded_headers: bool,
    /// Serve the metrics endpoints without an API key, as the original metrics service did.
    /// For lab use only.
    #[arg(long, env = "HOMEPOT_OPEN_METRICS", default_value_t = false)]
    pub(crate) open_metrics: bool,
    /// Store only samples that are new: first contact, a heartbeat per interval, or a
    /// significant change (`false` stores every sample).
    #[arg(long, env = "SMART_FILTER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) smart_filter_enabled: bool,
    /// Seconds between heartbeat snapshots of an unchanged series.
    #[arg(long, env = "SMART_FILTER_INTERVAL_SECONDS", default_value_t = 300)]
    pub(crate) smart_filter_interval_seconds: u32,
    /// Relative change, in percent, that makes a sample significant.
    #[arg(long, env = "SMART_FILTER_THRESHOLD_PERCENT", default_value_t = 5.0)]
    pub(crate) smart_filter_threshold_percent: f64,
    /// Seconds without a report after which a gateway node is stale.
    #[arg(long, env = "HOMEPOT_NODE_STALE_SECONDS", default_value_t = 60)]
    pub(crate) node_stale_seconds: u64,
    /// Alert rules loaded (and stored, replacing rules of the same id) at start: a YAML, TOML
    /// or JSON file with a `rules` list.
    #[arg(long, env = "HOMEPOT_ALERT_RULES")]
    pub(crate) alert_rules: Option<std::path::PathBuf>,
    /// Seconds between evaluations of every alert rule.
    #[arg(long, env = "HOMEPOT_ALERT_EVALUATION_SECONDS", default_value_t = 10.0)]
    pub(crate) alert_evaluation_seconds: f64,
    /// Hours a dashboard session lasts.
    #[arg(long, env = "HOMEPOT_SESSION_HOURS", default_value_t = 12)]
    pub(crate) session_hours: u64,
    /// Origins (`https://app.example.com`) whose pages may call the API with credentials,
    /// comma-separated; none by default.
    #[arg(long = "cors-origin", env = "HOMEPOT_CORS_ORIGINS", value_delimiter = ',')]
    pub(crate) cors_origins: Vec<String>,
    /// This server's address as people reach it, for links in notifications.
    #[arg(long, env = "HOMEPOT_EXTERNAL_URL")]
    pub(crate) external_url: Option<String>,
    /// Node CPU use above this raises a `/ws` threshold event and fires the `node-cpu-high` rule.
    #[arg(long, env = "HOMEPOT_ALERT_CPU_PERCENT", default_value_t = 80.0)]
    pub(crate) alert_cpu_percent: f64,
    /// Node memory use above this raises a `/ws` threshold event and fires `node-memory-high`.
    #[arg(long, env = "HOMEPOT_ALERT_MEMORY_PERCENT", default_value_t = 90.0)]
    pub(crate) alert_memory_percent: f64,
    /// Node flash use above this raises a `/ws` threshold event and fires `node-flash-high`.
    #[arg(long, env = "HOMEPOT_ALERT_FLASH_PERCENT", default_value_t = 95.0)]
    pub(crate) alert_flash_percent: f64,
    /// Node Wi-Fi signal quality below this raises a `/ws` threshold event and fires
    /// `node-signal-low`.
    #[arg(long, env = "HOMEPOT_ALERT_SIGNAL_QUALITY_PERCENT", default_value_t = 30.0)]
    pub(crate) alert_signal_quality_percent: f64,
    /// Run the container metrics MQTT bridge against this broker: `mqtt://host[:port]`, or
    /// `mqtts://host[:port]` for TLS (port 8883 by default).
    #[arg(long, env = "HOMEPOT_MQTT_URL", hide_env_values = true)]
    pub(crate) mqtt_url: Option<String>,
    #[command(flatten)]
    pub(crate) mqtt_auth: MqttAuthArgs,
    /// Also ask every registered device that has sent container data for metrics, whenever
    /// the bridge (re)connects.
    #[arg(long, env = "HOMEPOT_MQTT_REQUEST_ALL", default_value_t = false)]
    pub(crate) mqtt_request_all: bool,
    /// Seconds `POST /api/v1/containers/requests` waits for a device's answer (504 beyond).
    #[arg(long, env = "HOMEPOT_MQTT_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub(crate) mqtt_request_timeout_seconds: u64,
    /// MQTT client id; keep it stable so the broker keeps the session across restarts.
    #[arg(long, env = "HOMEPOT_MQTT_CLIENT_ID", default_value = "homepot")]
    pub(crate) mqtt_client_id: String,
    /// Things (`<deviceId>:edge:containers`) asked for metrics when the bridge connects.
    #[arg(long = "mqtt-thing", env = "HOMEPOT_MQTT_THINGS", value_delimiter = ',')]
    pub(crate) mqtt_things: Vec<String>,
    /// Requested reporting interval: seconds or 2s, 500ms, 1m (0s stops reporting).
    #[arg(long, env = "HOMEPOT_MQTT_FREQUENCY", default_value = "2s")]
    pub(crate) mqtt_frequency: String,
    /// Requested measurement ids or `prefix*` patterns; repeat for more (none: all).
    #[arg(long = "mqtt-id", env = "HOMEPOT_MQTT_IDS", value_delimiter = ',')]
    pub(crate) mqtt_ids: Vec<String>,
    /// Requested originator (empty: all).
    #[arg(long, env = "HOMEPOT_MQTT_ORIGINATOR", default_value = "")]
    pub(crate) mqtt_originator: String,
    /// Log API requests and accept the analytics collection endpoints.
    #[arg(long, env = "ANALYTICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) analytics_enabled: bool,
    /// Days analytics records are kept; 0 keeps them forever.
    #[arg(long, env = "ANALYTICS_RETENTION_DAYS", default_value_t = 90)]
    pub(crate) analytics_retention_days: u32,
    /// Routes the request log skips, as `/path/{param}` or `METHOD /path/{param}`,
    /// comma-separated; `none` logs every route. Default: liveness, scrapes, the stream and
    /// the ingest routes.
    #[arg(long = "analytics-skip", env = "HOMEPOT_ANALYTICS_SKIP", value_delimiter = ',')]
    pub(crate) analytics_skip: Vec<String>,
    #[command(flatten)]
    pub(crate) log: LogArgs,
    /// Seconds between the health checks devices are expected to send.
    #[arg(long, env = "HOMEPOT_HEARTBEAT_INTERVAL_SECONDS", default_value_t = 60)]
    pub(crate) heartbeat_interval_seconds: u64,
    /// Heartbeats a device may miss before it is marked offline.
    #[arg(long, env = "HOMEPOT_MISSED_HEARTBEATS", default_value_t = 3)]
    pub(crate) missed_heartbeats: u32,
    #[command(flatten)]
    pub(crate) retention: RetentionArgs,
    /// Seconds between merges of the rollups gathered in memory into storage.
    #[arg(long, env = "HOMEPOT_ROLLUP_FLUSH_SECONDS", default_value_t = 10)]
    pub(crate) rollup_flush_seconds: u64,
    /// Forward every accepted sample by Prometheus remote write to this URL
    /// (`http://vm:8428/api/v1/write`); repeat (or comma-separate) for several. Basic auth
    /// goes in the URL (`https://user:password@host/...`).
    #[arg(long = "remote-write-url", env = "HOMEPOT_REMOTE_WRITE_URLS", value_delimiter = ',')]
    pub(crate) remote_write_urls: Vec<String>,
    /// A bearer token sent to every remote write target without basic auth in its URL.
    #[arg(long, env = "HOMEPOT_REMOTE_WRITE_BEARER_TOKEN")]
    pub(crate) remote_write_bearer_token: Option<String>,
    /// The forwarding queue's directory.
    #[arg(long, env = "HOMEPOT_REMOTE_WRITE_QUEUE_DIR", default_value = "homepot-forward")]
    pub(crate) remote_write_queue_dir: std::path::PathBuf,
    /// Past this many queued bytes the oldest batches are dropped (and counted).
    #[arg(long, env = "HOMEPOT_REMOTE_WRITE_QUEUE_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub(crate) remote_write_queue_max_bytes: u64,
    /// Hours an ingest request's `Idempotency-Key` is remembered: a repeat within them is
    /// answered as the first was and stores nothing.
    #[arg(long, env = "HOMEPOT_IDEMPOTENCY_WINDOW_HOURS", default_value_t = 24)]
    pub(crate) idempotency_window_hours: u64,
    /// Seconds between readings of this machine's own CPU, memory, disks, interfaces,
    /// temperatures, GPU and NPU (as `homepot agent` reads them), fed into the live view and
    /// history as `host_*` series tagged `host=<hostname>`; 0 (the default) reads none.
    #[arg(long = "host-metrics", env = "HOMEPOT_HOST_METRICS_SECONDS", default_value_t = 0, num_args = 0..=1, default_missing_value = "10")]
    pub(crate) host_metrics_seconds: u64,
    /// Fault injection for crash tests: the process kills itself (SIGKILL) as soon as its Nth
    /// health or metrics batch write returns, before any sender is answered.
    #[arg(long, env = "HOMEPOT_FAULT_KILL_AFTER_COMMITS", hide = true)]
    pub(crate) fault_kill_after_commits: Option<u64>,
}

impl fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeArgs")
            .field("bind", &self.bind)
            .field("remote_write_targets", &self.remote_write_urls.len())
            .field("remote_write_queue_dir", &self.remote_write_queue_dir)
            .field("database", &self.database)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("simulator", &self.simulator)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout_seconds", &self.body_read_timeout_seconds)
            .field("header_read_timeout_seconds", &self.header_read_timeout_seconds)
            .field("key_cache_ms", &self.key_cache_ms)
            .field("key_revision_poll_ms", &self.key_revision_poll_ms)
            .field("instance_id", &self.instance_id())
            .field("idle_timeout_seconds", &self.idle_timeout_seconds)
            .field("metrics_retention_seconds", &self.metrics_retention_seconds)
            .field("metrics_max_series", &self.metrics_max_series)
            .field("metrics_max_series_per_key", &self.metrics_max_series_per_key)
            .field("stream_interval_ms", &self.stream_interval_ms)
            .field("rate_limit_requests_per_minute", &self.rate_limit_requests_per_minute)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("rate_limit_device_requests_per_minute", &self.rate_limit_device_requests_per_minute)
            .field("rate_limit_read_requests_per_minute", &self.rate_limit_read_requests_per_minute)
            .field("rate_limit_admin_requests_per_minute", &self.rate_limit_admin_requests_per_minute)
            .field("trust_forwarded_headers", &self.trust_forwarded_headers)
            .field("open_metrics", &self.open_metrics)
            .field("smart_filter_enabled", &self.smart_filter_enabled)
            .field("smart_filter_interval_seconds", &self.smart_filter_interval_seconds)
            .field("smart_filter_threshold_percent", &self.smart_filter_threshold_percent)
            .field("node_stale_seconds", &self.node_stale_seconds)
            .field("alert_cpu_percent", &self.alert_cpu_percent)
            .field("alert_memory_percent", &self.alert_memory_percent)
            .field("alert_flash_percent", &self.alert_flash_percent)
            .field("alert_signal_quality_percent", &self.alert_signal_quality_percent)
            .field("mqtt_url", &self.mqtt_url.as_deref().map(homepot_mqtt::redact_url))
            .field("mqtt_auth", &self.mqtt_auth)
            .field("mqtt_request_all", &self.mqtt_request_all)
            .field("mqtt_request_timeout_seconds", &self.mqtt_request_timeout_seconds)
            .field("mqtt_things", &self.mqtt_things)
            .field("mqtt_frequency", &self.mqtt_frequency)
            .field("analytics_enabled", &self.analytics_enabled)
            .field("analytics_retention_days", &self.analytics_retention_days)
            .field("analytics_skip", &self.analytics_skip)
            .field("heartbeat_interval_seconds", &self.heartbeat_interval_seconds)
            .field("missed_heartbeats", &self.missed_heartbeats)
            .field("retention", &self.retention)
            .field("rollup_flush_seconds", &self.rollup_flush_seconds)
            .field("idempotency_window_hours", &self.idempotency_window_hours)
            .field("host_metrics_seconds", &self.host_metrics_seconds)
            .field("log_format", &self.log.log_format)
            .finish()
    }
}

impl ServeArgs {
    /// The MQTT bridge's settings, when it should run.
    ///
    /// # Errors
    /// When the MQTT settings are malformed.
    pub(crate) fn mqtt_config(&self) -> anyhow::Result<Option<MqttConfig>> {
        Ok(match &self.mqtt_url {
            None => None,
            Some(url) => {
                let mut config = self.mqtt_auth.config(url)?;
                config.client_id = self.mqtt_client_id.clone();
                config.request_all = self.mqtt_request_all;
                config.request_timeout = Duration::from_secs(self.mqtt_request_timeout_seconds.max(1));
                config.things = self.mqtt_things.clone();
                config.frequency_ms = parse_frequency(&serde_json::Value::String(self.mqtt_frequency.clone()))
                    .map_err(anyhow::Error::msg)?;
                if !self.mqtt_ids.is_empty() || !self.mqtt_originator.is_empty() {
                    config.filters =
                        vec![MetricsFilter { ids: self.mqtt_ids.clone(), originator: self.mqtt_originator.clone() }];
                }
                Some(config)
            }
        })
    }

    fn alert_settings(&self) -> anyhow::Result<AlertSettings> {
        let rules = match &self.alert_rules {
            Some(path) => crate::alert::load_rules(path)?,
            None => Vec::new(),
        };
        let external_url = match &self.external_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.bind),
        };
        Ok(AlertSettings {
            evaluation_interval: Duration::from_secs_f64(self.alert_evaluation_seconds.clamp(0.05, 86_400.0)),
            rules,
            delivery: DeliveryPolicy {
                external_url: format!("{external_url}/api/v1/alerts"),
                ..DeliveryPolicy::default()
            },
            ..AlertSettings::default()
        })
    }

    fn forward_settings(&self) -> anyhow::Result<ForwardSettings> {
        let token = self.remote_write_bearer_token.clone().filter(|t| !t.is_empty());
        let targets = self
            .remote_write_urls
            .iter()
            .map(|raw| raw.trim())
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                let mut url = reqwest::Url::parse(raw).map_err(|e| anyhow::anyhow!("--remote-write-url {raw}: {e}"))?;
                anyhow::ensure!(
                    matches!(url.scheme(), "http" | "https"),
                    "--remote-write-url {raw}: only http and https are supported"
                );
                let auth = if url.username().is_empty() {
                    token.clone().map_or(ForwardAuth::None, ForwardAuth::Bearer)
                } else {
                    let user = url.username().to_owned();
                    let password = url.password().unwrap_or_default().to_owned();
                    let _ = url.set_username("");
                    let _ = url.set_password(None);
                    ForwardAuth::Basic { user, password }
                };
                Ok(ForwardTarget { url: url.to_string(), auth })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ForwardSettings {
            targets,
            queue_dir: self.remote_write_queue_dir.clone(),
            queue_max_bytes: self.remote_write_queue_max_bytes,
            ..ForwardSettings::default()
        })
    }

    /// The configured instance id, or `<host name>-<process id>`.
    pub(crate) fn instance_id(&self) -> String {
        self.instance_id.clone().filter(|id| !id.trim().is_empty()).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = if host.trim().is_empty() { "homepot" } else { host.trim() };
            format!("{host}-{}", std::process::id())
        })
    }

    pub(crate) fn server_config(&self) -> anyhow::Result<ServerConfig> {
        Ok(ServerConfig {
            admin_key: self.admin_key.clone().filter(|k| !k.is_empty()).map(ApiKey::from_configured),
            simulator: self.simulator,
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds.max(1)),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            key_cache_ttl: Duration::from_millis(self.key_cache_ms),
            key_revision_poll: Duration::from_millis(self.key_revision_poll_ms.max(10)),
            instance_id: self.instance_id(),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds.max(1)),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_seconds),
            live: LiveLimits {
                retention_ns: i64::from(self.metrics_retention_seconds) * 1_000_000_000,
                max_series: self.metrics_max_series,
                max_series_per_owner: self.metrics_max_series_per_key,
            },
            stream_interval: Duration::from_millis(self.stream_interval_ms),
            rate_limit: NonZeroU32::new(self.rate_limit_requests_per_minute).map(|requests_per_minute| {
                RateLimitConfig {
                    device_requests_per_minute: self.rate_limit_device_requests_per_minute,
                    read_requests_per_minute: self.rate_limit_read_requests_per_minute,
                    admin_requests_per_minute: self.rate_limit_admin_requests_per_minute,
                    trust_forwarded_headers: self.trust_forwarded_headers,
                    ..RateLimitConfig::new(
                        requests_per_minute,
                        NonZeroU32::new(self.rate_limit_burst).unwrap_or(NonZeroU32::MIN),
                    )
                }
            }),
            open_metrics: self.open_metrics,
            node_stale_after: Duration::from_secs(self.node_stale_seconds),
            thresholds: Thresholds {
                cpu_percent: self.alert_cpu_percent,
                memory_percent: self.alert_memory_percent,
                flash_percent: self.alert_flash_percent,
                signal_quality_percent: self.alert_signal_quality_percent,
            },
            filter: FilterConfig {
                enabled: self.smart_filter_enabled,
                interval_ns: i64::from(self.smart_filter_interval_seconds) * 1_000_000_000,
                threshold: (self.smart_filter_threshold_percent / 100.0).max(0.0),
                ..FilterConfig::default()
            },
            analytics: AnalyticsConfig {
                enabled: self.analytics_enabled,
                skip: match self.analytics_skip.as_slice() {
                    [] => DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect(),
                    [none] if none == "none" => Vec::new(),
                    routes => routes.iter().map(|r| r.trim().to_owned()).collect(),
                },
                retention: retention(self.analytics_retention_days),
                ..AnalyticsConfig::default()
            },
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_seconds.max(1)),
            missed_heartbeats: self.missed_heartbeats.max(1),
            retention: self.retention.policy()?,
            rollup_flush_interval: Duration::from_secs(self.rollup_flush_seconds.max(1)),
            alerting: self.alert_settings()?,
            forward: self.forward_settings()?,
            idempotency_window: Duration::from_secs(self.idempotency_window_hours.max(1) * 3600),
            session_ttl: Duration::from_secs(self.session_hours.clamp(1, 24 * 30) * 3600),
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            ..ServerConfig::default()
        })
    }
}

/// `ANALYTICS_RETENTION_DAYS` as a duration; 0 keeps records forever.
pub(crate) fn retention(days: u32) -> Option<Duration> {
    (days > 0).then(|| Duration::from_secs(u64::from(days) * 24 * 3600))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a terminal.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging settings, shared by every command that logs.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Log line format.
    #[arg(long, env = "HOMEPOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Structured logs to stderr; `RUST_LOG` overrides the default `info`. Colour codes only
/// reach a terminal: in a file or a pipe they are noise. With an `instance` id every line
/// carries it, so that the merged logs of instances behind one balancer tell them apart.
pub(crate) fn init_logging(format: LogFormat, instance: Option<String>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let builder = builder.with_ansi(std::io::stderr().is_terminal());
            let inner = tracing_subscriber::fmt::format().with_ansi(std::io::stderr().is_terminal());
            builder.event_format(WithInstance { instance, json: false, inner }).init();
        }
        LogFormat::Json => {
            let inner = tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(false);
            builder.json().event_format(WithInstance { instance, json: true, inner }).init();
        }
    }
}

/// A log line format with the instance id in front: a `instance_id=` prefix on text lines, the
/// first member of JSON ones.
struct WithInstance<F> {
    instance: Option<String>,
    json: bool,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithInstance<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(instance) = &self.instance else { return self.inner.format_event(ctx, writer, event) };
        if !self.json {
            write!(writer, "instance_id={instance} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(members) => {
                let id = serde_json::Value::from(instance.as_str());
                write!(writer, "{{\"instance_id\":{id},{members}")
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_password("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("sqlite://homepot.db"), "sqlite://homepot.db");
    }
}
