//! `homepot export`: one table's rows from the configured database as CSV or NDJSON, the same
//! bytes `GET /api/v1/export` streams, written to stdout or a file in constant memory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::Args;
use homepot_core::export::ExportFormat;
use homepot_core::rollup::Tier;
use homepot_core::validation::parse_instant;
use homepot_storage::export::{ExportKind, ExportQuery};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::settings::DatabaseArgs;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The table: health, metrics, rollups, request_logs, state_changes, job_outcomes,
    /// error_logs or user_activity.
    #[arg(long, value_parser = parse_kind)]
    kind: ExportKind,
    /// Start, inclusive: RFC 3339 or Unix seconds (default: the first row).
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// End, exclusive: RFC 3339 or Unix seconds (default: the last row).
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
    /// Only this device's rows.
    #[arg(long)]
    device_id: Option<String>,
    /// Only this metric's rows (metrics, rollups).
    #[arg(long)]
    name: Option<String>,
    /// The rollup tier: 1m, 1h or 1d.
    #[arg(long, value_parser = parse_tier, default_value = "1h")]
    tier: Tier,
    /// csv or ndjson.
    #[arg(long, value_parser = parse_format, default_value = "csv")]
    format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArgs,
}

fn parse_kind(raw: &str) -> Result<ExportKind, String> {
    ExportKind::parse(raw).ok_or_else(|| {
        let kinds: Vec<&str> = ExportKind::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", kinds.join(", "))
    })
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    parse_instant(raw).ok_or_else(|| "RFC 3339 or Unix seconds".to_owned())
}

fn parse_tier(raw: &str) -> Result<Tier, String> {
    Tier::parse(raw).ok_or_else(|| "1m, 1h or 1d".to_owned())
}

fn parse_format(raw: &str) -> Result<ExportFormat, String> {
    ExportFormat::parse(raw).ok_or_else(|| "csv or ndjson".to_owned())
}

pub(crate) async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let store = crate::connect(&args.database).await?;
    let query = ExportQuery {
        kind: args.kind,
        from: args.from.unwrap_or(DateTime::UNIX_EPOCH),
        to: args.to.unwrap_or_else(homepot_engine::export_end),
        device: args.device_id,
        name: args.name,
        tier: args.tier,
    };
    let export = homepot_engine::export(Arc::new(store), query, args.format).await.map_err(|e| anyhow!("{e}"))?;
    match &args.output {
        Some(path) => {
            let file =
                tokio::fs::File::create(path).await.with_context(|| format!("cannot create {}", path.display()))?;
            let mut file = tokio::io::BufWriter::new(file);
            copy(export, &mut file).await?;
            file.get_mut().sync_all().await.context("cannot sync the output")?;
        }
        None => copy(export, &mut tokio::io::stdout()).await?,
    }
    Ok(())
}

async fn copy(mut export: homepot_engine::Export, out: &mut (impl AsyncWrite + Unpin)) -> anyhow::Result<()> {
    while let Some(chunk) = export.next_chunk().await {
        let chunk = chunk.map_err(|e| anyhow!("the export stopped early: {e}"))?;
        out.write_all(&chunk).await.context("cannot write the export")?;
    }
    out.flush().await.context("cannot write the export")?;
    Ok(())
}
