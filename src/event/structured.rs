//! Structured content mode (`application/cloudevents+json`): the whole
//! event as one JSON object. Accepted on read, written for `tail` and the
//! HTTP binding, and the publish path, the one place identities are
//! generated.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Map, Value};

use super::attributes::{check_datacontenttype, check_extension_name, check_spec, format_time, nonempty, parse_time};
use super::record::record_key;
use super::{Event, EventError, Record, TraceParent};

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

    /// A structured-mode record: its value is the whole event as JSON.
    pub(super) fn from_structured_record(rec: &Record) -> Result<Event, EventError> {
        let v: Value = serde_json::from_slice(&rec.value).map_err(|e| EventError::DataNotJson(e.to_string()))?;
        let Value::Object(map) = v else {
            return Err(EventError::NotAnObject("structured event must be an object".into()));
        };
        let mut e = Self::from_structured(map)?;
        e.record_key = record_key(rec);
        Ok(e)
    }
}

/// Whether a value is, at a glance, a structured-mode CloudEvent: a JSON
/// object with a `specversion` member. Only asked of records without any
/// `ce_` header, so binary-mode events never pay for it.
pub(super) fn looks_structured(value: &[u8]) -> bool {
    let trimmed = value.trim_ascii_start();
    trimmed.first() == Some(&b'{')
        && serde_json::from_slice::<Map<String, Value>>(value).is_ok_and(|m| m.contains_key("specversion"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Headers, STRUCTURED_CONTENT_TYPE};
    use serde_json::json;

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
}
