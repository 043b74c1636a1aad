//! Sinks: where results go. A worker acknowledges an input only after every
//! sink has accepted its result. Backends are an enum.

pub mod topic;

use std::sync::Arc;

use crate::bus::{Bus, BusError};
use crate::config::{SinkConfig, SinkKind};
use crate::error::{Classify, ErrorClass};
use crate::event::Record;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("topic sink `{topic}`: {source}")]
    Topic { topic: String, source: BusError },
    #[error("injected {0} fault at sink.emit")]
    Injected(ErrorClass),
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            // A sink that refuses now may accept later; the bus's own fatal
            // errors stay fatal.
            SinkError::Topic { source, .. } => match source.class() {
                ErrorClass::Fatal => ErrorClass::Fatal,
                _ => ErrorClass::Transient,
            },
            SinkError::Injected(c) => *c,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            SinkError::Topic { .. } => "sink_topic",
            SinkError::Injected(_) => "injected_fault",
        }
    }
}

pub enum Sink {
    Topic(topic::TopicSink),
}

impl Sink {
    pub fn new(cfg: &SinkConfig, bus: Arc<Bus>) -> Sink {
        match cfg.kind {
            SinkKind::Topic => Sink::Topic(topic::TopicSink::new(bus, cfg.topic.clone())),
        }
    }

    /// Delivers a batch; `Ok` means every record is durably accepted.
    pub async fn emit(&self, records: Vec<Record>) -> Result<(), SinkError> {
        if let Some(class) = crate::faults::check("sink.emit") {
            return Err(SinkError::Injected(class));
        }
        match self {
            Sink::Topic(s) => s.emit(records).await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Topic(s) => format!("topic:{}", s.topic()),
        }
    }
}
