//! The TOML configuration tree. One file declares the bus, the schema
//! directory, feature stores, models and workers. Every struct refuses unknown
//! keys; every error names its path (`workers[0].batch.max_wait`). Relative
//! paths resolve against the config file's directory, and any string may say
//! `${ENV_VAR}` so that secrets stay out of the file.
//!
//! Parsing and error collection live in [`load`], cross-field checks in
//! [`validate`]; this file is the tree itself, and its doc comments are the
//! user documentation of each key.

mod backends;
mod breaker;
pub(crate) mod duration;
mod load;
pub(crate) mod sealed;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use backends::{BusConfig, FeatureStoreBackend, FeatureStoreConfig, SinkBackend, SinkConfig};
pub use breaker::BreakerConfig;
pub use duration::MAX as MAX_DURATION;
pub use load::{load, load_partial, load_str, ConfigError, ConfigErrors};
pub use validate::is_identifier;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded bus and feature store (default `data`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Schema registry directory: `<dir>/<EventType>/<version>.json` (default `schemas`).
    #[serde(default = "default_schemas")]
    pub schemas: PathBuf,
    #[serde(default)]
    pub bus: BusConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Named feature stores, referenced by `workers[].feature_store`.
    #[serde(default)]
    pub feature_stores: BTreeMap<String, FeatureStoreConfig>,
    /// Named models, referenced by `workers[].model`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub workers: Vec<WorkerConfig>,
    /// What loading found questionable but not wrong (settings that do not
    /// apply), each with its path; `run` logs them and `validate` shows them.
    #[serde(skip)]
    pub warnings: Vec<ConfigError>,
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_schemas() -> PathBuf {
    "schemas".into()
}

/// The worker's HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `"0.0.0.0:9464"`; absent → no endpoint.
    pub listen: Option<std::net::SocketAddr>,
}

/// A feature value: numeric or string.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FeatureValue {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// Pure Rust (tract plus modelbus's own ONNX-ML ops).
    #[default]
    Tract,
    /// ONNX Runtime through the `ort` crate (Cargo feature `ort`).
    Ort,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The ONNX file.
    pub path: PathBuf,
    /// Expected sha256 of the file; start-up fails on a mismatch.
    pub sha256: Option<String>,
    /// The version results carry (default: the first 12 hex digits of the sha256).
    pub version: Option<String>,
    #[serde(default)]
    pub runtime: Runtime,
    /// Golden inputs and expected outputs checked at load time
    /// (default: `<model>.golden.json` beside the model, if present).
    pub golden: Option<PathBuf>,
    /// Whether NaN (a missing or null input) may reach the model. Default:
    /// allowed for tree ensembles, which route missing values, refused for
    /// anything else.
    pub allow_nan: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingEntity {
    /// Dead-letter the event (stage `features`, code `unknown_entity`).
    #[default]
    DeadLetter,
    /// Use the store's `defaults`; features without one become NaN.
    Defaults,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub name: String,
    /// Consumer group (default: the worker's name).
    pub group: Option<String>,
    /// Topic the worker consumes. It also consumes `<group>.replay`.
    pub topic: String,
    /// The event type it accepts; anything else is dead-lettered.
    pub event_type: String,
    pub model: String,
    /// Type of the result events it emits.
    pub result_type: String,
    /// `source` of result events (default `modelbus/<worker name>`).
    pub result_source: Option<String>,
    /// Field of the event that names the feature entity, e.g. `data.customer_id`.
    pub entity_key: Option<String>,
    pub feature_store: Option<String>,
    #[serde(default)]
    pub on_missing_entity: MissingEntity,
    /// Model input name → list of columns, each `data.<field>` or `features.<name>`.
    pub inputs: BTreeMap<String, Vec<String>>,
    /// Result field → model output expression: `probabilities[1]`,
    /// `variable`, `argmax(probabilities)`.
    pub outputs: BTreeMap<String, String>,
    /// Event data fields copied into the result unchanged.
    #[serde(default)]
    pub passthrough: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
    /// Most events read but not yet committed; the consumer stops fetching at this bound.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Larger records are dead-lettered (stage `validate`, code
    /// `payload_too_large`). Default: 1 MiB on the embedded bus; on Kafka,
    /// `message.max.bytes` less the most a dead letter's attributes take,
    /// so the dead letter of any accepted record fits the broker too.
    pub max_payload_bytes: Option<usize>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// How often the group's position is committed. Results are emitted
    /// before their inputs are committed, so this bounds how much is
    /// redelivered after a crash, not result latency.
    #[serde(default = "default_commit_interval", with = "duration::req")]
    pub commit_interval: Duration,
    /// Input dedup: an event whose (`source`, `id`) had a result emitted
    /// within this window is acknowledged without a second result. Off by default.
    #[serde(default, with = "duration::opt")]
    pub dedup_window: Option<Duration>,
    /// `modelbus dlq replay` refuses an event already replayed this many
    /// times (a loop guard).
    #[serde(default = "default_max_replays")]
    pub max_replays: u32,
    /// Dead-letter topic (default `<topic>.dlq`).
    pub dead_letter_topic: Option<String>,
    /// Where results go; at least one.
    pub sinks: Vec<SinkConfig>,
}

fn default_in_flight() -> usize {
    4096
}
fn default_max_replays() -> u32 {
    3
}
fn default_commit_interval() -> Duration {
    Duration::from_millis(50)
}
/// The default `max_payload_bytes` on the embedded bus.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

impl WorkerConfig {
    /// The payload limit in force on `bus` (see `max_payload_bytes`).
    pub fn max_payload_bytes(&self, bus: &BusConfig) -> usize {
        self.max_payload_bytes.unwrap_or_else(|| bus.default_max_payload_bytes())
    }

    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.topic))
    }
    pub fn replay_topic(&self) -> String {
        format!("{}.replay", self.group())
    }
    pub fn result_source(&self) -> String {
        self.result_source.clone().unwrap_or_else(|| format!("modelbus/{}", self.name))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most events per inference batch.
    pub max_size: usize,
    /// Longest a partly filled batch waits for more events.
    #[serde(with = "duration::req")]
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_size: 256, max_wait: Duration::from_millis(1) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(with = "duration::req")]
    pub initial_delay: Duration,
    pub multiplier: f64,
    #[serde(with = "duration::req")]
    pub max_delay: Duration,
    /// Attempts in all, the first included; then the event is dead-lettered.
    pub max_attempts: u32,
    /// No retry is scheduled later than this after the first failure.
    #[serde(with = "duration::req")]
    pub max_horizon: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            max_attempts: 5,
            max_horizon: Duration::from_secs(300),
        }
    }
}
