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

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Classify, ErrorClass};

mod headers;
pub use headers::Headers;

/// Header prefix of CloudEvents attributes in binary content mode.
pub const CE_PREFIX: &str = "ce_";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Added by a bus reader for each header whose name was not UTF-8 (Kafka
/// allows any bytes): the name was repaired lossily, and this header holds
/// the original name's bytes in hex. Decoding refuses such a record
/// (`invalid_header_name`), so it is dead-lettered with this trace of it.
pub const INVALID_HEADER_NAME: &str = "modelbus-invalid-header-name";

/// One raw record as every bus carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub headers: Headers,
    pub value: Vec<u8>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Sets a header, replacing any earlier value of the same name.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.headers.set(name, value.as_ref());
    }

    /// Approximate size in bytes, for payload limits.
    pub fn size(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, |k| k.len()) + self.headers.byte_len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("missing required CloudEvents attribute `{0}`")]
    MissingAttribute(&'static str),
    #[error("unsupported specversion `{0}` (expected 1.0)")]
    SpecVersion(String),
    #[error("attribute `{name}` is invalid: {reason}")]
    InvalidAttribute { name: String, reason: String },
    #[error("data is not valid JSON: {0}")]
    DataNotJson(String),
    #[error("structured-mode event is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("a header name is not UTF-8 (its bytes in hex: {0}); it was repaired to read the record")]
    InvalidHeaderName(String),
}

