//! The sections that select a backend by `kind`: the bus, a feature store,
//! a sink. Each backend's settings are its own struct, in its own folder;
//! a new backend is one line in one of these enums (see [`super::sealed`]).
//!
//! The file format does not depend on this: the bus keeps each backend's
//! settings in its own table (`[bus.kafka]`), a store or sink keeps them
//! beside `kind` in its table.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::sealed::{backends, take_kind, Nested};
use super::{BreakerConfig, ConfigError, FeatureValue};
use crate::bus::embedded::EmbeddedBusConfig;
use crate::bus::kafka::KafkaBusConfig;
use crate::features::embedded::EmbeddedStoreConfig;
use crate::sink::http::HttpSinkConfig;
use crate::sink::topic::TopicSinkConfig;
use crate::sink::webhook::WebhookSinkConfig;

backends! {
    /// `[bus]`: `kind` selects the backend, whose settings are the table of
    /// its name (`[bus.kafka]`). Tables of other backends are ignored, with
    /// a warning.
    pub enum BusConfig {
        /// Durable, on one host, in `data_dir` (SQLite in WAL mode).
        Embedded(EmbeddedBusConfig) = "embedded",
        /// A Kafka-protocol cluster.
        Kafka(KafkaBusConfig) = "kafka",
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig::Embedded(EmbeddedBusConfig::default())
    }
}

impl<'de> Deserialize<'de> for BusConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let kind = take_kind(&mut table, "embedded", Self::KINDS)?;
        let settings = table.remove(&kind).unwrap_or_else(|| toml::Table::new().into());
        if let Some(key) = table.keys().find(|k| !Self::KINDS.contains(&k.as_str())) {
            let mut known = vec!["kind"];
            known.extend(Self::KINDS);
            let message = format!("unknown key `{key}`; known keys: {}", known.join(", "));
            return Err(Nested { path: key.clone(), message }.into_de(""));
        }
        Self::from_kind(&kind, settings, &[]).map_err(|e| e.into_de(&kind))
    }
}

impl BusConfig {
    /// Tables in `[bus]` of backends that `kind` did not select: they are
    /// ignored, which a user should know (a Kafka config that still
    /// carries `[bus.embedded]` settings expecting them to apply).
    pub(super) fn unselected(doc: &toml::Value) -> Vec<ConfigError> {
        let Some(bus) = doc.get("bus").and_then(toml::Value::as_table) else { return Vec::new() };
        let kind = bus.get("kind").and_then(toml::Value::as_str).unwrap_or("embedded");
        Self::KINDS
            .iter()
            .filter(|k| **k != kind && bus.contains_key(**k))
            .map(|k| ConfigError {
                path: format!("bus.{k}"),
                message: format!("ignored: `bus.kind` is `{kind}`, so these settings do not apply"),
            })
            .collect()
    }

    /// The largest record ([`crate::event::Record::size`]) this bus accepts.
    pub fn max_record_bytes(&self) -> usize {
        match self {
            BusConfig::Embedded(_) => crate::bus::embedded::MAX_RECORD_BYTES,
            BusConfig::Kafka(k) => k.max_record_bytes(),
        }
    }

    /// What limits a record's size on this bus, for messages.
    pub fn record_limit_reason(&self) -> String {
        match self {
            BusConfig::Embedded(_) => "the embedded bus's record limit".to_string(),
            BusConfig::Kafka(k) => format!("message.max.bytes ({}) less framing", k.message_max_bytes()),
        }
    }

    /// The default `max_payload_bytes` of workers on this bus.
    pub fn default_max_payload_bytes(&self) -> usize {
        match self {
            BusConfig::Embedded(_) => super::DEFAULT_MAX_PAYLOAD_BYTES,
            // The dead letter of any accepted record must fit the broker too.
            BusConfig::Kafka(k) => k.max_record_bytes().saturating_sub(crate::dead_letter::MAX_HEADER_BYTES),
        }
    }

    /// Checks of the chosen backend's settings that serde cannot express.
    pub(super) fn validate(&self) -> Vec<ConfigError> {
        match self {
            BusConfig::Embedded(e) => e.validate("bus.embedded"),
            BusConfig::Kafka(k) => k.validate("bus.kafka"),
        }
    }
}

backends! {
    /// The backend of a feature store, selected by its `kind`.
    pub enum FeatureStoreBackend {
        /// A table per store in `data_dir/features.sqlite`, loaded from CSV.
        Embedded(EmbeddedStoreConfig) = "embedded",
    }
}

