//! `homepot agent`: the reporter a fleet installs on each device. Every interval it reads the
//! host (`collect`), probes its local checks (`probe`), and writes the batch to a durable
//! queue in its state directory before anything is sent; a sender (`send`) drains the queue
//! to the server in order, at a bounded rate, with an `Idempotency-Key` per request, so a
//! retry never stores twice and an outage or a crash loses nothing.
//!
//! Settings come from flags, then `HOMEPOT_AGENT_*` variables, then a TOML config file
//! (`--config`), then the defaults.

mod collect;
mod probe;
mod send;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use homepot_core::{AppMetrics, HealthReport};
use homepot_engine::queue::DurableQueue;
use serde::{Deserialize, Serialize};

pub(crate) use self::collect::Collector;
use self::probe::Probe;
use self::send::{Sender, Status};

/// Report this device's host metrics and local checks to a homepot server.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    settings: AgentFlags,
    #[command(flatten)]
    pub(crate) log: crate::settings::LogArgs,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Show the queue depth, its oldest batch, the sent, dropped and rejected counts and the
    /// last error of an agent's state directory (while it runs, or not).
    Status {
        /// The agent's state directory.
        #[arg(long, env = "HOMEPOT_AGENT_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

const DEFAULT_STATE_DIR: &str = "homepot-agent";

/// The agent's settings as flags and variables; unset ones fall back to the config file.
#[derive(Debug, Args, Default)]
struct AgentFlags {
    /// The server (`http://homepot.local:8000`).
    #[arg(long, env = "HOMEPOT_AGENT_SERVER")]
    server: Option<String>,
    /// This device's registered id.
    #[arg(long, env = "HOMEPOT_AGENT_DEVICE_ID")]
    device_id: Option<String>,
    /// This device's API key.
    #[arg(long, env = "HOMEPOT_AGENT_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Time between two readings: `60s` (the default), `10s`, `5m`, `500ms`.
    #[arg(long, env = "HOMEPOT_AGENT_INTERVAL")]
    interval: Option<String>,
    /// Where the queue and the counters live (default `./homepot-agent`).
    #[arg(long, env = "HOMEPOT_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A local HTTP endpoint to probe every interval; repeat for several. Each is reported
    /// as a health check with its `endpoint`, `status_code` and `response_time_ms`.
    #[arg(long = "check", env = "HOMEPOT_AGENT_CHECKS", value_delimiter = ',')]
    checks: Vec<String>,
    /// Past this many queued bytes the oldest batches are dropped and counted (default 64 MiB).
    #[arg(long, env = "HOMEPOT_AGENT_QUEUE_MAX_BYTES")]
    queue_max_bytes: Option<u64>,
    /// Most batches sent per second while a backlog drains (default 100).
    #[arg(long, env = "HOMEPOT_AGENT_DRAIN_RATE")]
    drain_rate: Option<u32>,
    /// A TOML file with any of the settings above (`server = "..."`, `checks = [...]`).
    #[arg(long, env = "HOMEPOT_AGENT_CONFIG")]
    config: Option<PathBuf>,
}

/// The config file: the same settings, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    server: Option<String>,
    device_id: Option<String>,
    key: Option<String>,
    interval: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    checks: Vec<String>,
    queue_max_bytes: Option<u64>,
    drain_rate: Option<u32>,
}

/// The settings the agent runs with.
#[derive(Clone)]
pub(crate) struct AgentSettings {
    pub(crate) server: String,
    pub(crate) device_id: String,
    pub(crate) key: String,
    pub(crate) interval: Duration,
    pub(crate) state_dir: PathBuf,
    pub(crate) checks: Vec<String>,
    pub(crate) queue_max_bytes: u64,
    pub(crate) drain_rate: u32,
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("key", &"<redacted>")
            .field("interval", &self.interval)
            .field("state_dir", &self.state_dir)
            .field("checks", &self.checks)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("drain_rate", &self.drain_rate)
            .finish()
    }
}

