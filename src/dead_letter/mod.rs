//! The failure envelope. A dead letter is the original record — key,
//! headers and value bytes, unchanged — plus `dl*` attributes that are the
//! same on every bus (README.md, "The wire contract"). They travel as
//! `ce_dl*` headers: CloudEvents extension attributes in binary mode.
//! Also the reading side: listing and inspecting dead letters, and
//! replaying them ([`replay`]).

pub mod replay;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::bus::TopicPartition;
use crate::error::ErrorClass;
use crate::event::{format_time, stable_id, Record, CE_PREFIX};

/// Where in an event's journey it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Decode,
    Validate,
    Features,
    Infer,
    Emit,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Features => "features",
            Stage::Infer => "infer",
            Stage::Emit => "emit",
        }
    }
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "decode" => Stage::Decode,
            "validate" => Stage::Validate,
            "features" => Stage::Features,
            "infer" => Stage::Infer,
            "emit" => Stage::Emit,
            _ => return None,
        })
    }
}

/// Why and where an event failed, and who failed it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub stage: Stage,
    pub class: ErrorClass,
    pub code: String,
    pub reason: String,
    pub attempts: u32,
    pub first_failure: DateTime<Utc>,
    pub last_failure: DateTime<Utc>,
    /// The sink that refused the result (stage `emit`).
    pub sink: Option<String>,
}

/// Who failed it and where it was read.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub worker: &'a str,
    pub group: &'a str,
    pub model: &'a str,
    pub model_version: &'a str,
    pub tp: &'a TopicPartition,
    pub offset: u64,
}

/// The dead letter's own id: the same origin and group always give the same
/// id, so a crash between writing it and committing past it repeats it
/// rather than creating a different one.
pub fn dlid(tp: &TopicPartition, offset: u64, group: &str) -> String {
    stable_id(&[&tp.topic, &tp.partition.to_string(), &offset.to_string(), group])
}

/// The longest value of each `dl*` attribute, in bytes: longer values are
/// cut (ending in `…`), so the attributes of a dead letter never take more
/// than [`MAX_HEADER_BYTES`] and a dead letter of a record that fit the bus
/// fits it too, or is cut to fit ([`envelope`]). The README lists them.
pub const CAPS: &[(&str, usize)] = &[
    ("dlid", 36),
    ("dlstage", 16),
    ("dlclass", 16),
    ("dlcode", 128),
    ("dlreason", 2048),
    ("dlattempts", 10),
    ("dlfirstfailure", 40),
    ("dllastfailure", 40),
    ("dlworker", 256),
    ("dlgroup", 256),
    ("dlmodel", 256),
    ("dlmodelversion", 256),
    ("dltopic", 256),
    ("dlpartition", 10),
    ("dloffset", 20),
    ("dlsink", 256),
    ("dltruncated", 8),
    ("dloriginalsize", 20),
    ("dlsha256", 64),
];

/// The most the `dl*` headers of one dead letter take, names (`ce_dl...`)
/// and values, as [`Record::size`] counts them.
pub const MAX_HEADER_BYTES: usize = {
    let (mut sum, mut i) = (0, 0);
    while i < CAPS.len() {
        sum += CE_PREFIX.len() + CAPS[i].0.len() + CAPS[i].1;
        i += 1;
    }
    sum
};

fn cap_of(name: &str) -> usize {
    CAPS.iter().find(|(n, _)| *n == name).map_or(256, |(_, c)| *c)
}

/// What a record takes on the wire beyond [`Record::size`]: a length before
/// every header name and value (librdkafka counts them against
/// `message.max.bytes`; at most five bytes each).
fn wire_size(r: &Record) -> usize {
    r.size() + 10 * r.headers.len()
}

/// The original record plus the failure attributes. Any `dl*` headers from
/// an earlier failure (a replayed event that failed again) are replaced.
/// Each attribute is cut to its [`CAPS`] entry. A dead letter larger than
/// `limit` (the bus's [`crate::bus::Bus::max_record_bytes`]) has its value
/// cut to fit, and says so: `dltruncated`, `dloriginalsize` and `dlsha256`
/// (of the whole original value), so that it can still be written and the
/// partition can move on.
pub fn envelope(original: &Record, f: &Failure, o: &Origin, limit: usize) -> Record {
    let mut rec = original.clone();
    rec.headers.retain(|k, _| !k.starts_with("ce_dl"));
    let mut set =
        |name: &str, v: &str| rec.headers.push(&format!("{CE_PREFIX}{name}"), truncate(v, cap_of(name)).as_bytes());
    set("dlid", &dlid(o.tp, o.offset, o.group));
    set("dlstage", f.stage.as_str());
    set("dlclass", f.class.as_str());
    set("dlcode", &f.code);
    set("dlreason", &f.reason);
    set("dlattempts", &f.attempts.to_string());
    set("dlfirstfailure", &format_time(f.first_failure));
    set("dllastfailure", &format_time(f.last_failure));
    set("dlworker", o.worker);
    set("dlgroup", o.group);
    set("dlmodel", o.model);
    set("dlmodelversion", o.model_version);
    set("dltopic", &o.tp.topic);
    set("dlpartition", &o.tp.partition.to_string());
    set("dloffset", &o.offset.to_string());
    if let Some(sink) = &f.sink {
        set("dlsink", sink);
    }
    if wire_size(&rec) > limit {
        cut_to_fit(&mut rec, limit);
    }
    rec
}