impl Classify for EventError {
    fn class(&self) -> ErrorClass {
        // Decoding is deterministic: the same bytes fail the same way forever.
        ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        match self {
            EventError::MissingAttribute(_) => "missing_attribute",
            EventError::SpecVersion(_) => "bad_specversion",
            EventError::InvalidAttribute { .. } => "invalid_attribute",
            EventError::DataNotJson(_) => "malformed_json",
            EventError::NotAnObject(_) => "malformed_json",
            EventError::InvalidHeaderName(_) => "invalid_header_name",
        }
    }
}

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
    /// Builds an event from a structured-mode JSON object, filling in `id`,
    /// `time` and `traceparent` when the producer omitted them. This is the
    /// publish path: the only place identities are generated.
    pub fn from_structured_for_publish(obj: Value) -> Result<Event, EventError> {
        let Value::Object(mut map) = obj else {
            return Err(EventError::NotAnObject("expected a JSON object".into()));
        };
        if !map.contains_key("id") {
            map.insert("id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
        }
        if !map.contains_key("time") {
            map.insert("time".into(), Value::String(format_time(Utc::now())));
        }
        if !map.contains_key("traceparent") {
            map.insert("traceparent".into(), Value::String(TraceParent::generate().to_string()));
        }
        map.entry("specversion").or_insert(Value::String("1.0".into()));
        Self::from_structured(map)
    }

    /// Parses a complete structured-mode event; nothing is generated.
    pub fn from_structured(mut map: Map<String, Value>) -> Result<Event, EventError> {
        let mut take = |name: &'static str| -> Result<Option<String>, EventError> {
            match map.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(EventError::InvalidAttribute {
                    name: name.into(),
                    reason: format!("expected a string, got {other}"),
                }),
            }
        };
        let id = take("id")?.ok_or(EventError::MissingAttribute("id"))?;
        let source = take("source")?.ok_or(EventError::MissingAttribute("source"))?;
        let ty = take("type")?.ok_or(EventError::MissingAttribute("type"))?;
        let spec = take("specversion")?.ok_or(EventError::MissingAttribute("specversion"))?;
        let time = take("time")?;
        let traceparent = take("traceparent")?;
        let subject = take("subject")?;
        let datacontenttype = take("datacontenttype")?;
        let dataschema = take("dataschema")?;
        let tracestate = take("tracestate")?;
        let data = map.remove("data").unwrap_or(Value::Null);
        let mut extensions = BTreeMap::new();
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            check_extension_name(&k)?;
            extensions.insert(k, v);
        }
        check_spec(&spec)?;
        check_datacontenttype(datacontenttype.as_deref())?;
        let (id, source) = (nonempty("id", id)?, nonempty("source", source)?);
        let (traceparent, trace_derived) = match traceparent {
            Some(t) => (t.parse()?, false),
            None => (TraceParent::derived(&source, &id), true),
        };
        Ok(Event {
            time: time.as_deref().map(parse_time).transpose()?,
            traceparent,
            trace_derived,
            id,
            source,
            ty: nonempty("type", ty)?,
            subject,
            datacontenttype,
            dataschema,
            tracestate,
            extensions,
            record_key: None,
            data,
        })
    }

    /// Structured-mode JSON, for `tail` and the HTTP binding.
    pub fn to_structured(&self) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), "1.0".into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("type".into(), self.ty.clone().into());
        if let Some(t) = self.time {
            m.insert("time".into(), format_time(t).into());
        }
        if let Some(s) = &self.subject {
            m.insert("subject".into(), s.clone().into());
        }
        if let Some(s) = &self.datacontenttype {
            m.insert("datacontenttype".into(), s.clone().into());
        }
        if let Some(s) = &self.dataschema {
            m.insert("dataschema".into(), s.clone().into());
        }
        m.insert("traceparent".into(), self.traceparent.to_string().into());
        if let Some(s) = &self.tracestate {
            m.insert("tracestate".into(), s.clone().into());
        }
        for (k, v) in &self.extensions {
            m.insert(k.clone(), v.clone().into());
        }
        m.insert("data".into(), self.data.clone());
        Value::Object(m)
    }

    /// The record key: `partitionkey`, else the key of the record it was
    /// read from, else `subject`, else `id`.
    pub fn partition_key(&self) -> &str {
        self.extensions.get("partitionkey").or(self.record_key.as_ref()).or(self.subject.as_ref()).unwrap_or(&self.id)
    }

    /// Binary content mode: attributes as `ce_*` headers, value = data.
    pub fn to_record(&self) -> Record {
        let mut headers = Headers::with_capacity(512);
        let mut name_buf = String::with_capacity(32);
        let mut h = |name: &str, value: &str| {
            name_buf.clear();
            name_buf.push_str(CE_PREFIX);
            name_buf.push_str(name);
            headers.push(&name_buf, value.as_bytes());
        };
        h("specversion", "1.0");
        h("id", &self.id);
        h("source", &self.source);
        h("type", &self.ty);
        if let Some(t) = self.time {
            h("time", &format_time(t));
        }
        if let Some(s) = &self.subject {
            h("subject", s);
        }
        if let Some(s) = &self.dataschema {
            h("dataschema", s);
        }
        h("traceparent", &self.traceparent.to_string());
        if let Some(s) = &self.tracestate {
            h("tracestate", s);
        }
        for (k, v) in &self.extensions {
            h(k, v);
        }
        let ct = self.datacontenttype.as_deref().unwrap_or(JSON_CONTENT_TYPE);
        headers.push("content-type", ct.as_bytes());
        Record {
            key: Some(self.partition_key().as_bytes().to_vec()),
            headers,
            value: serde_json::to_vec(&self.data).expect("serde_json::Value always serialises"),
        }
    }

    /// A structured-mode record: its value is the whole event as JSON.
    fn from_structured_record(rec: &Record) -> Result<Event, EventError> {
        let v: Value = serde_json::from_slice(&rec.value).map_err(|e| EventError::DataNotJson(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(EventError::NotAnObject("structured event must be an object".into()));
        };
        let mut e = Self::from_structured(map)?;
        e.record_key = record_key(rec);
        Ok(e)
    }

    /// Decodes a record in binary or structured mode.
    ///
    /// Binary mode, straight from the headers: this runs for every event a
    /// worker reads, so it builds no intermediate JSON map and walks the
    /// headers once, `content-type` included (a structured-mode record is
    /// handed to [`Event::from_structured`] after the walk, so an odd `ce_`
    /// header on it is not an error). Semantics match
    /// [`Event::from_structured`]: a later duplicate header wins, and the
    /// `content-type` header is the data content type.
    pub fn from_record(rec: &Record) -> Result<Event, EventError> {
        let (mut id, mut source, mut ty, mut spec, mut time, mut traceparent) = (None, None, None, None, None, None);
        let (mut subject, mut dct, mut dataschema, mut tracestate, mut ct) = (None, None, None, None, None);
        let mut extensions = BTreeMap::new();
        let mut bad = None;
        let mut any_ce = false;
        // One pass over the whole buffer instead of a UTF-8 check per value.
        let ascii = rec.headers.as_bytes().is_ascii();
        for (k, v) in rec.headers.iter() {
            if k == "content-type" {
                // The first one counts, as with `Record::header`.
                ct = ct.or_else(|| std::str::from_utf8(v).ok());
                continue;
            }
            let Some(name) = k.strip_prefix(CE_PREFIX).inspect(|_| any_ce = true) else {
                if k == INVALID_HEADER_NAME {
                    let original = String::from_utf8_lossy(v).into_owned();
                    bad = Some(EventError::InvalidHeaderName(original));
                }
                continue;
            };
            let v = if ascii {
                // SAFETY: `v` is part of a buffer that is all ASCII, so it is UTF-8.
                unsafe { std::str::from_utf8_unchecked(v) }
            } else {
                match std::str::from_utf8(v) {
                    Ok(v) => v,
                    Err(_) => {
                        let reason = "not UTF-8".into();
                        bad.get_or_insert(EventError::InvalidAttribute { name: name.into(), reason });
                        continue;
                    }
                }
            };
            match name {
                "id" => id = Some(v),
                "source" => source = Some(v),
                "type" => ty = Some(v),
                "specversion" => spec = Some(v),
                "time" => time = Some(v),
                "traceparent" => traceparent = Some(v),
                "subject" => subject = Some(v),
                "datacontenttype" => dct = Some(v),
                "dataschema" => dataschema = Some(v),
                "tracestate" => tracestate = Some(v),
                "data" => {}
                _ => match check_extension_name(name) {
                    Ok(()) => {
                        extensions.insert(name.to_string(), v.to_string());
                    }
                    Err(e) => {
                        bad.get_or_insert(e);
                    }
                },
            }
        }
        if let Some(e @ EventError::InvalidHeaderName(_)) = bad {
            return Err(e);
        }
        // The content mode, as the Kafka binding decides it, and as real
        // producers send it: a `content-type` of `application/cloudevents…`
        // is structured; else `ce_specversion` present is binary; else a
        // value that is a JSON object with `specversion`, on a record with
        // no `ce_` header at all, is structured too (the Python SDK 2.x
        // labels structured events `application/json`; some producers send
        // no content type).
        if ct.is_some_and(|c| c.starts_with(STRUCTURED_CONTENT_TYPE)) {
            return Self::from_structured_record(rec);
        }
        if spec.is_none() && !any_ce && looks_structured(&rec.value) {
            return Self::from_structured_record(rec);
        }
        if let Some(e) = bad {
            return Err(e);
        }
        let id = id.ok_or(EventError::MissingAttribute("id"))?;
        let source = source.ok_or(EventError::MissingAttribute("source"))?;
        let ty = ty.ok_or(EventError::MissingAttribute("type"))?;
        check_spec(spec.ok_or(EventError::MissingAttribute("specversion"))?)?;
        check_datacontenttype(ct.or(dct))?;
        let data = if rec.value.is_empty() {
            Value::Null
        } else {
            // UTF-8 checked once for the whole value: serde_json's `from_slice`
            // checks every string separately, which cost more.
            let text =
                std::str::from_utf8(&rec.value).map_err(|e| EventError::DataNotJson(format!("not UTF-8: {e}")))?;
            serde_json::from_str(text).map_err(|e| EventError::DataNotJson(e.to_string()))?
        };
        let (id, source) = (nonempty("id", id.to_string())?, nonempty("source", source.to_string())?);
        let (traceparent, trace_derived) = match traceparent {
            Some(t) => (t.parse()?, false),
            None => (TraceParent::derived(&source, &id), true),
        };
        Ok(Event {
            time: time.map(parse_time).transpose()?,
            traceparent,
            trace_derived,
            id,
            source,
            ty: nonempty("type", ty.to_string())?,
            subject: subject.map(str::to_string),
            datacontenttype: ct.or(dct).map(str::to_string),
            dataschema: dataschema.map(str::to_string),
            tracestate: tracestate.map(str::to_string),
            // Only when the event names no partition key: the usual event
            // (ours) carries `ce_partitionkey` or a subject equal to its key.
            record_key: if extensions.contains_key("partitionkey") { None } else { record_key(rec) },
            extensions,
            data,
        })
    }
}

