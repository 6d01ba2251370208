//! `homepot key add|list|revoke`: API key rotation and revocation on the configured database.

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use homepot_core::{DeviceId, Role};
use homepot_storage::keys::revoke_key;
use homepot_storage::{KeyId, KeyStore, NewKey, StorageError};

use crate::settings::DatabaseArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FleetRole {
    /// Reads everything, writes nothing.
    Read,
    /// Everything.
    Admin,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Issue a key and print it (shown only once): a device key with `--device`, else a
    /// read or admin key. Existing keys stay valid until revoked.
    Add {
        /// Issue a device key for this registered device.
        #[arg(long, conflicts_with = "role")]
        device: Option<String>,
        /// Role of a key that belongs to no device.
        #[arg(long, value_enum, default_value_t = FleetRole::Read)]
        role: FleetRole,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List unrevoked keys (never their secrets): a device's with `--device`, else the read
    /// and admin keys.
    List {
        /// The device whose keys to list.
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key; it stops working at once.
    Revoke {
        /// The key's id, from `homepot key list`.
        key_id: i64,
        /// The device the key belongs to (omit for read and admin keys).
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn device_id(raw: Option<String>) -> anyhow::Result<Option<DeviceId>> {
    raw.map(|d| DeviceId::parse(&d).context("invalid device id")).transpose()
}

pub(crate) async fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Add { device, role, database } => {
            let device = device_id(device)?;
            let role = match (&device, role) {
                (Some(_), _) => Role::Device,
                (None, FleetRole::Read) => Role::Read,
                (None, FleetRole::Admin) => Role::Admin,
            };
            let store = crate::connect(&database).await?;
            let key = homepot_engine::generate_key();
            let new = NewKey { hash: key.hash(), role, device_id: device.clone(), created_at: Utc::now() };
            let id = match store.insert_key(&new).await {
                Ok(id) => id,
                Err(StorageError::NotFound { .. }) => {
                    bail!("device '{}' is not registered", device.map(|d| d.to_string()).unwrap_or_default())
                }
                Err(other) => return Err(other.into()),
            };
            println!("Issued {} key {}.", role.as_str(), id.0);
            println!("API key (shown once): {}", key.expose());
            Ok(())
        }
        KeyCommand::List { device, database } => {
            let device = device_id(device)?;
            let store = crate::connect(&database).await?;
            let keys = store.keys(device.as_ref()).await?;
            println!("{:<10} {:<8} {:<32} CREATED", "KEY_ID", "ROLE", "DEVICE_ID");
            for k in &keys {
                let owner = k.device_id.as_ref().map_or("-", DeviceId::as_str);
                println!(
                    "{:<10} {:<8} {:<32} {}",
                    k.id.0,
                    k.role.as_str(),
                    owner,
                    k.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            println!("{} key(s)", keys.len());
            Ok(())
        }
        KeyCommand::Revoke { key_id, device, database } => {
            let device = device_id(device)?;
            let store = crate::connect(&database).await?;
            let admin_configured = std::env::var("HOMEPOT_ADMIN_KEY").is_ok_and(|k| !k.is_empty());
            match revoke_key(&store, KeyId(key_id), device.as_ref(), admin_configured, Utc::now()).await {
                Ok(()) => {
                    println!("Revoked key {key_id}.");
                    Ok(())
                }
                Err(StorageError::NotFound { .. }) => bail!("no unrevoked key {key_id} there"),
                Err(StorageError::Conflict { .. }) => {
                    bail!("key {key_id} is the last admin key: issue another or set HOMEPOT_ADMIN_KEY first")
                }
                Err(other) => Err(other.into()),
            }
        }
    }
}