/// Cuts a dead letter's value (and, if even its headers are too large, the
/// original's own headers from the last) so that it fits `limit`.
fn cut_to_fit(rec: &mut Record, limit: usize) {
    use sha2::{Digest, Sha256};
    let value = std::mem::take(&mut rec.value);
    let sha = hex::encode(Sha256::digest(&value));
    for (name, v) in
        [("dltruncated", "true".to_string()), ("dloriginalsize", value.len().to_string()), ("dlsha256", sha)]
    {
        rec.headers.push(&format!("{CE_PREFIX}{name}"), v.as_bytes());
    }
    // Headers that are not the failure's own, largest burden last: drop
    // them from the end until the rest fits (only for absurd headers).
    while wire_size(rec) > limit {
        let last_foreign =
            rec.headers.iter().enumerate().filter(|(_, (k, _))| !k.starts_with("ce_dl")).map(|(i, _)| i).last();
        let Some(drop) = last_foreign else { break };
        let mut i = 0;
        rec.headers.retain(|_, _| {
            i += 1;
            i - 1 != drop
        });
    }
    if rec.key.as_ref().is_some_and(|k| k.len() > limit / 4) {
        rec.key = None;
    }
    let room = limit.saturating_sub(wire_size(rec));
    rec.value = value[..room.min(value.len())].to_vec();
}

/// `s` in at most `max` bytes: cut at a character boundary, ending in `…`.
fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// The last resort for a dead letter the bus refused even after
/// [`envelope`] cut it to fit (a broker whose limit is below the client's):
/// only its `dl*` attributes and the original's CloudEvents identity, with
/// an empty value, so that it can still be written and the partition move on.
pub fn strip_to_attributes(dl: &Record) -> Record {
    let keep = |k: &str| k.starts_with("ce_dl") || ["ce_id", "ce_source", "ce_type", "ce_traceparent"].contains(&k);
    let mut rec = Record { key: None, headers: dl.headers.clone(), value: Vec::new() };
    rec.headers.retain(|k, _| keep(k));
    if rec.header("ce_dltruncated").is_none() {
        use sha2::{Digest, Sha256};
        rec.headers.push("ce_dltruncated", b"true");
        rec.headers.push("ce_dloriginalsize", dl.value.len().to_string().as_bytes());
        rec.headers.push("ce_dlsha256", hex::encode(Sha256::digest(&dl.value)).as_bytes());
    }
    rec
}

/// A dead letter as read back: its attributes and the original record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub attrs: BTreeMap<String, String>,
    pub record: Record,
    pub dlq_partition: u32,
    pub dlq_offset: u64,
}

impl DeadLetter {
    pub fn from_record(record: Record, dlq_partition: u32, dlq_offset: u64) -> Option<DeadLetter> {
        let attrs: BTreeMap<String, String> = record
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(CE_PREFIX)?;
                name.starts_with("dl").then(|| (name.to_string(), String::from_utf8_lossy(v).into_owned()))
            })
            .collect();
        attrs.contains_key("dlid").then_some(DeadLetter { attrs, record, dlq_partition, dlq_offset })
    }

    pub fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.attr("dlid")
    }

    /// Whether the value was cut to fit the bus (see [`envelope`]): the
    /// original cannot be replayed from it.
    pub fn truncated(&self) -> bool {
        !self.attr("dltruncated").is_empty()
    }

    pub fn last_failure(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.attr("dllastfailure")).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The original record, with the failure attributes removed.
    pub fn original(&self) -> Record {
        let mut r = self.record.clone();
        r.headers.retain(|k, _| !k.starts_with("ce_dl"));
        r
    }

    /// JSON for `dlq show`: attributes, original headers, and the value as
    /// text when it is UTF-8 (else hex), so even garbage can be inspected.
    pub fn to_json(&self) -> Value {
        let orig = self.original();
        let headers: BTreeMap<String, String> =
            orig.headers.iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned())).collect();
        let value = match std::str::from_utf8(&orig.value) {
            Ok(s) => serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string())),
            Err(_) => json!({ "hex": hex::encode(&orig.value) }),
        };
        json!({
            "dead_letter": self.attrs,
            "key": orig.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": headers,
            "value": value,
        })
    }
}

