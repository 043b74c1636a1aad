//! Subcommand implementations, one file per command family.

pub mod bench;
pub mod demo;
pub mod dlq;
pub mod documents;
pub mod escape;
pub mod out;
pub mod publish;
pub mod run;
pub mod schema;
pub mod tail;

use std::path::Path;

use anyhow::Context;
use modelbus::config::Config;

/// Loads a config or returns every problem found in it.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let config = modelbus::config::load(path).map_err(|e| anyhow::anyhow!("{e}")).context("invalid config")?;
    for w in &config.warnings {
        tracing::warn!(config = %path.display(), path = %w.path, "{}", w.message);
    }
    Ok(config)
}