/// A record's key as text, when it has a non-empty UTF-8 one.
fn record_key(rec: &Record) -> Option<String> {
    rec.key.as_deref().filter(|k| !k.is_empty()).and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string)
}

/// Whether a value is, at a glance, a structured-mode CloudEvent: a JSON
/// object with a `specversion` member. Only asked of records without any
/// `ce_` header, so binary-mode events never pay for it.
fn looks_structured(value: &[u8]) -> bool {
    let trimmed = value.trim_ascii_start();
    trimmed.first() == Some(&b'{')
        && serde_json::from_slice::<Map<String, Value>>(value).is_ok_and(|m| m.contains_key("specversion"))
}

fn nonempty(name: &'static str, v: String) -> Result<String, EventError> {
    if v.is_empty() {
        return Err(EventError::InvalidAttribute { name: name.into(), reason: "must not be empty".into() });
    }
    Ok(v)
}

fn check_spec(spec: &str) -> Result<(), EventError> {
    if spec == "1.0" {
        Ok(())
    } else {
        Err(EventError::SpecVersion(spec.into()))
    }
}

/// CloudEvents: extension names are lowercase ASCII letters or digits.
fn check_extension_name(name: &str) -> Result<(), EventError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(EventError::InvalidAttribute {
            name: name.into(),
            reason: "extension names must be lowercase letters and digits".into(),
        })
    }
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, EventError> {
    use chrono::Datelike;
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| EventError::InvalidAttribute { name: "time".into(), reason: e.to_string() })?;
    // RFC 3339 has four-digit years: a time whose offset moves it past
    // 9999 or before 0000 in UTC could not be written back (fuzzing found
    // `9999-12-31T23:59:59-23:59`).
    if !(0..=9999).contains(&t.year()) {
        return Err(EventError::InvalidAttribute {
            name: "time".into(),
            reason: format!("`{s}` is outside years 0000-9999 in UTC"),
        });
    }
    Ok(t)
}

