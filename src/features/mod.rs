//! Feature stores: given entity keys taken from events, return named feature
//! values, one query per batch. Backends are an enum; a missing entity is
//! reported as `None` and the worker applies its configured policy.

pub(crate) mod cache;
pub mod embedded;

use std::path::Path;

use crate::config::{FeatureStoreBackend, FeatureStoreConfig, FeatureValue};
use crate::error::{Classify, ErrorClass};

/// One entity's features, in the prepared order. Shared, not copied: a
/// cached row is handed to every event of that entity.
pub type Row = std::sync::Arc<[Cell]>;

/// One feature value as read from a store.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Num(f64),
    Text(String),
    Null,
}

impl From<&FeatureValue> for Cell {
    fn from(v: &FeatureValue) -> Cell {
        match v {
            FeatureValue::Number(n) => Cell::Num(*n),
            FeatureValue::Text(s) => Cell::Text(s.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("feature store `{store}`: {source}")]
    Store { store: String, source: rusqlite::Error },
    #[error("feature store `{store}` is busy: {source}")]
    Busy { store: String, source: rusqlite::Error },
    #[error("feature store `{store}` has no feature `{feature}` (it has: {available})")]
    UnknownFeature { store: String, feature: String, available: String },
    #[error("feature store `{0}` has not been loaded; run `modelbus features load {0} FILE.csv`")]
    NotLoaded(String),
    #[error("CSV {path}: {reason}")]
    Csv { path: String, reason: String },
    #[error("feature store task failed: {0}")]
    Task(String),
    #[error("injected {0} fault at features.lookup")]
    Injected(ErrorClass),
}

impl Classify for FeatureError {
    fn class(&self) -> ErrorClass {
        match self {
            FeatureError::Busy { .. } | FeatureError::Task(_) | FeatureError::Store { .. } => ErrorClass::Transient,
            FeatureError::UnknownFeature { .. } | FeatureError::NotLoaded(_) => ErrorClass::Fatal,
            FeatureError::Csv { .. } => ErrorClass::Permanent,
            FeatureError::Injected(c) => *c,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            FeatureError::Store { .. } => "feature_store",
            FeatureError::Busy { .. } => "feature_store_busy",
            FeatureError::UnknownFeature { .. } => "unknown_feature",
            FeatureError::NotLoaded(_) => "store_not_loaded",
            FeatureError::Csv { .. } => "bad_csv",
            FeatureError::Task(_) => "feature_task",
            FeatureError::Injected(_) => "injected_fault",
        }
    }
}

pub enum FeatureStore {
    Embedded(embedded::EmbeddedStore),
}

impl FeatureStore {
    pub fn open(name: &str, cfg: &FeatureStoreConfig, data_dir: &Path) -> Result<FeatureStore, FeatureError> {
        match &cfg.backend {
            FeatureStoreBackend::Embedded(_) => Ok(FeatureStore::Embedded(embedded::EmbeddedStore::open(
                name,
                data_dir,
                cfg.cache_entries,
                cfg.cache_bytes,
            )?)),
        }
    }

    /// Opens the store only if it exists already (`validate` must not
    /// create one as a side effect): `None` when it does not.
    pub fn open_existing(
        name: &str,
        cfg: &FeatureStoreConfig,
        data_dir: &Path,
    ) -> Result<Option<FeatureStore>, FeatureError> {
        let exists = match &cfg.backend {
            // Opening creates its file.
            FeatureStoreBackend::Embedded(_) => data_dir.join(embedded::FILE_NAME).exists(),
        };
        if exists {
            Self::open(name, cfg, data_dir).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks that the store exists and has every named feature; returns
    /// each name's column index for [`FeatureStore::lookup`].
    pub async fn prepare(&self, features: &[String]) -> Result<(), FeatureError> {
        match self {
            FeatureStore::Embedded(s) => s.prepare(features).await,
        }
    }

    /// Looks up `keys` in one query. Each answer holds the prepared features
    /// in order, or `None` for an entity the store does not have.
    pub async fn lookup(&self, keys: Vec<String>) -> Result<Vec<Option<Row>>, FeatureError> {
        if let Some(class) = crate::faults::check("features.lookup") {
            return Err(FeatureError::Injected(class));
        }
        if crate::faults::any_set() {
            for k in &keys {
                if let Some(class) = crate::faults::check(&format!("features.key:{k}")) {
                    return Err(FeatureError::Injected(class));
                }
            }
        }
        match self {
            FeatureStore::Embedded(s) => s.lookup(keys).await,
        }
    }
}
