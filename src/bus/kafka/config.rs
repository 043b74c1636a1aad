//! `[bus.kafka]`: the Kafka backend's settings, their checks, and the
//! record size limit they imply.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{duration, ConfigError};
use crate::dead_letter::MAX_HEADER_BYTES;

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

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// What librdkafka counts in a message besides the [`crate::event::Record::size`]
/// bytes: a varint length before each header name and value, and room to spare.
const RECORD_FRAMING: usize = 1024;

impl KafkaBusConfig {
    /// The producer's `message.max.bytes` (librdkafka refuses a larger
    /// message before it is sent, with `MSG_SIZE_TOO_LARGE`).
    pub fn message_max_bytes(&self) -> usize {
        self.producer_properties
            .get("message.max.bytes")
            .or_else(|| self.properties.get("message.max.bytes"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }

    /// The largest [`crate::event::Record::size`] a producer of this config sends.
    pub fn max_record_bytes(&self) -> usize {
        self.message_max_bytes().saturating_sub(RECORD_FRAMING)
    }

    /// Checks serde cannot express; `path` is this table's (`bus.kafka`).
    pub(crate) fn validate(&self, path: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: String, message: String| errs.push(ConfigError { path: format!("{path}.{key}"), message });
        if self.brokers.trim().is_empty() {
            err("brokers".into(), "must name at least one `host:port`".into());
        }
        if self.partitions == 0 {
            err("partitions".into(), "must be at least 1".into());
        }
        if self.replication_factor == 0 {
            err("replication_factor".into(), "must be at least 1".into());
        }
        for (name, d) in [("session_timeout", self.session_timeout), ("request_timeout", self.request_timeout)] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                err(name.into(), "must be between 1ms and 1h (librdkafka's range)".into());
            }
        }
        if self.max_record_bytes() <= MAX_HEADER_BYTES {
            err(
                "properties.\"message.max.bytes\"".into(),
                format!(
                    "must be well above {} bytes: a dead letter's attributes alone take up to {MAX_HEADER_BYTES}",
                    MAX_HEADER_BYTES + 1024
                ),
            );
        }
        let tables = [
            ("properties", &self.properties),
            ("producer_properties", &self.producer_properties),
            ("consumer_properties", &self.consumer_properties),
        ];
        for (table, props) in tables {
            for key in props.keys() {
                if super::OWNED_PROPERTIES.contains(&key.as_str()) {
                    err(
                        format!("{table}.\"{key}\""),
                        "modelbus sets this itself: its delivery guarantees depend on it".into(),
                    );
                }
            }
        }
        errs
    }
}
