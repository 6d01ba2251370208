//! The full homepot server over `InMemoryStore` (homepot-storage, feature `memory`): nothing touches disk, and
//! everything is gone when it stops.
//!
//! `cargo run -p homepot-examples --example in_memory_server`

use std::sync::Arc;

use homepot_engine::{AdminKeyOutcome, ensure_admin_key};
use homepot_http::ServerConfig;
use homepot_storage::InMemoryStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(InMemoryStore::new());
    if let AdminKeyOutcome::Generated(key) = ensure_admin_key(store.as_ref(), None, chrono::Utc::now()).await? {
        println!("Admin API key: {}", key.expose());
    }
    let config = ServerConfig { simulator: true, ..ServerConfig::default() };
    let server = homepot_http::start("127.0.0.1:8000", store, config).await?;
    println!("homepot (in memory) on http://{}; Ctrl-C to stop", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await?;
    Ok(())
}
