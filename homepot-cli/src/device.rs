//! `homepot device add|list|remove`, working on the configured database directly.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use homepot_core::{DeviceId, NewDevice};
use homepot_storage::{DeviceStore, StorageError};

use crate::settings::DatabaseArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Register a device and print its API key (shown only once).
    Add {
        /// Device identifier, e.g. `pos-terminal-001`.
        device_id: String,
        /// Human-readable name.
        #[arg(long)]
        name: Option<String>,
        /// Kind of device.
        #[arg(long = "type")]
        device_type: Option<String>,
        /// A label as KEY=VALUE; repeat for more.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List registered devices.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Remove a device with its keys and health checks.
    Remove {
        /// Device identifier.
        device_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{raw}'"))
}

pub(crate) async fn run(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Add { device_id, name, device_type, labels, database } => {
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let new = NewDevice::parse(&device_id, name, device_type, labels).context("invalid device")?;
            let store = crate::connect(&database).await?;
            let key = homepot_engine::generate_key();
            match store.register_device(&new, &key.hash(), Utc::now()).await {
                Ok(device) => {
                    println!("Registered device '{}'.", device.id);
                    println!("API key (shown once): {}", key.expose());
                    Ok(())
                }
                Err(StorageError::Conflict { .. }) => bail!("device '{device_id}' is already registered"),
                Err(other) => Err(other.into()),
            }
        }
        DeviceCommand::List { database } => {
            let store = crate::connect(&database).await?;
            let devices = store.devices().await?;
            println!("{:<32} {:<20} {:<16} {:<25} LABELS", "DEVICE_ID", "NAME", "TYPE", "REGISTERED");
            for d in &devices {
                let labels: Vec<String> = d.labels.as_map().iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{:<32} {:<20} {:<16} {:<25} {}",
                    d.id,
                    d.name.as_deref().unwrap_or("-"),
                    d.device_type.as_deref().unwrap_or("-"),
                    d.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    labels.join(",")
                );
            }
            println!("{} device(s)", devices.len());
            Ok(())
        }
        DeviceCommand::Remove { device_id, database } => {
            let id = DeviceId::parse(&device_id).context("invalid device id")?;
            let store = crate::connect(&database).await?;
            match store.remove_device(&id).await {
                Ok(()) => {
                    println!("Removed device '{id}' with its keys and health checks.");
                    Ok(())
                }
                Err(StorageError::NotFound { .. }) => bail!("device '{id}' is not registered"),
                Err(other) => Err(other.into()),
            }
        }
    }
}
