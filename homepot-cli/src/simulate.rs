//! `homepot simulate`: a fleet of POS terminals reporting health checks over HTTP, so a
//! newcomer sees data flowing within a minute.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use homepot_core::simulate::{simulated_node_report, simulated_report};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

/// A fleet of POS terminals sending health checks, or with `gateway`, ESP32 nodes sending
/// resource reports.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SimulateArgs {
    #[command(subcommand)]
    gateway: Option<SimulateKind>,
    /// How many devices to simulate.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Share of reports that say the device is unhealthy, in percent.
    #[arg(long, default_value_t = 10)]
    unhealthy_percent: u8,
    /// Prefix of the simulated device ids.
    #[arg(long, default_value = "sim-pos")]
    prefix: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum SimulateKind {
    /// A mock gateway: ESP32 nodes reporting resources (gateway resource monitoring), with the 40/40/20 firmware
    /// split, so `/api/monitoring/resources` and `/ws` can be watched live.
    Gateway {
        /// How many nodes to simulate.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Prefix of the simulated node ids.
        #[arg(long, default_value = "spore-node")]
        prefix: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where to send and how often.
#[derive(Debug, Args)]
struct Target {
    /// Seconds between two reports of one device.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// The homepot server.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Admin key, used to register the simulated devices (required).
    #[arg(long, env = "HOMEPOT_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Stop after this many rounds (default: run until interrupted).
    #[arg(long)]
    rounds: Option<u64>,
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    ok: u64,
    filtered: u64,
    failed: u64,
    latencies_ms: Vec<f64>,
    last_error: Option<String>,
}

/// What one simulated device sends each round: path and body.
type Report = Box<dyn Fn(usize, &str, u64) -> (String, serde_json::Value) + Send + Sync>;

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    match args.gateway {
        None => {
            let unhealthy = args.unhealthy_percent;
            let report: Report = Box::new(move |_, device, _| {
                let healthy = rand::rng().random_range(0..100) >= unhealthy;
                let body = serde_json::to_value(simulated_report(&mut rand::rng(), healthy)).unwrap_or_default();
                (format!("/api/v1/devices/{device}/health"), body)
            });
            drive(&args.target, &args.prefix, args.devices, "pos-terminal", "health checks", report).await
        }
        Some(SimulateKind::Gateway { nodes, prefix, target }) => {
            let interval = target.interval;
            let report: Report = Box::new(move |index, node, round| {
                let uptime = (round as f64 * interval) as i64 + 60;
                let report = simulated_node_report(&mut rand::rng(), index, uptime, chrono::Utc::now().timestamp());
                (format!("/api/monitoring/nodes/{node}/resources"), serde_json::to_value(report).unwrap_or_default())
            });
            drive(&target, &prefix, nodes, "spore-node", "node reports", report).await
        }
    }
}

/// Registers `count` devices and sends each one's report every interval, with progress.
async fn drive(
    target: &Target,
    prefix: &str,
    count: usize,
    kind: &str,
    what: &str,
    report: Report,
) -> anyhow::Result<()> {
    if !target.interval.is_finite() || target.interval <= 0.0 {
        bail!("--interval must be positive");
    }
    // Checked here rather than by clap, which cannot require it in both `simulate` and
    // `simulate gateway` at once.
    let Some(admin_key) = target.admin_key.as_deref() else {
        bail!("--admin-key (or HOMEPOT_ADMIN_KEY) is required to register the simulated devices");
    };
    let base = target.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut fleet = Vec::with_capacity(count);
    for i in 1..=count {
        let device_id = format!("{prefix}-{i:04}");
        fleet.push((device_id.clone(), register(&client, &base, admin_key, &device_id, kind).await?));
    }
    eprintln!(
        "Simulating {} devices against {base}, one report each every {}s. Ctrl-C to stop.",
        fleet.len(),
        target.interval
    );
    let mut tally = Tally::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(target.interval));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        round += 1;
        let mut sends = JoinSet::new();
        for (index, (device_id, key)) in fleet.iter().enumerate() {
            let (path, body) = report(index, device_id, round);
            let (client, url, key) = (client.clone(), format!("{base}{path}"), key.clone());
            sends.spawn(async move {
                let started = Instant::now();
                let result = client.post(url).header("X-API-Key", key).json(&body).send().await;
                let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                match result {
                    Ok(r) if r.status().is_success() => {
                        let answer: serde_json::Value = r.json().await.unwrap_or_default();
                        Ok((elapsed, answer["stored"].as_bool().unwrap_or(true)))
                    }
                    Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                }
            });
        }
        while let Some(joined) = sends.join_next().await {
            tally.sent += 1;
            match joined.unwrap_or_else(|e| Err(e.to_string())) {
                Ok((ms, stored)) => {
                    tally.ok += 1;
                    tally.filtered += u64::from(!stored);
                    tally.latencies_ms.push(ms);
                }
                Err(error) => {
                    tally.failed += 1;
                    tally.last_error = Some(error);
                }
            }
        }
        print_progress(round, fleet.len(), &mut tally);
        if target.rounds.is_some_and(|r| round >= r) {
            break;
        }
    }
    eprintln!(
        "\nSent {} {what}: {} accepted ({} stored, {} filtered as unchanged), {} failed.",
        tally.sent,
        tally.ok,
        tally.ok - tally.filtered,
        tally.filtered,
        tally.failed
    );
    if tally.failed > 0 && tally.ok == 0 {
        bail!("no report was accepted: {}", tally.last_error.unwrap_or_default());
    }
    Ok(())
}

/// Registers a device and returns the key to report with: its own key when it is new, the
/// admin key when it already existed (its own key was shown only once, earlier).
async fn register(
    client: &reqwest::Client,
    base: &str,
    admin_key: &str,
    device_id: &str,
    kind: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/devices"))
        .header("X-API-Key", admin_key)
        .json(&json!({"device_id": device_id, "device_type": kind, "labels": {"simulated": "true"}}))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    match response.status() {
        StatusCode::CREATED => {
            let body: serde_json::Value = response.json().await?;
            body["api_key"].as_str().map(str::to_owned).context("registration answer has no api_key")
        }
        StatusCode::CONFLICT => Ok(admin_key.to_owned()),
        status => bail!("registering {device_id} failed with {status}: {}", response.text().await.unwrap_or_default()),
    }
}

fn print_progress(round: u64, devices: usize, tally: &mut Tally) {
    tally.latencies_ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let n = tally.latencies_ms.len();
        if n == 0 { 0.0 } else { tally.latencies_ms[((n as f64 - 1.0) * p).round() as usize] }
    };
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\rround {round:>5} | devices {devices} | sent {} | accepted {} | filtered {} | failed {} | p50 {:.1} ms | p99 {:.1} ms{}",
        tally.sent,
        tally.ok,
        tally.filtered,
        tally.failed,
        percentile(0.5),
        percentile(0.99),
        tally
            .last_error
            .as_deref()
            .map(|e| format!(" | last error: {}", e.chars().take(60).collect::<String>()))
            .unwrap_or_default()
    );
    let _ = err.flush();
    // Keep memory flat on long runs: percentiles cover the recent window.
    if tally.latencies_ms.len() > 100_000 {
        tally.latencies_ms.clear();
    }
}