/// `60s`, `10s`, `5m`, `1h`, `500ms`, or plain seconds.
fn parse_interval(raw: &str) -> anyhow::Result<Duration> {
    let raw = raw.trim();
    let (number, unit) = raw.find(|c: char| c.is_ascii_alphabetic()).map_or((raw, "s"), |i| raw.split_at(i));
    let value: f64 = number.trim().parse().with_context(|| format!("interval {raw:?} is not a number and a unit"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("interval {raw:?}: the unit is ms, s, m or h"),
    };
    if !(0.01..=86_400.0).contains(&seconds) {
        bail!("interval {raw:?} must be between 10ms and 24h");
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl AgentFlags {
    fn resolve(self) -> anyhow::Result<AgentSettings> {
        let file: AgentFile = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("{} is not a valid agent config", path.display()))?
            }
            None => AgentFile::default(),
        };
        let required = |flag: Option<String>, file: Option<String>, name: &str| {
            flag.or(file)
                .with_context(|| format!("--{name} is required (flag, HOMEPOT_AGENT_* variable or config file)"))
        };
        let server = required(self.server, file.server, "server")?.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, got {server:?}");
        }
        let interval = self.interval.or(file.interval).map_or(Ok(Duration::from_secs(60)), |i| parse_interval(&i))?;
        Ok(AgentSettings {
            server,
            device_id: required(self.device_id, file.device_id, "device-id")?,
            key: required(self.key, file.key, "key")?,
            interval,
            state_dir: self.state_dir.or(file.state_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            checks: if self.checks.is_empty() { file.checks } else { self.checks },
            queue_max_bytes: self.queue_max_bytes.or(file.queue_max_bytes).unwrap_or(64 * 1024 * 1024),
            drain_rate: self.drain_rate.or(file.drain_rate).unwrap_or(100).max(1),
        })
    }
}

/// One interval's batch, as queued: everything needed to send it again after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Batch {
    /// Unique per batch; each request's `Idempotency-Key` derives from it.
    pub(crate) key: String,
    /// When the readings were taken.
    pub(crate) taken_at: DateTime<Utc>,
    /// One health check per local check (one without checks), with `checked_at` set.
    pub(crate) health: Vec<HealthReport>,
    /// Every other figure, as line protocol at `taken_at`.
    pub(crate) lines: String,
}

fn queue_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("queue")
}

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(AgentCommand::Status { state_dir, json }) = args.command {
        return status(&state_dir, json);
    }
    let settings = args.settings.resolve()?;
    tracing::info!(?settings, "starting homepot agent");
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("cannot create {}", settings.state_dir.display()))?;
    let queue = DurableQueue::open_single(&queue_dir(&settings.state_dir), settings.queue_max_bytes)
        .with_context(|| format!("cannot open the queue in {}", settings.state_dir.display()))?;
    let queue = Arc::new(queue);
    let sender = Arc::new(Sender::new(&settings, Arc::clone(&queue))?);
    let sending = tokio::spawn(Arc::clone(&sender).run_forever());
    let collecting = collect_forever(settings, queue, Arc::clone(&sender));
    tokio::select! {
        result = collecting => {
            tracing::info!("stopped: every batch read so far is in the queue");
            result
        }
        result = sending => result.context("the sender stopped")?,
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    if let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Reads the host and the checks every interval and queues the batch, durably, whatever the
/// sender is doing, until a stop signal, which is taken between two readings.
async fn collect_forever(settings: AgentSettings, queue: Arc<DurableQueue>, sender: Arc<Sender>) -> anyhow::Result<()> {
    let mut collector = Collector::new(Vec::new())?;
    let probe = Probe::new()?;
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return Ok(()),
        }
        let taken_at = Utc::now();
        let reading = collector.read(taken_at);
        let results = probe.run(&settings.checks).await;
        let batch = batch(reading, results, sender.latency_ms(), rand::random::<u128>());
        let bytes = serde_json::to_vec(&batch)?;
        let queue = Arc::clone(&queue);
        match tokio::task::spawn_blocking(move || queue.append(&bytes)).await? {
            Ok(()) => sender.queued(),
            // The disk is full or gone: this reading is lost, and said so.
            Err(error) => {
                tracing::error!(%error, "cannot queue a batch: this reading is lost");
                sender.note_lost(&format!("queue write failed: {error}"));
            }
        }
    }
}

/// The batch of one reading and its checks' results.
fn batch(reading: collect::Reading, checks: Vec<probe::CheckResult>, latency_ms: Option<i64>, id: u128) -> Batch {
    let mut network = reading.network;
    network.latency_ms = latency_ms;
    let app = AppMetrics {
        app_version: None,
        transactions_count: Some(checks.len() as i64),
        errors_count: Some(checks.iter().filter(|c| !c.is_healthy).count() as i64),
        warnings_count: None,
        avg_response_time_ms: (!checks.is_empty())
            .then(|| checks.iter().map(|c| c.response_time_ms).sum::<i64>() / checks.len() as i64),
    };
    let mut base = HealthReport::minimal(true, 0);
    base.system = Some(reading.system);
    base.network = Some(network);
    base.app_metrics = Some(app);
    base.checked_at = Some(reading.taken_at);
    let health = if checks.is_empty() {
        vec![base]
    } else {
        checks
            .into_iter()
            .map(|check| {
                let mut report = base.clone();
                check.fill(&mut report);
                report
            })
            .collect()
    };
    let mut lines = String::new();
    for point in &reading.points {
        homepot_core::ingest::line_protocol::write_point(point, &mut lines);
        lines.push('\n');
    }
    Batch { key: format!("{id:032x}"), taken_at: reading.taken_at, health, lines }
}

