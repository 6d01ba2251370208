//! The `homepot` binary: parses settings, then hands over to the library crates.
#![forbid(unsafe_code)]

mod agent;
mod alert;
mod containers;
mod device;
mod export;
mod key;
mod retention;
mod serve;
mod settings;
mod simulate;

use clap::{Parser, Subcommand};

use crate::settings::{DatabaseArgs, ServeArgs};

/// Collects, filters, stores and serves telemetry from fleets of devices.
#[derive(Debug, Parser)]
#[command(name = "homepot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document.
    Openapi,
    /// Manage registered devices in the configured database.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Issue, list and revoke API keys in the configured database.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Simulate a fleet of devices sending health checks to a server.
    Simulate(simulate::SimulateArgs),
    /// Talk to edge devices' container metrics over MQTT.
    #[command(subcommand)]
    Containers(containers::ContainersCommand),
    /// Write one table's rows from the configured database as CSV or NDJSON.
    Export(Box<export::ExportArgs>),
    /// Delete old analytics records from the configured database.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Manage alert rules in the configured database, or check a rules file.
    #[command(subcommand)]
    Alert(alert::AlertCommand),
    /// Report this device's host metrics and local checks to a server, through a durable
    /// queue that loses nothing while the server is away (`agent status` shows it).
    Agent(Box<agent::AgentArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // sqlx and reqwest both use rustls; choose its crypto provider once, before either runs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            settings::init_logging(args.log.log_format, Some(args.instance_id()));
            serve::run(*args).await
        }
        Command::Openapi => {
            println!("{}", homepot_http::openapi_json());
            Ok(())
        }
        Command::Device(command) => device::run(command).await,
        Command::Key(command) => key::run(command).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Containers(command) => containers::run(command).await,
        Command::Export(args) => export::run(*args).await,
        Command::Retention(command) => retention::run(command).await,
        Command::Alert(command) => alert::run(command).await,
        Command::Agent(args) => {
            settings::init_logging(args.log.log_format, None);
            agent::run(*args).await
        }
    }
}

/// Connects to the configured database (used by commands that work on it directly).
async fn connect(database: &DatabaseArgs) -> anyhow::Result<homepot_storage_sea::SeaOrmStore> {
    homepot_storage_sea::SeaOrmStore::connect(&database.database_url, &database.store_options())
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", database.redacted_url()))
}
