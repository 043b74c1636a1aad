//! The failure envelope. A dead letter is the original record — key,
//! headers and value bytes, unchanged — plus `dl*` attributes that are the
//! same on every bus (DESIGN.md, "The wire contract"). They travel as
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

/// The original record plus the failure attributes. Any `dl*` headers from
/// an earlier failure (a replayed event that failed again) are replaced.
pub fn envelope(original: &Record, f: &Failure, o: &Origin) -> Record {
    let mut rec = original.clone();
    rec.headers.retain(|k, _| !k.starts_with("ce_dl"));
    let mut set = |name: &str, v: String| rec.headers.push(&format!("{CE_PREFIX}{name}"), v.as_bytes());
    set("dlid", dlid(o.tp, o.offset, o.group));
    set("dlstage", f.stage.as_str().into());
    set("dlclass", f.class.as_str().into());
    set("dlcode", f.code.clone());
    set("dlreason", truncate(&f.reason, 2048));
    set("dlattempts", f.attempts.to_string());
    set("dlfirstfailure", format_time(f.first_failure));
    set("dllastfailure", format_time(f.last_failure));
    set("dlworker", o.worker.into());
    set("dlgroup", o.group.into());
    set("dlmodel", o.model.into());
    set("dlmodelversion", o.model_version.into());
    set("dltopic", o.tp.topic.to_string());
    set("dlpartition", o.tp.partition.to_string());
    set("dloffset", o.offset.to_string());
    rec
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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
        let headers: BTreeMap<String, String> = orig
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
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
        let orig = Record { key: Some(b"k".to_vec()), headers: crate::event::Headers::from_pairs([("x", [0xff])]), value: b"\x00garbage".to_vec() };
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
        };
        let o = Origin { worker: "w", group: "g", model: "m", model_version: "1", tp: &tp, offset: 7 };
        let a = envelope(&orig, &f, &o);
        let b = envelope(&orig, &f, &o);
        let dl = DeadLetter::from_record(a.clone(), 0, 0).unwrap();
        assert_eq!(dl.original(), orig);
        assert_eq!(dl.attr("dlstage"), "decode");
        assert_eq!(dl.attr("dloffset"), "7");
        assert_eq!(a.header("ce_dlid"), b.header("ce_dlid"));
    }
}
