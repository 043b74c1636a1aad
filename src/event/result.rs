//! A worker's result event, written straight into a binary-mode record.
//!
//! It runs once per event, so it builds no intermediate [`Event`] or JSON
//! map; it lives here, beside [`Event::to_record`], because its record must
//! be exactly what `to_record` writes for the same result event (the test
//! `result_record_is_what_to_record_writes` below holds the two together).
//! What the result says (its data) is the worker's business
//! (`worker::plan`); this file owns how a result is enveloped.

use super::codec::JSON_CONTENT_TYPE;
use super::ids::result_id;
use super::{Event, Headers, Record};

/// What a result event takes from the worker that produced it, rather than
/// from its cause. Borrowed from the worker's plan once per batch, so the
/// per-event encoding copies nothing to build it.
#[derive(Debug, Clone, Copy)]
pub struct ResultProducer<'a> {
    /// The result's `source`.
    pub source: &'a str,
    /// The result's `type`.
    pub ty: &'a str,
    /// The result's `dataschema`: the registry's latest version of its type.
    pub dataschema: Option<&'a str>,
    pub worker: &'a str,
    pub model_name: &'a str,
    pub model_version: &'a str,
}

/// The result record of one event, in binary mode, encoded directly. The
/// headers are exactly what [`Event::to_record`] writes for the same
/// result. `data` is the result's data, already JSON. `time` is the
/// batch's timestamp, formatted once per batch.
#[inline]
pub fn result_record(
    cause: &Event,
    producer: &ResultProducer<'_>,
    schema_version: u32,
    time: &str,
    data: Vec<u8>,
) -> Record {
    let id = result_id(&cause.source, &cause.id, producer.worker, producer.model_version);
    let traceparent = cause.traceparent.child(id.as_bytes()).encode();
    let traceparent = std::str::from_utf8(&traceparent).unwrap_or_default();
    let key = cause.partition_key().as_bytes().to_vec();
    let correlation = cause.extensions.get("correlationid").unwrap_or(&cause.id);
    let mut version_buf = itoa::Buffer::new();
    let schema_version = version_buf.format(schema_version);
    let mut headers = Headers::with_capacity(640);
    let mut h = |name: &str, value: &str| headers.push(name, value.as_bytes());
    h("ce_specversion", "1.0");
    h("ce_id", &id);
    h("ce_source", producer.source);
    h("ce_type", producer.ty);
    h("ce_time", time);
    if let Some(s) = &cause.subject {
        h("ce_subject", s);
    }
    if let Some(s) = producer.dataschema {
        h("ce_dataschema", s);
    }
    h("ce_traceparent", traceparent);
    if let Some(s) = &cause.tracestate {
        h("ce_tracestate", s);
    }
    // Extensions in name order, as `Event::to_record` writes them.
    h("ce_causationid", &cause.id);
    h("ce_correlationid", correlation);
    h("ce_inputschemaversion", schema_version);
    h("ce_modelname", producer.model_name);
    h("ce_modelversion", producer.model_version);
    h("ce_partitionkey", cause.partition_key());
    h("ce_worker", producer.worker);
    h("content-type", JSON_CONTENT_TYPE);
    Record { key: Some(key), headers, value: data }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::event::format_time;

    /// The same result built the slow way, as an [`Event`] for
    /// [`Event::to_record`] to write.
    fn as_event(cause: &Event, p: &ResultProducer<'_>, schema_version: u32, time: &str, data: &[u8]) -> Event {
        let id = result_id(&cause.source, &cause.id, p.worker, p.model_version);
        let correlation = cause.extensions.get("correlationid").unwrap_or(&cause.id);
        let extensions: BTreeMap<String, String> = [
            ("causationid", cause.id.as_str()),
            ("correlationid", correlation),
            ("inputschemaversion", &schema_version.to_string()),
            ("modelname", p.model_name),
            ("modelversion", p.model_version),
            ("partitionkey", cause.partition_key()),
            ("worker", p.worker),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Event {
            traceparent: cause.traceparent.child(id.as_bytes()),
            id,
            source: p.source.into(),
            ty: p.ty.into(),
            time: Some(DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc)),
            subject: cause.subject.clone(),
            datacontenttype: None,
            dataschema: p.dataschema.map(str::to_string),
            trace_derived: false,
            tracestate: cause.tracestate.clone(),
            extensions,
            record_key: None,
            data: serde_json::from_slice(data).unwrap(),
        }
    }

    fn cause(headers: &[(&str, &str)], key: Option<&[u8]>) -> Event {
        let mut pairs = vec![("ce_specversion", "1.0"), ("ce_id", "e-1"), ("ce_source", "/sdk"), ("ce_type", "T")];
        pairs.extend_from_slice(headers);
        let rec = Record { key: key.map(<[u8]>::to_vec), headers: Headers::from_pairs(pairs), value: b"{}".to_vec() };
        Event::from_record(&rec).unwrap()
    }

    #[test]
    fn result_record_is_what_to_record_writes() {
        let time = format_time(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap());
        let with_schema = ResultProducer {
            source: "modelbus/risk",
            ty: "RiskScored",
            dataschema: Some("urn:modelbus:schema:RiskScored:2"),
            worker: "risk",
            model_name: "claims",
            model_version: "v3",
        };
        let without_schema = ResultProducer { dataschema: None, ..with_schema };
        let causes = [
            // The usual input: keyed, no subject, a producer's trace context.
            cause(&[("ce_traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], Some(b"C1")),
            // Every optional attribute a result copies from its cause.
            cause(
                &[
                    ("ce_subject", "C2"),
                    ("ce_tracestate", "vendor=1"),
                    ("ce_correlationid", "corr-9"),
                    ("ce_partitionkey", "P2"),
                    ("ce_time", "2026-01-01T00:00:00Z"),
                ],
                None,
            ),
            // Nothing optional: the key falls back to the id, the trace is derived.
            cause(&[], None),
        ];
        // Keys in name order and numbers as serde_json writes them, so the
        // data also survives `to_record`'s re-serialisation unchanged.
        let data = br#"{"claim_id":"C1","label":1,"risk":0.25}"#;
        for c in &causes {
            for p in [&with_schema, &without_schema] {
                let fast = result_record(c, p, 7, &time, data.to_vec());
                let slow = as_event(c, p, 7, &time, data).to_record();
                assert_eq!(fast, slow, "cause {c:?}, producer {p:?}");
                assert_eq!(fast.headers.as_bytes(), slow.headers.as_bytes());
            }
        }
    }
}
