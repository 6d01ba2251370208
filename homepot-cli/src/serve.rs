//! `homepot serve`: open storage, make sure an admin key exists, serve until a signal.

use std::sync::Arc;

use anyhow::Context;
use homepot_http::{AdminKeyOutcome, ensure_admin_key};

use crate::settings::ServeArgs;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing::info!(settings = ?args, "starting homepot");
    let store = Arc::new(crate::connect(&args.database).await?);
    let config = args.server_config()?;
    match ensure_admin_key(store.as_ref(), config.admin_key.as_ref()).await? {
        AdminKeyOutcome::Generated(key) => {
            // Printed once, to stdout and not to the log: only its hash is stored.
            println!("Generated admin API key (shown once, store it safely): {}", key.expose());
        }
        AdminKeyOutcome::Configured | AdminKeyOutcome::Existing => {}
    }
    let server =
        homepot_http::start(&args.bind, store, config).await.with_context(|| format!("cannot bind {}", args.bind))?;
    tracing::info!(addr = %server.local_addr(), "listening; OpenAPI at /openapi.json, Swagger UI at /docs");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and queued writes");
    server.shutdown().await?;
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
