//! The topic sink: results published to a topic on the worker's bus, keyed by
//! the causing event's partition key so per-key order carries downstream.

use std::sync::Arc;

use super::SinkError;
use crate::bus::Bus;
use crate::event::Record;

pub struct TopicSink {
    bus: Arc<Bus>,
    topic: String,
}

impl TopicSink {
    pub fn new(bus: Arc<Bus>, topic: String) -> TopicSink {
        TopicSink { bus, topic }
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
