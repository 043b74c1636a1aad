//! The event envelope: CloudEvents 1.0 attributes plus the W3C trace-context
//! extension, and its mapping to and from the raw bus [`Record`].
//!
//! The bus carries raw records (key, headers, value bytes) so that input that
//! is not even a CloudEvent still travels and can be dead-lettered intact.
//! Every bus uses the binary content mode: attributes are `ce_<name>` headers
//! and the value is the data. Structured mode (`application/cloudevents+json`)
//! is accepted on read. Ids, times and trace context are generated when an
//! event is *published*, never when it is consumed, so a redelivery cannot
//! change an event's identity.
//!
//! One concept a file: [`Record`] (`record.rs`) is what a bus carries;
//! `codec.rs` decodes a record in either content mode and writes binary
//! mode; `structured.rs` is structured mode's JSON; `attributes.rs` the
//! rules an attribute obeys in both; [`TraceParent`] (`trace.rs`) the trace
//! context; `ids.rs` the deterministic ids; `result.rs` a worker's result
//! record, written beside [`Event::to_record`] because it must match it
//! byte for byte; `headers.rs` the stored header format; [`EventError`]
//! (`error.rs`) why a record is not an event.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

mod attributes;
mod codec;
mod error;
mod headers;
mod ids;
mod record;
mod result;
mod structured;
mod trace;

pub use attributes::format_time;
pub use codec::{CE_PREFIX, JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE};
pub use error::EventError;
pub use headers::Headers;
pub use ids::{result_id, stable_id};
pub use record::{Record, INVALID_HEADER_NAME};
pub use result::{result_record, ResultProducer};
pub use trace::TraceParent;

/// A decoded CloudEvent whose data is JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub ty: String,
    /// Optional in CloudEvents: an event without it is valid.
    pub time: Option<DateTime<Utc>>,
    pub subject: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// The event's trace context; for an event that came without one, a
    /// context derived from its identity ([`TraceParent::derived`]).
    pub traceparent: TraceParent,
    /// Whether `traceparent` was derived: the producer sent none.
    pub trace_derived: bool,
    pub tracestate: Option<String>,
    /// Other extension attributes (`causationid`, `partitionkey`, `dl*`...).
    pub extensions: BTreeMap<String, String>,
    /// The bus record's key, when it had one (UTF-8): the partition key
    /// when the event names none (the Kafka binding maps them so).
    pub record_key: Option<String>,
    pub data: Value,
}

impl Event {
    /// The record key: `partitionkey`, else the key of the record it was
    /// read from, else `subject`, else `id`.
    pub fn partition_key(&self) -> &str {
        self.extensions.get("partitionkey").or(self.record_key.as_ref()).or(self.subject.as_ref()).unwrap_or(&self.id)
    }
}
