//! `run`, `validate` and `features load`.

use std::path::Path;
use std::process::ExitCode;

use modelbus::app::{cancel_on_signals, App};
use tokio_util::sync::CancellationToken;

use super::load_config;

pub async fn run(config: &Path) -> anyhow::Result<ExitCode> {
    // A failure drill with a mistyped fault would quietly drill nothing.
    modelbus::faults::load_env().map_err(anyhow::Error::msg)?;
    let config = load_config(config)?;
    let app = App::load(config).await?;
    let workers = app.workers().await?;
    if workers.is_empty() {
        anyhow::bail!("the config declares no workers");
    }
    let token = CancellationToken::new();
    cancel_on_signals(token.clone());
    if let Some(addr) = app.config.http.listen {
        let monitored = workers.iter().map(|w| (w.plan.worker.clone(), w.stats.clone())).collect();
        modelbus::http::serve(addr, monitored, token.clone())
            .await
            .map_err(|e| anyhow::anyhow!("http.listen: cannot listen on {addr}: {e}"))?;
    }
    App::run(workers, token).await?;
    Ok(ExitCode::SUCCESS)
}

/// Every problem at once, each with its config path; exit 2 if any.
pub async fn validate(path: &Path, fast: bool) -> anyhow::Result<ExitCode> {
    let modelbus::preflight::Findings { errors, warnings } = modelbus::preflight::check(path, !fast).await;
    for w in &warnings {
        eprintln!("{}: warning: {w}", path.display());
    }
    if errors.is_empty() {
        println!("{}: ok", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    eprint!("{}", modelbus::config::ConfigErrors { file: path.to_path_buf(), errors });
    Ok(ExitCode::from(2))
}

pub fn features_load(config: &Path, store: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    if !config.feature_stores.contains_key(store) {
        anyhow::bail!(
            "no feature store `{store}` in the config (it has: {})",
            config.feature_stores.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let n = modelbus::features::embedded::load_csv(&config.data_dir, store, file)?;
    println!("loaded {n} entities into feature store `{store}`");
    Ok(ExitCode::SUCCESS)
}
