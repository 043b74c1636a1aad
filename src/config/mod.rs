//! The TOML configuration tree. One file declares the bus, the schema
//! directory, feature stores, models and workers. Every struct refuses unknown
//! keys; every error names its path (`workers[0].batch.max_wait`). Relative
//! paths resolve against the config file's directory, and any string may say
//! `${ENV_VAR}` so that secrets stay out of the file.
//!
//! Parsing and error collection live in [`load`], cross-field checks in
//! [`validate`]; this file is the tree itself, and its doc comments are the
//! user documentation of each key.

mod duration;
mod load;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_schemas() -> PathBuf {
    "schemas".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// Durable, on one host, in `data_dir` (SQLite in WAL mode).
    #[default]
    Embedded,
    /// A Kafka-protocol cluster (`[bus.kafka]`).
    Kafka,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    #[serde(default)]
    pub kind: BusKind,
    #[serde(default)]
    pub embedded: EmbeddedBusConfig,
    #[serde(default)]
    pub kafka: KafkaBusConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaBusConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Partitions of topics modelbus creates.
    pub partitions: u32,
    pub replication_factor: u32,
    /// Create missing topics. When false, a missing topic refuses start-up, naming it.
    pub create_topics: bool,
    /// `session.timeout.ms` of worker consumers: how long a dead member
    /// keeps its partitions before the group rebalances.
    #[serde(with = "duration::req")]
    pub session_timeout: Duration,
    /// How long a publish waits for the broker's acknowledgement.
    #[serde(with = "duration::req")]
    pub request_timeout: Duration,
    /// librdkafka properties passed through unchanged to every client (TLS,
    /// SASL, ...). Values may use `${ENV}`.
    pub properties: BTreeMap<String, String>,
    /// Passed only to producers (`compression.type`, `linger.ms`, ...).
    pub producer_properties: BTreeMap<String, String>,
    /// Passed only to consumers (`fetch.wait.max.ms`, `session.timeout.ms`, ...).
    pub consumer_properties: BTreeMap<String, String>,
}

impl Default for KafkaBusConfig {
    fn default() -> Self {
        KafkaBusConfig {
            brokers: "127.0.0.1:9092".into(),
            partitions: 4,
            replication_factor: 1,
            create_topics: true,
            session_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }
}

/// The worker's HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `"0.0.0.0:9464"`; absent → no endpoint.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBusConfig {
    /// Partitions of topics created on first use.
    pub partitions: u32,
    /// Records older than this are deleted (dead-letter topics are exempt).
    #[serde(with = "duration::opt")]
    pub retention_age: Option<Duration>,
    /// At most this many records are kept per partition (dead letters exempt).
    pub retention_records: Option<u64>,
    /// A member that has not heartbeated for this long is presumed dead and
    /// its partitions are taken over.
    #[serde(with = "duration::req")]
    pub session_timeout: Duration,
    #[serde(with = "duration::req")]
    pub heartbeat_interval: Duration,
    /// How often an idle consumer looks for new records written by another
    /// process when nothing woke it. On Linux a write by any process wakes
    /// it at once (an inotify watch on the WAL, see `bus::embedded::wake`),
    /// so this is only the fallback.
    #[serde(with = "duration::req")]
    pub poll_interval: Duration,
    /// `normal` survives a process crash (kill -9); `full` also survives
    /// power loss at the cost of an fsync per commit.
    pub sync: SyncMode,
}

impl Default for EmbeddedBusConfig {
    fn default() -> Self {
        EmbeddedBusConfig {
            partitions: 4,
            retention_age: None,
            retention_records: None,
            session_timeout: Duration::from_secs(6),
            heartbeat_interval: Duration::from_millis(500),
            poll_interval: Duration::from_millis(50),
            sync: SyncMode::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FeatureStoreKind {
    /// A table per store in `data_dir/features.sqlite`, loaded from CSV.
    #[default]
    Embedded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureStoreConfig {
    #[serde(default)]
    pub kind: FeatureStoreKind,
    /// Values used for a missing entity under `on_missing_entity = "defaults"`.
    #[serde(default)]
    pub defaults: BTreeMap<String, FeatureValue>,
    /// Entities kept in memory after a lookup (0: none). The cache is
    /// dropped whenever the store's data changes, so it is never stale.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// About how much memory the cache may take, keys and rows together
    /// (default 64 MiB); when full it starts over.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: usize,
}

fn default_cache_bytes() -> usize {
    64 << 20
}

fn default_cache_entries() -> usize {
    100_000
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
        self.max_payload_bytes.unwrap_or_else(|| match bus.kind {
            BusKind::Embedded => DEFAULT_MAX_PAYLOAD_BYTES,
            BusKind::Kafka => bus.kafka.max_record_bytes().saturating_sub(crate::dead_letter::MAX_HEADER_BYTES),
        })
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

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// A topic on the configured bus.
    #[default]
    Topic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(default)]
    pub kind: SinkKind,
    pub topic: String,
}