fn status(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let queued = DurableQueue::inspect(&queue_dir(state_dir))
        .with_context(|| format!("cannot read the queue in {}", state_dir.display()))?;
    let counters = Status::load(state_dir).unwrap_or_default();
    let oldest = queued.oldest.as_deref().and_then(|b| serde_json::from_slice::<Batch>(b).ok()).map(|b| b.taken_at);
    if json {
        let report = serde_json::json!({
            "queued_batches": queued.pending_records,
            "queued_bytes": queued.pending_bytes,
            "oldest_queued": oldest,
            "collected": counters.collected,
            "sent": counters.sent,
            "dropped": counters.dropped,
            "rejected": counters.rejected,
            "last_error": counters.last_error,
            "last_error_at": counters.last_error_at,
            "last_sent_at": counters.last_sent_at,
        });
        println!("{report}");
        return Ok(());
    }
    println!("state directory  {}", state_dir.display());
    println!("queued           {} batches, {} bytes", queued.pending_records, queued.pending_bytes);
    println!("oldest queued    {}", oldest.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()));
    println!("collected        {}", counters.collected);
    println!("sent             {}", counters.sent);
    println!("dropped          {} (queue full or corrupt)", counters.dropped);
    println!("rejected         {} (refused by the server)", counters.rejected);
    println!("last sent        {}", counters.last_sent_at.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()));
    match (&counters.last_error, counters.last_error_at) {
        (Some(error), Some(at)) => println!("last error       {error} ({})", at.to_rfc3339()),
        _ => println!("last error       -"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_take_units() {
        assert_eq!(parse_interval("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_interval("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "fast", "10d", "0s", "2h5m"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "server = \"http://file:8000/\"\ndevice_id = \"pos-1\"\nkey = \"k\"\ninterval = \"10s\"\nchecks = [\"http://127.0.0.1:9/health\"]\n",
        )
        .unwrap();
        let flags = AgentFlags { config: Some(path.clone()), device_id: Some("pos-2".into()), ..AgentFlags::default() };
        let settings = flags.resolve().unwrap();
        assert_eq!(settings.server, "http://file:8000");
        assert_eq!(settings.device_id, "pos-2");
        assert_eq!(settings.interval, Duration::from_secs(10));
        assert_eq!(settings.checks, vec!["http://127.0.0.1:9/health".to_owned()]);
        assert_eq!(settings.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        std::fs::write(&path, "server = \"http://x\"\nsurprise = 1\n").unwrap();
        let error = AgentFlags { config: Some(path), ..AgentFlags::default() }.resolve().unwrap_err();
        assert!(format!("{error:#}").contains("surprise"), "{error:#}");
        assert!(AgentFlags::default().resolve().is_err(), "the server is required");
    }

    #[test]
    fn a_batch_holds_valid_health_checks_at_the_reading_time() {
        let mut collector = Collector::new(Vec::new()).unwrap();
        let reading = collector.read(Utc::now());
        let taken_at = reading.taken_at;
        let checks = vec![probe::CheckResult::failed("http://127.0.0.1:1/health", 3, "connection refused".into())];
        let batch = batch(reading, checks, Some(4), 7);
        assert_eq!(batch.key, format!("{:032x}", 7));
        assert_eq!(batch.health.len(), 1);
        let report = &batch.health[0];
        assert!(!report.is_healthy);
        assert_eq!(report.checked_at, Some(taken_at));
        assert_eq!(report.network.as_ref().and_then(|n| n.latency_ms), Some(4));
        let body = serde_json::to_vec(report).unwrap();
        let check = homepot_core::ingest::health_json::parse_health_check(&body).expect("the server accepts it");
        assert_eq!(check.sample_time(Utc::now(), None).unwrap(), taken_at);
        let parsed = homepot_core::ingest::line_protocol::parse_lines(
            &batch.lines,
            homepot_core::ingest::line_protocol::Precision::Nanoseconds,
            0,
        );
        assert_eq!(parsed.error_count, 0, "{:?}", parsed.errors);
        assert!(!parsed.points.is_empty());
    }
}
