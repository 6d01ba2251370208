//! `homepot retention run`: the server's hourly retention job, run once: analytics records,
//! raw health checks and metric points, and rollup buckets past their retention.

use clap::Subcommand;
use homepot_storage::retention::{purge_before, purge_expired};

use crate::settings::{DatabaseArgs, RetentionArgs, retention};

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Delete what is past its retention, in bounded batches.
    Run {
        /// Days analytics records are kept; 0 keeps them forever.
        #[arg(long, env = "ANALYTICS_RETENTION_DAYS", default_value_t = 90)]
        days: u32,
        #[command(flatten)]
        retention: RetentionArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub(crate) async fn run(command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run { days, retention: args, database } = command;
    let policy = args.policy()?;
    let store = crate::connect(&database).await?;
    let now = chrono::Utc::now();
    match retention(days) {
        Some(keep) => {
            let cutoff = now - chrono::TimeDelta::from_std(keep)?;
            let deleted = purge_before(&store, cutoff).await?;
            println!("deleted {deleted} analytics records older than {}", cutoff.to_rfc3339());
        }
        None => println!("analytics are kept forever (0 days)"),
    }
    let purged = purge_expired(&store, &policy, now).await?;
    println!(
        "deleted {} health checks, {} metric points and {} rollup buckets past their retention",
        purged.health, purged.points, purged.rollups
    );
    Ok(())
}