/// A data content type that names a CloudEvents format is structured
/// mode's own: written back as `content-type`, it would make the event's
/// data be read as a whole event (fuzzing found it).
fn check_datacontenttype(dct: Option<&str>) -> Result<(), EventError> {
    match dct {
        Some(d) if d.trim_start().to_ascii_lowercase().starts_with("application/cloudevents") => {
            Err(EventError::InvalidAttribute {
                name: "datacontenttype".into(),
                reason: format!("`{d}` is a CloudEvents format, not a type of data"),
            })
        }
        _ => Ok(()),
    }
}

/// W3C Trace Context `traceparent`: version 00, trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    pub fn generate() -> TraceParent {
        let trace_id = *uuid::Uuid::new_v4().as_bytes();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        TraceParent { trace_id, span_id, flags: 1 }
    }

    /// The trace context of an event that came without one: a trace id
    /// and span id derived from its identity (`source`, `id`), so that a
    /// redelivery yields the same trace, and so the same result
    /// `traceparent`. Sampled, like a generated one.
    pub fn derived(source: &str, id: &str) -> TraceParent {
        let mut h = Sha256::new();
        for p in ["modelbus-trace", source, id] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let d = h.finalize();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(&d[..16]);
        span_id.copy_from_slice(&d[16..24]);
        // All-zero ids are invalid; a hash all zero in 8 bytes is as good as never.
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        TraceParent { trace_id, span_id, flags: 1 }
    }

    /// Same trace, a new span derived from `seed`, so that a redelivered input
    /// yields a byte-identical result.
    pub fn child(&self, seed: &[u8]) -> TraceParent {
        let digest = Sha256::digest(seed);
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&digest[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        TraceParent { trace_id: self.trace_id, span_id, flags: self.flags }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The header value, `00-<trace id>-<span id>-<flags>`, built on the
    /// stack: this runs for every result, and going through `format!` cost
    /// more than the rest of the header put together.
    pub fn encode(&self) -> [u8; 55] {
        let mut b = [b'-'; 55];
        b[..2].copy_from_slice(b"00");
        // The slices are exactly twice the input's length, so these cannot fail.
        let _ = hex::encode_to_slice(self.trace_id, &mut b[3..35]);
        let _ = hex::encode_to_slice(self.span_id, &mut b[36..52]);
        let _ = hex::encode_to_slice([self.flags], &mut b[53..55]);
        b
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.encode()).unwrap_or_default())
    }
}