/// `[feature_stores.<name>]`: `kind` (default `embedded`), the keys every
/// store has, and its backend's own.
#[derive(Debug, Clone)]
pub struct FeatureStoreConfig {
    /// Values used for a missing entity under `on_missing_entity = "defaults"`.
    pub defaults: BTreeMap<String, FeatureValue>,
    /// Entities kept in memory after a lookup (0: none). The cache is
    /// dropped whenever the store's data changes, so it is never stale.
    pub cache_entries: usize,
    /// About how much memory the cache may take, keys and rows together
    /// (default 64 MiB); when full it starts over.
    pub cache_bytes: usize,
    /// When lookups fail for every event, stop consuming instead of
    /// dead-lettering the backlog (see `worker::breaker`).
    pub breaker: BreakerConfig,
    pub backend: FeatureStoreBackend,
}

/// The keys of [`FeatureStoreConfig`] besides `kind` and the backend's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreCommon {
    #[serde(default)]
    defaults: BTreeMap<String, FeatureValue>,
    #[serde(default = "default_cache_entries")]
    cache_entries: usize,
    #[serde(default = "default_cache_bytes")]
    cache_bytes: usize,
    #[serde(default)]
    breaker: BreakerConfig,
}

const STORE_COMMON: &[&str] = &["defaults", "cache_entries", "cache_bytes", "breaker"];
/// Every key of a store's table besides its backend's.
const STORE_KEYS: &[&str] = &["kind", "defaults", "cache_entries", "cache_bytes", "breaker"];

fn default_cache_bytes() -> usize {
    64 << 20
}

fn default_cache_entries() -> usize {
    100_000
}

impl<'de> Deserialize<'de> for FeatureStoreConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut own = toml::Table::deserialize(d)?;
        let kind = take_kind(&mut own, "embedded", FeatureStoreBackend::KINDS)?;
        let mut common = toml::Table::new();
        for key in STORE_COMMON {
            if let Some(v) = own.remove(*key) {
                common.insert(key.to_string(), v);
            }
        }
        let common: StoreCommon = super::sealed::parse(common.into()).map_err(|e| e.into_de(""))?;
        let backend = FeatureStoreBackend::from_kind(&kind, own.into(), STORE_KEYS).map_err(|e| e.into_de(""))?;
        Ok(FeatureStoreConfig {
            defaults: common.defaults,
            cache_entries: common.cache_entries,
            cache_bytes: common.cache_bytes,
            breaker: common.breaker,
            backend,
        })
    }
}

backends! {
    /// The backend of a sink, selected by its `kind`.
    pub enum SinkBackend {
        /// A topic on the configured bus.
        Topic(TopicSinkConfig) = "topic",
        /// An HTTP endpoint, each result POSTed and signed (Standard Webhooks).
        Webhook(WebhookSinkConfig) = "webhook",
        /// An HTTP endpoint taking CloudEvents (HTTP binding 1.0: binary,
        /// structured or batch).
        Http(HttpSinkConfig) = "http",
    }
}

/// A worker's sink, `{ kind = "...", ... }` (default kind `topic`): where
/// results go. Besides its backend's keys it may have a `breaker`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub breaker: BreakerConfig,
    pub backend: SinkBackend,
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut own = toml::Table::deserialize(d)?;
        let kind = take_kind(&mut own, "topic", SinkBackend::KINDS)?;
        let breaker = match own.remove("breaker") {
            Some(b) => super::sealed::parse(b).map_err(|e| e.into_de("breaker"))?,
            None => BreakerConfig::default(),
        };
        let backend = SinkBackend::from_kind(&kind, own.into(), &["kind", "breaker"]).map_err(|e| e.into_de(""))?;
        Ok(SinkConfig { breaker, backend })
    }
}

impl SinkConfig {
    /// Checks of this sink's settings for a worker whose input is
    /// `input_topic` (a sink must not feed the worker its own results).
    /// `path` is the sink's.
    pub(super) fn validate(&self, path: &str, input_topic: &str) -> Vec<ConfigError> {
        let mut errs = self.breaker.validate(&format!("{path}.breaker"));
        errs.extend(match &self.backend {
            SinkBackend::Topic(t) => t.validate(path, input_topic),
            SinkBackend::Webhook(w) => w.validate(path, input_topic),
            SinkBackend::Http(h) => h.validate(path, input_topic),
        });
        errs
    }
}
