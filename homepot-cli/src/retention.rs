//! `homepot retention run`: the server's analytics retention job, run once.

use anyhow::bail;
use clap::Subcommand;
use homepot_storage::retention::purge_before;

use crate::settings::{DatabaseArgs, retention};

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Delete analytics records older than the retention period, in bounded batches.
    Run {
        /// Days to keep.
        #[arg(long, env = "ANALYTICS_RETENTION_DAYS", default_value_t = 90)]
        days: u32,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub(crate) async fn run(command: RetentionCommand) -> anyhow::Result<()> {
    let RetentionCommand::Run { days, database } = command;
    let Some(keep) = retention(days) else {
        bail!("retention is 0 days, which keeps analytics forever: nothing to delete");
    };
    let store = crate::connect(&database).await?;
    let cutoff = chrono::Utc::now() - chrono::TimeDelta::from_std(keep)?;
    let deleted = purge_before(&store, cutoff).await?;
    println!("deleted {deleted} analytics records older than {}", cutoff.to_rfc3339());
    Ok(())
}
