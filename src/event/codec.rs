//! A bus record to and from an [`Event`]: which content mode a record is
//! in, binary mode read straight from the headers in one walk, and binary
//! mode written ([`Event::to_record`]). Every bus writes binary mode;
//! structured mode is read (see `structured.rs`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::attributes::{check_datacontenttype, check_extension_name, check_spec, format_time, nonempty, parse_time};
use super::record::{record_key, INVALID_HEADER_NAME};
use super::structured::looks_structured;
use super::{Event, EventError, Headers, Record, TraceParent};

/// Header prefix of CloudEvents attributes in binary content mode.
pub const CE_PREFIX: &str = "ce_";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const JSON_CONTENT_TYPE: &str = "application/json";

impl Event {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
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
