//! `homepot serve`: open storage, make sure an admin key exists, start the engine and its
//! adapters (HTTP, and MQTT when configured), and run until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use homepot_engine::{AdminKeyOutcome, Clock, Homepot, SystemClock, ensure_admin_key};
use homepot_storage::Store;
use homepot_storage::layer::{Layered, Operation, StoreLayer};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::settings::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing::info!(settings = ?args, "starting homepot");
    let mut store: Arc<dyn Store> = Arc::new(crate::connect(&args.database).await?);
    if let Some(commits) = args.fault_kill_after_commits {
        tracing::warn!(commits, "fault injection: this process kills itself after that many commits");
        store = Arc::new(Layered::new(store, Arc::new(KillAfterCommits(AtomicU64::new(commits)))));
    }
    let config = args.server_config()?;
    let mqtt = args.mqtt_config()?;
    match ensure_admin_key(store.as_ref(), config.admin_key.as_ref(), SystemClock.now()).await? {
        AdminKeyOutcome::Generated(key) => {
            // Printed once, to stdout and not to the log: only its hash is stored.
            println!("Generated admin API key (shown once, store it safely): {}", key.expose());
        }
        AdminKeyOutcome::Configured | AdminKeyOutcome::Existing => {}
    }
    let (homepot, engine) = Homepot::start(store, config.engine_settings(), Arc::new(SystemClock)).await?;
    let host_metrics = (args.host_metrics_seconds > 0)
        .then(|| tokio::spawn(host_metrics(homepot.clone(), Duration::from_secs(args.host_metrics_seconds))));
    let bridge = match mqtt {
        Some(mqtt) => Some(homepot_mqtt::spawn(homepot.clone(), mqtt).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let server = homepot_http::serve(&args.bind, homepot, &config)
        .await
        .with_context(|| format!("cannot bind {}", args.bind))?;
    tracing::info!(addr = %server.local_addr(), "listening; OpenAPI at /openapi.json, Swagger UI at /docs");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and queued writes");
    // The adapters stop taking data first; then the engine commits what they handed over.
    let served = server.shutdown().await;
    if let Some(bridge) = bridge {
        bridge.stop();
    }
    if let Some(task) = host_metrics {
        task.abort();
    }
    engine.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Feeds this machine's figures into the engine, as a device's agent would send them.
async fn host_metrics(homepot: Homepot, every: Duration) {
    let host = sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_owned());
    let mut collector = match crate::agent::Collector::new(vec![("host".to_owned(), host)]) {
        Ok(collector) => collector,
        Err(error) => {
            tracing::warn!(%error, "host metrics unavailable on this system");
            return;
        }
    };
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let reading = collector.read(homepot.now());
        if let Err(error) = homepot.write_points("host", reading.points, None).await {
            tracing::warn!(%error, "host metrics not recorded");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Kills the process once its count of committed health and metrics batches runs out: a
/// commit that no sender hears of, as a power cut between the two leaves it.
#[derive(Debug)]
struct KillAfterCommits(AtomicU64);

#[async_trait::async_trait]
impl StoreLayer for KillAfterCommits {
    async fn before(&self, _operation: Operation) -> Result<(), homepot_storage::StorageError> {
        Ok(())
    }

    async fn after(&self, operation: Operation) {
        if matches!(operation, Operation::InsertHealth | Operation::InsertPoints)
            && self.0.fetch_sub(1, Ordering::SeqCst) == 1
        {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
            std::process::abort();
        }
    }
}
