//! Sinks: where results go (a topic on the bus, a webhook, or a CloudEvents
//! HTTP endpoint). A worker
//! acknowledges an input only after every sink has accepted its result.
//! Backends are an enum; a sink is opened from
//! its config and a [`SinkContext`], which holds what sinks share (the bus
//! now; HTTP clients and secrets as sinks need them), so that a new sink is
//! its own folder plus a variant here and in [`SinkConfig`].

pub(crate) mod http;
pub(crate) mod outbound;
pub(crate) mod topic;
pub(crate) mod webhook;

use std::sync::Arc;

use crate::bus::{Bus, BusError};
use crate::config::{SinkBackend, SinkConfig};
use crate::error::{Classify, ErrorClass};
use crate::event::Record;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("topic sink `{topic}`: {source}")]
    Topic { topic: String, source: BusError },
    #[error("injected {0} fault at sink.emit")]
    Injected(ErrorClass),
    /// The webhook sink's own errors, which classify themselves.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    /// The CloudEvents HTTP sink's own errors, which classify themselves.
    #[error(transparent)]
    Http(#[from] http::HttpSinkError),
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            // A sink that refuses now may accept later; the bus's own fatal
            // errors stay fatal.
            SinkError::Topic { source, .. } => match source.class() {
                ErrorClass::Fatal => ErrorClass::Fatal,
                // This one record can never be written (its size).
                _ if source.refuses_record() => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            },
            SinkError::Injected(c) => *c,
            SinkError::Webhook(e) => e.class(),
            SinkError::Http(e) => e.class(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            SinkError::Topic { source, .. } if source.refuses_record() => source.code(),
            SinkError::Topic { .. } => "sink_topic",
            SinkError::Injected(_) => "injected_fault",
            SinkError::Webhook(e) => e.code(),
            SinkError::Http(e) => e.code(),
        }
    }
}

/// What a sink may take when it opens: shared by every sink of a deployment.
#[derive(Clone)]
pub struct SinkContext {
    /// The deployment's bus (the topic sink publishes to it).
    pub bus: Arc<Bus>,
}

pub enum Sink {
    Topic(topic::TopicSink),
    Webhook(webhook::WebhookSink),
    Http(http::HttpSink),
}

impl Sink {
    /// Opens the sink `cfg` describes. Async and fallible because sinks
    /// beyond topics connect, check credentials or create what they write
    /// to before the first result; an error stops start-up, naming the sink.
    pub async fn open(cfg: &SinkConfig, cx: &SinkContext) -> Result<Sink, SinkError> {
        Ok(match &cfg.backend {
            SinkBackend::Topic(t) => Sink::Topic(topic::TopicSink::open(t, cx.bus.clone())),
            SinkBackend::Webhook(w) => Sink::Webhook(webhook::WebhookSink::open(w).await?),
            SinkBackend::Http(h) => Sink::Http(http::HttpSink::open(h).await?),
        })
    }

    /// Delivers a batch and says what became of each record, in order:
    /// `Ok(())` when it is durably accepted. The outer error fails the whole
    /// batch (retry every record); an inner one fails that record alone
    /// (a permanent one dead-letters just its input), and the others are
    /// accepted once.
    pub async fn emit(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        if let Some(class) = crate::faults::check("sink.emit") {
            return Err(SinkError::Injected(class));
        }
        if crate::faults::armed("sink.record") {
            return self.emit_with_refusals(records).await;
        }
        self.emit_to_backend(records).await
    }

    async fn emit_to_backend(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        match self {
            Sink::Topic(s) => s.emit(records).await,
            Sink::Webhook(s) => s.emit(records).await,
            Sink::Http(s) => s.emit(records).await,
        }
    }

    /// Fault injection per record (`sink.record`): the records whose check
    /// fails are refused without being sent, as a backend refuses one it
    /// cannot take; the others go to the backend.
    async fn emit_with_refusals(&self, records: Vec<Record>) -> Result<Vec<Result<(), SinkError>>, SinkError> {
        let refused: Vec<Option<ErrorClass>> = records.iter().map(|_| crate::faults::check("sink.record")).collect();
        let send = records.into_iter().zip(&refused).filter(|(_, r)| r.is_none()).map(|(rec, _)| rec).collect();
        let mut sent = self.emit_to_backend(send).await?.into_iter();
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(class) => Err(SinkError::Injected(class)),
                None => sent.next().unwrap_or(Err(SinkError::Injected(ErrorClass::Transient))),
            })
            .collect())
    }

    pub fn describe(&self) -> String {
        match self {
            Sink::Topic(s) => format!("topic:{}", s.topic()),
            Sink::Webhook(s) => format!("webhook:{}", s.url()),
            Sink::Http(s) => format!("http:{}", s.url()),
        }
    }
}
