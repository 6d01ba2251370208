//! Alert rules kept in files (`--alert-rules FILE`, `homepot alert rule add FILE`) and
//! `homepot alert rule …` over the configured database. A running server reads rules from the
//! database at every evaluation, so changes made here apply without a restart.
//!
//! A rules file is YAML (`.yaml`, `.yml`), TOML (`.toml`) or JSON (anything else) holding a
//! `rules` list, or a single rule; each rule is the document `/api/v1/alerts/rules` takes.

use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use homepot_core::alert::Rule;
use homepot_storage::AlertStore;
use homepot_storage::alerts::{AlertConfig, ConfigKind};
use serde_json::Value;

use crate::settings::DatabaseArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum AlertCommand {
    /// Alert rules in the configured database.
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum RuleCommand {
    /// Print every rule as JSON, one per line.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Store the rules of a file (replacing rules with the same ids).
    Add {
        /// A YAML, TOML or JSON rules file.
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Check a rules file without storing it.
    Check {
        /// A YAML, TOML or JSON rules file.
        file: std::path::PathBuf,
    },
    /// Delete a rule; its open alerts resolve at the server's next evaluation.
    Delete {
        /// Rule id.
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The rules of `path`, every problem reported as `rules.N.field: message`.
pub(crate) fn load_rules(path: &Path) -> anyhow::Result<Vec<Rule>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let document: Value = match extension.as_str() {
        "yaml" | "yml" => serde_norway::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?,
        "toml" => toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?,
        _ => serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?,
    };
    let (items, prefix) = match document.get("rules") {
        Some(Value::Array(items)) => (items.clone(), "rules."),
        Some(_) => bail!("{}: `rules` must be a list", path.display()),
        None => (vec![document], ""),
    };
    let mut rules = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match Rule::parse(item) {
            Ok(rule) => rules.push(rule),
            Err(errors) => problems.extend(errors.errors().iter().map(|e| {
                let loc: Vec<String> = e.loc.iter().map(ToString::to_string).collect();
                let at = if prefix.is_empty() { String::new() } else { format!("{prefix}{index}.") };
                format!("{at}{}: {}", loc.join("."), e.msg)
            })),
        }
    }
    if !problems.is_empty() {
        bail!("{} has invalid rules:\n  {}", path.display(), problems.join("\n  "));
    }
    let mut ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("{}: rule id '{}' appears twice", path.display(), pair[0]);
    }
    Ok(rules)
}

pub(crate) async fn run(command: AlertCommand) -> anyhow::Result<()> {
    let AlertCommand::Rule(command) = command;
    match command {
        RuleCommand::List { database } => {
            let store = crate::connect(&database).await?;
            for config in store.alert_configs(ConfigKind::Rule).await? {
                println!("{}", config.to_json());
            }
        }
        RuleCommand::Add { file, database } => {
            let rules = load_rules(&file)?;
            let store = crate::connect(&database).await?;
            for rule in &rules {
                store.put_alert_config(&AlertConfig::Rule(rule.clone())).await?;
            }
            println!("stored {} rule(s) from {}", rules.len(), file.display());
        }
        RuleCommand::Check { file } => {
            let rules = load_rules(&file)?;
            println!("{}: {} valid rule(s)", file.display(), rules.len());
        }
        RuleCommand::Delete { id, database } => {
            let store = crate::connect(&database).await?;
            store.delete_alert_config(ConfigKind::Rule, &id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("deleted rule {id}");
        }
    }
    Ok(())
}