/// Filters shared by `dlq list` and `dlq replay`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub worker: Option<String>,
    pub stage: Option<String>,
    pub class: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, d: &DeadLetter) -> bool {
        let eq = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        let t = d.last_failure().unwrap_or_else(|| Utc.timestamp_opt(0, 0).unwrap());
        eq(&self.worker, d.attr("dlworker"))
            && eq(&self.stage, d.attr("dlstage"))
            && eq(&self.class, d.attr("dlclass"))
            && self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_keeps_original_bytes_and_is_deterministic() {
        let orig = Record {
            key: Some(b"k".to_vec()),
            headers: crate::event::Headers::from_pairs([("x", [0xff])]),
            value: b"\x00garbage".to_vec(),
        };
        let tp = TopicPartition { topic: "claims".into(), partition: 2 };
        let now = Utc::now();
        let f = Failure {
            stage: Stage::Decode,
            class: ErrorClass::Permanent,
            code: "malformed_json".into(),
            reason: "bad".into(),
            attempts: 1,
            first_failure: now,
            last_failure: now,
            sink: None,
        };
        let o = Origin { worker: "w", group: "g", model: "m", model_version: "1", tp: &tp, offset: 7 };
        let a = envelope(&orig, &f, &o, 1 << 20);
        let b = envelope(&orig, &f, &o, 1 << 20);
        let dl = DeadLetter::from_record(a.clone(), 0, 0).unwrap();
        assert_eq!(dl.original(), orig);
        assert_eq!(dl.attr("dlstage"), "decode");
        assert_eq!(dl.attr("dloffset"), "7");
        assert_eq!(a.header("ce_dlid"), b.header("ce_dlid"));
    }

    fn failure(reason: String) -> Failure {
        let now = Utc::now();
        Failure {
            stage: Stage::Emit,
            class: ErrorClass::Permanent,
            code: "c".repeat(500),
            reason,
            attempts: u32::MAX,
            first_failure: now,
            last_failure: now,
            sink: Some("s".repeat(1000)),
        }
    }

    #[test]
    fn attributes_are_capped_and_never_exceed_the_maximum() {
        let orig = Record { key: Some(b"k".to_vec()), headers: Default::default(), value: b"{}".to_vec() };
        let long = "w".repeat(5000);
        let tp = TopicPartition { topic: long.clone().into(), partition: u32::MAX };
        let o = Origin { worker: &long, group: &long, model: &long, model_version: &long, tp: &tp, offset: u64::MAX };
        let dl = envelope(&orig, &failure("é".repeat(10_000)), &o, 1 << 20);
        let dl_bytes: usize =
            dl.headers.iter().filter(|(k, _)| k.starts_with("ce_dl")).map(|(k, v)| k.len() + v.len()).sum();
        assert!(dl_bytes <= MAX_HEADER_BYTES, "{dl_bytes} > {MAX_HEADER_BYTES}");
        for (k, v) in dl.headers.iter() {
            if let Some(name) = k.strip_prefix("ce_") {
                assert!(v.len() <= cap_of(name), "{name}: {} bytes", v.len());
                assert!(std::str::from_utf8(v).is_ok(), "{name} cut inside a character");
            }
        }
        assert_eq!(MAX_HEADER_BYTES, 4219, "the maximum the README documents");
    }

    #[test]
    fn an_oversized_dead_letter_is_cut_to_fit_and_says_so() {
        let value: Vec<u8> = (0..999_850u32).map(|i| (i % 251) as u8).collect();
        let orig = Record { key: Some(b"k".to_vec()), headers: crate::event::Headers::from_pairs([("x", "y")]), value };
        let tp = TopicPartition { topic: "in".into(), partition: 0 };
        let o = Origin { worker: "w", group: "g", model: "m", model_version: "1", tp: &tp, offset: 1 };
        let limit = 1_000_000 - 1024;
        let dl = envelope(&orig, &failure("too big".into()), &o, limit);
        assert!(wire_size(&dl) <= limit);
        let read = DeadLetter::from_record(dl.clone(), 0, 0).unwrap();
        assert!(read.truncated());
        assert_eq!(read.attr("dloriginalsize"), "999850");
        use sha2::{Digest, Sha256};
        assert_eq!(read.attr("dlsha256"), hex::encode(Sha256::digest(&orig.value)));
        assert!(orig.value.starts_with(&dl.value) && !dl.value.is_empty(), "a prefix of the original is kept");
        // A record that fits keeps its value whole.
        let small = envelope(&Record { value: b"{}".to_vec(), ..orig.clone() }, &failure("x".into()), &o, limit);
        assert!(!DeadLetter::from_record(small, 0, 0).unwrap().truncated());
    }
}
