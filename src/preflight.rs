//! Everything `modelbus validate` checks before anything runs, reported at
//! once, each problem with its config path: the config itself (syntax,
//! keys, values, references), the schema registry, every model file (found,
//! pinned sha256, loadable by its runtime, golden set), each worker's
//! inputs and outputs against its model as it really runs, and, for a
//! feature store already loaded, the features the worker asks for.
//!
//! Why one pass over everything: a new user with an unknown key, a bad
//! duration and a missing model file should learn of all three from one
//! command, not one per run.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;
use crate::features::{FeatureError, FeatureStore};
use crate::model::{Model, ModelError};
use crate::schema::SchemaRegistry;

/// What `validate` found: problems, which refuse the config, and warnings
/// (settings that do not apply), which do not.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Checks the config file at `path`. `load_models = false` (`--fast`)
/// skips loading the models, and with them the worker-against-model checks.
pub async fn check(path: &Path, load_models: bool) -> Findings {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let e = ConfigError { path: String::new(), message: format!("cannot read {}: {e}", path.display()) };
            return Findings { errors: vec![e], warnings: Vec::new() };
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (config, errors) = crate::config::load_partial(&text, &base);
    let Some(mut config) = config else { return Findings { errors, warnings: Vec::new() } };
    let warnings = std::mem::take(&mut config.warnings);
    Findings { errors: check_loaded(&config, errors, load_models).await, warnings }
}

/// The checks past the config itself: schemas, models, workers against them.
async fn check_loaded(
    config: &crate::config::Config,
    mut errors: Vec<ConfigError>,
    load_models: bool,
) -> Vec<ConfigError> {
    if let Err(e) = SchemaRegistry::load(&config.schemas) {
        errors.push(ConfigError { path: "schemas".into(), message: e.to_string() });
    }
    if !load_models {
        return errors;
    }
    let mut models = BTreeMap::new();
    for (name, cfg) in &config.models {
        let (n, c) = (name.clone(), cfg.clone());
        // Loading optimises the graph and runs the golden set: CPU work.
        match tokio::task::spawn_blocking(move || Model::load(&n, &c)).await {
            Ok(Ok(m)) => {
                models.insert(name.clone(), m);
            }
            Ok(Err(e)) => errors.push(ConfigError { path: model_path(name, &e), message: e.to_string() }),
            Err(e) => errors.push(ConfigError { path: format!("models.{name}"), message: e.to_string() }),
        }
    }
    for (i, w) in config.workers.iter().enumerate() {
        if let Some(model) = models.get(&w.model) {
            errors.extend(crate::worker::model_fit::check(w, i, model));
        }
        errors.extend(store_check(config, i).await);
    }
    errors
}

/// The config key a model's load error belongs to.
fn model_path(name: &str, e: &ModelError) -> String {
    let key = match e {
        ModelError::ShaMismatch { .. } => "sha256",
        ModelError::Golden { .. } => "golden",
        ModelError::RuntimeUnavailable { .. } => "runtime",
        _ => "path",
    };
    format!("models.{name}.{key}")
}

/// The features `workers[index]` reads, if its store is loaded already (a
/// store not loaded yet is not a config problem: `features load` comes
/// after `validate` in a first hour).
async fn store_check(config: &crate::config::Config, index: usize) -> Vec<ConfigError> {
    let w = &config.workers[index];
    let Some(name) = &w.feature_store else { return Vec::new() };
    let Some(cfg) = config.feature_stores.get(name) else { return Vec::new() };
    let features: Vec<String> =
        w.inputs.values().flatten().filter_map(|c| c.strip_prefix("features.")).map(str::to_string).collect();
    let store = match FeatureStore::open_existing(name, cfg, &config.data_dir) {
        Ok(Some(s)) => s,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![ConfigError { path: format!("feature_stores.{name}"), message: e.to_string() }],
    };
    match store.prepare(&features).await {
        Ok(()) | Err(FeatureError::NotLoaded(_)) => Vec::new(),
        Err(e) => vec![ConfigError { path: format!("workers[{index}].inputs"), message: e.to_string() }],
    }
}
