//! `homepot serve`: open storage, make sure an admin key exists, start the engine and its
//! adapters (HTTP, and MQTT when configured), and run until a signal.

use std::sync::Arc;

use anyhow::Context;
use homepot_engine::{AdminKeyOutcome, Clock, Homepot, SystemClock, ensure_admin_key};

use crate::settings::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing::info!(settings = ?args, "starting homepot");
    let store = Arc::new(crate::connect(&args.database).await?);
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
    engine.shutdown().await;
    served?;
    tracing::info!("stopped");
    Ok(())
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
