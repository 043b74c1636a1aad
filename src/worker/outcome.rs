//! How one event of a batch ends: emitted, a duplicate, or failed at a
//! stage with a classified error. Its own file so that the plan (which
//! refuses outputs it cannot map) and the stages both use it without
//! importing each other.

use crate::dead_letter::Stage;
use crate::error::{Classify, ErrorClass};
use crate::sink::Sink;

/// How one event of a batch ended.
#[derive(Debug)]
pub enum Outcome {
    /// Its result was accepted by every sink; latency from event time, µs.
    Emitted {
        latency_us: Option<u64>,
    },
    /// Its result was emitted before, within the dedup window.
    Duplicate,
    Failed(StageError),
}

#[derive(Debug, Clone)]
pub struct StageError {
    pub stage: Stage,
    pub class: ErrorClass,
    pub code: String,
    pub reason: String,
    /// The sink that refused the result (stage `emit`), for `dlsink`.
    pub sink: Option<String>,
}

impl StageError {
    pub fn new(stage: Stage, class: ErrorClass, code: &str, reason: impl Into<String>) -> StageError {
        StageError { stage, class, code: code.into(), reason: reason.into(), sink: None }
    }
    pub(super) fn at_sink<E: Classify + std::fmt::Display>(e: &E, sink: &Sink) -> StageError {
        StageError { sink: Some(sink.describe()), ..StageError::from(Stage::Emit, e) }
    }
    pub(super) fn from<E: Classify + std::fmt::Display>(stage: Stage, e: &E) -> StageError {
        StageError::new(stage, e.class(), e.code(), e.to_string())
    }
}