impl std::str::FromStr for TraceParent {
    type Err = EventError;
    fn from_str(s: &str) -> Result<Self, EventError> {
        let bad = |reason: &str| EventError::InvalidAttribute { name: "traceparent".into(), reason: reason.into() };
        let s = s.trim();
        let b = s.as_bytes();
        // The usual, exact form by position (this runs for every event read);
        // anything else (a later version's extra fields) by splitting.
        let (version, trace, span, fl) = if b.len() == 55 && b[2] == b'-' && b[35] == b'-' && b[52] == b'-' {
            (&s[..2], &s[3..35], &s[36..52], &s[53..])
        } else {
            let mut it = s.split('-');
            let (Some(version), Some(trace), Some(span), Some(fl)) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad("expected 00-<32 hex>-<16 hex>-<2 hex>"));
            };
            (version, trace, span, fl)
        };
        if version.len() != 2 || version == "ff" {
            return Err(bad("expected 00-<32 hex>-<16 hex>-<2 hex>"));
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flags = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).map_err(|_| bad("trace id must be 32 hex digits"))?;
        hex::decode_to_slice(span, &mut span_id).map_err(|_| bad("span id must be 16 hex digits"))?;
        hex::decode_to_slice(fl, &mut flags).map_err(|_| bad("flags must be 2 hex digits"))?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(bad("all-zero ids are invalid"));
        }
        Ok(TraceParent { trace_id, span_id, flags: flags[0] })
    }
}

/// Deterministic id of the result of `cause` produced by `worker` with
/// `model_version`: a redelivered input yields the same result id.
pub fn result_id(cause_source: &str, cause_id: &str, worker: &str, model_version: &str) -> String {
    stable_id(&[cause_source, cause_id, worker, model_version])
}

