//! `homepot simulate`: a fleet of POS terminals reporting health checks over HTTP, so a
//! newcomer sees data flowing within a minute.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use homepot_core::simulate::simulated_report;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// How many devices to simulate.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Seconds between two reports of one device.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// The homepot server.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Admin key, used to register the simulated devices.
    #[arg(long, env = "HOMEPOT_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    /// Share of reports that say the device is unhealthy, in percent.
    #[arg(long, default_value_t = 10)]
    unhealthy_percent: u8,
    /// Stop after this many rounds (default: run until interrupted).
    #[arg(long)]
    rounds: Option<u64>,
    /// Prefix of the simulated device ids.
    #[arg(long, default_value = "sim-pos")]
    prefix: String,
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

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !args.interval.is_finite() || args.interval <= 0.0 {
        bail!("--interval must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut fleet = Vec::with_capacity(args.devices);
    for i in 1..=args.devices {
        let device_id = format!("{}-{i:04}", args.prefix);
        fleet.push((device_id.clone(), register(&client, &base, &args.admin_key, &device_id).await?));
    }
    eprintln!(
        "Simulating {} devices against {base}, one report each every {}s. Ctrl-C to stop.",
        fleet.len(),
        args.interval
    );
    let fleet = Arc::new(fleet);
    let mut tally = Tally::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(args.interval));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        round += 1;
        let mut sends = JoinSet::new();
        for (device_id, key) in fleet.iter().cloned() {
            let healthy = rand::rng().random_range(0..100) >= args.unhealthy_percent;
            let body = serde_json::to_value(simulated_report(&mut rand::rng(), healthy))?;
            let (client, url) = (client.clone(), format!("{base}/api/v1/devices/{device_id}/health"));
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
        if args.rounds.is_some_and(|r| round >= r) {
            break;
        }
    }
    eprintln!(
        "\nSent {} health checks: {} accepted ({} stored, {} filtered as unchanged), {} failed.",
        tally.sent,
        tally.ok,
        tally.ok - tally.filtered,
        tally.filtered,
        tally.failed
    );
    if tally.failed > 0 && tally.ok == 0 {
        bail!("no health check was stored: {}", tally.last_error.unwrap_or_default());
    }
    Ok(())
}

/// Registers a device and returns the key to report with: its own key when it is new, the
/// admin key when it already existed (its own key was shown only once, earlier).
async fn register(client: &reqwest::Client, base: &str, admin_key: &str, device_id: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/v1/devices"))
        .header("X-API-Key", admin_key)
        .json(&json!({"device_id": device_id, "device_type": "pos-terminal", "labels": {"simulated": "true"}}))
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
