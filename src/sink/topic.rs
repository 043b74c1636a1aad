//! The topic sink: results published to a topic on the worker's bus, keyed by
//! the causing event's partition key so per-key order carries downstream.

use std::sync::Arc;

use serde::Deserialize;

use super::SinkError;
use crate::bus::Bus;
use crate::config::ConfigError;
use crate::event::Record;

/// `{ kind = "topic", topic = "..." }` (`kind` may be left out).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSinkConfig {
    /// The topic results are published to, on the worker's bus.
    pub topic: String,
}

impl TopicSinkConfig {
    /// `path` is the sink's (`workers[0].sinks[1]`); results must not go
    /// back to the worker's own input topic.
    pub(crate) fn validate(&self, path: &str, input_topic: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        if self.topic.is_empty() {
            errs.push(ConfigError { path: format!("{path}.topic"), message: "must not be empty".into() });
        }
        if self.topic == input_topic {
            errs.push(ConfigError {
                path: format!("{path}.topic"),
                message: "must differ from the input topic (a loop)".into(),
            });
        }
        errs
    }
}

pub struct TopicSink {
    bus: Arc<Bus>,
    topic: String,
}

impl TopicSink {
    pub fn open(cfg: &TopicSinkConfig, bus: Arc<Bus>) -> TopicSink {
        TopicSink { bus, topic: cfg.topic.clone() }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub async fn emit(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let err = |source| SinkError::Topic { topic: self.topic.clone(), source };
        let written = self.bus.publish_each(&self.topic, records).await.map_err(err)?;
        Ok(written.into_iter().map(|w| w.map(|_| ()).map_err(err)).collect())
    }
}