/// A hash of length-prefixed parts, formatted as a UUID-shaped string.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // Mark it as a version-8 (custom) UUID so it is a well-formed UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    // Encoded into a stack buffer: `to_string` goes through the formatter.
    uuid::Uuid::from_bytes(b).hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn publish_fills_identity_and_roundtrips_binary_mode() {
        let e = Event::from_structured_for_publish(json!({
            "type": "ClaimCreated", "source": "/t", "subject": "C1", "data": {"a": 1}
        }))
        .unwrap();
        assert!(!e.id.is_empty());
        let rec = e.to_record();
        assert_eq!(rec.key.as_deref(), Some(&b"C1"[..]));
        assert_eq!(rec.header_str("ce_type"), Some("ClaimCreated"));
        let back = Event::from_record(&rec).unwrap();
        assert_eq!(back.id, e.id);
        assert_eq!(back.traceparent, e.traceparent);
        assert_eq!(back.data, json!({"a": 1}));
    }

    #[test]
    fn structured_mode_is_read() {
        let body = json!({"specversion":"1.0","id":"1","source":"/s","type":"T",
            "time":"2026-01-01T00:00:00Z",
            "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"x":2}});
        let rec = Record {
            key: None,
            headers: Headers::from_pairs([("content-type", STRUCTURED_CONTENT_TYPE)]),
            value: serde_json::to_vec(&body).unwrap(),
        };
        let e = Event::from_record(&rec).unwrap();
        assert_eq!(e.data, json!({"x": 2}));
        assert_eq!(e.traceparent.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn one_header_walk_keeps_the_decoding_rules() {
        let body = json!({"specversion":"1.0","id":"1","source":"/s","type":"T",
            "time":"2026-01-01T00:00:00Z",
            "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"x":2}});
        // Structured mode wins even after a `ce_` header binary mode would refuse.
        let rec = Record {
            key: None,
            headers: Headers::from_pairs([("ce_Bad-Name", "x"), ("content-type", STRUCTURED_CONTENT_TYPE)]),
            value: serde_json::to_vec(&body).unwrap(),
        };
        assert_eq!(Event::from_record(&rec).unwrap().id, "1");

        // Binary mode: the first bad attribute is the error, content-type is the data content type.
        let good = Event::from_structured(body.as_object().unwrap().clone()).unwrap().to_record();
        let mut rec = good.clone();
        rec.headers.push("ce_extra", &[0xff, 0xfe]);
        let err = Event::from_record(&rec).unwrap_err();
        assert!(matches!(&err, EventError::InvalidAttribute { name, .. } if name == "extra"), "{err}");
        let mut rec = good.clone();
        rec.set_header("content-type", "application/json; charset=utf-8");
        assert_eq!(
            Event::from_record(&rec).unwrap().datacontenttype.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }

    #[test]
    fn garbage_is_a_permanent_decode_error() {
        let rec = Record { key: None, headers: Headers::new(), value: b"\xff not json".to_vec() };
        let err = Event::from_record(&rec).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn result_ids_are_deterministic() {
        assert_eq!(result_id("s", "1", "w", "v1"), result_id("s", "1", "w", "v1"));
        assert_ne!(result_id("s", "1", "w", "v1"), result_id("s", "1", "w", "v2"));
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
    }

    #[test]
    fn traceparent_parses_the_exact_form_and_later_versions() {
        let t = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let p: TraceParent = t.parse().unwrap();
        assert_eq!(p.to_string(), t);
        assert_eq!(&p.encode()[..], t.as_bytes());
        // A later version may append fields; the first four still parse.
        let later: TraceParent =
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds".parse().unwrap();
        assert_eq!(later, p);
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319cb-7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad}");
        }
    }

    #[test]
    fn child_span_keeps_trace() {
        let t = TraceParent::generate();
        let c = t.child(b"x");
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.span_id, t.span_id);
        assert_eq!(c.to_string().parse::<TraceParent>().unwrap(), c);
    }

    fn minimal() -> Record {
        Record {
            key: Some(b"C00042".to_vec()),
            headers: Headers::from_pairs([
                ("ce_specversion", "1.0"),
                ("ce_id", "e-1"),
                ("ce_source", "/sdk"),
                ("ce_type", "T"),
            ]),
            value: br#"{"x":1}"#.to_vec(),
        }
    }

    #[test]
    fn only_the_required_attributes_are_required() {
        let e = Event::from_record(&minimal()).unwrap();
        assert_eq!(e.time, None, "time is optional");
        assert!(e.trace_derived, "no trace context: one is derived");
        // Derived from the identity: a redelivery yields the same trace.
        let again = Event::from_record(&minimal()).unwrap();
        assert_eq!(e.traceparent, again.traceparent);
        let other = Event::from_record(&Record {
            headers: Headers::from_pairs([
                ("ce_specversion", "1.0"),
                ("ce_id", "e-2"),
                ("ce_source", "/sdk"),
                ("ce_type", "T"),
            ]),
            ..minimal()
        })
        .unwrap();
        assert_ne!(e.traceparent.trace_id, other.traceparent.trace_id);
        // Written back without a time, and read again the same.
        let back = Event::from_record(&e.to_record()).unwrap();
        assert_eq!((back.id, back.time), (e.id.clone(), None));
        let structured = json!({"specversion": "1.0", "id": "e-1", "source": "/sdk", "type": "T", "data": {"x": 1}});
        let s = Event::from_structured(structured.as_object().unwrap().clone()).unwrap();
        assert_eq!((s.time, s.traceparent), (None, e.traceparent));
    }

    #[test]
    fn the_record_key_is_the_partition_key_unless_one_is_named() {
        let e = Event::from_record(&minimal()).unwrap();
        assert_eq!(e.partition_key(), "C00042");
        assert_eq!(e.to_record().key.as_deref(), Some(&b"C00042"[..]));
        let mut named = minimal();
        named.headers.push("ce_partitionkey", b"P1");
        assert_eq!(Event::from_record(&named).unwrap().partition_key(), "P1");
        let keyless = Record { key: None, ..minimal() };
        assert_eq!(Event::from_record(&keyless).unwrap().partition_key(), "e-1", "no key, no subject: the id");
    }

    #[test]
    fn structured_mode_is_recognised_as_producers_send_it() {
        let body = json!({"specversion": "1.0", "id": "s-1", "source": "/sdk", "type": "T", "data": {"x": 2}});
        let value = serde_json::to_vec(&body).unwrap();
        // The Python SDK 2.x labels it application/json; others send no content type.
        for headers in [Headers::from_pairs([("content-type", "application/json")]), Headers::new()] {
            let rec = Record { key: Some(b"k".to_vec()), headers, value: value.clone() };
            let e = Event::from_record(&rec).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!((e.id.as_str(), e.data.clone()), ("s-1", json!({"x": 2})));
            assert_eq!(e.partition_key(), "k");
        }
        // ce_specversion present means binary mode, whatever the value looks like.
        let mut bin = minimal();
        bin.value = value.clone();
        assert_eq!(Event::from_record(&bin).unwrap().id, "e-1");
        // A JSON object without specversion and no ce_ headers is not an event.
        let plain = Record { key: None, headers: Headers::new(), value: br#"{"x":1}"#.to_vec() };
        assert!(matches!(Event::from_record(&plain), Err(EventError::MissingAttribute("id"))));
    }
}
