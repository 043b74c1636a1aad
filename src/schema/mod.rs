//! The schema registry: every event type's versioned JSON Schemas, loaded
//! and compiled once at start-up, and the rules for which version an event
//! is validated against. Compatibility between versions is in [`compat`];
//! reading and compiling the files is in `load.rs`, checking an event's data
//! in `validate.rs`; this file holds the registry's types and queries.
//!
//! Layout on disk, one directory per CloudEvents `type`:
//!
//! ```text
//! <dir>/<EventType>/1.json        draft 2020-12 schemas, versions 1, 2, ...
//! <dir>/<EventType>/2.json
//! <dir>/<EventType>/compatibility optional policy file
//! ```
//!
//! Version files are named by plain integers (`1.json`, not `01.json` or
//! `v1.json`); gaps are allowed. Other files (a README) are ignored, but a
//! `.json` file with any other name is refused, as it is most likely a
//! misnamed version. The policy file holds one word: `backward` (the
//! default when there is no file), `forward`, `full`, `none`,
//! `backward_transitive`, `forward_transitive` or `full_transitive`
//! (Confluent's upper-case spelling works too); blank lines and lines
//! starting with `#` are ignored.
//!
//! Which version validates an event: its `dataschema` attribute names a
//! version when the last path segment is an integer, with or without
//! `.json` (`schemas/ClaimCreated/2.json`, `https://x/ClaimCreated/2`);
//! that version is used. Otherwise the newest is.
//! [`SchemaRegistry::validate_compatible`], for workers, instead tries the
//! versions compatible with the newest, newest first.
//!
//! Schemas are draft 2020-12 (a `$schema` naming another draft is refused),
//! local `$ref`s only, and, as that draft says, `format` is an annotation,
//! not checked. Anything wrong with the schema files is a fatal error at
//! load, naming the file; a running registry only fails events, never itself.

use crate::error::{Classify, ErrorClass};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub mod compat;
mod load;
#[cfg(test)]
mod tests;
mod validate;

pub use compat::{check, Compatibility, Incompatibility};
pub use load::POLICY_FILE;
pub use validate::dataschema_version;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "{event_type} data does not match schema version {version}: {}{}",
        .reasons.join("; "),
        fmt_tail(*.more, .also_tried)
    )]
    Violation {
        event_type: String,
        version: u32,
        /// The validator's reasons, `<instance path>: <reason>`, at most ten.
        reasons: Vec<String>,
        /// How many further reasons were left out.
        more: usize,
        /// Older versions also tried, and failed, by `validate_compatible`.
        also_tried: Vec<u32>,
    },
    #[error("unknown event type {event_type:?}: the registry has no schema for it")]
    UnknownEventType { event_type: String },
    #[error("event type {event_type} has no schema version {version} (it has {known})")]
    UnknownVersion { event_type: String, version: u32, known: String },
    #[error("cannot load schema {}: {reason}", .path.display())]
    Load { path: PathBuf, reason: String },
}

fn fmt_tail(more: usize, also_tried: &[u32]) -> String {
    let mut s = String::new();
    if more > 0 {
        s.push_str(&format!(" (and {more} more)"));
    }
    if !also_tried.is_empty() {
        let v: Vec<String> = also_tried.iter().map(u32::to_string).collect();
        s.push_str(&format!("; compatible versions {} did not match either", v.join(", ")));
    }
    s
}

impl Classify for SchemaError {
    fn class(&self) -> ErrorClass {
        match self {
            SchemaError::Violation { .. }
            | SchemaError::UnknownEventType { .. }
            | SchemaError::UnknownVersion { .. } => ErrorClass::Permanent,
            SchemaError::Load { .. } => ErrorClass::Fatal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SchemaError::Violation { .. } => "schema_violation",
            SchemaError::UnknownEventType { .. } => "unknown_event_type",
            SchemaError::UnknownVersion { .. } => "unknown_schema_version",
            SchemaError::Load { .. } => "schema_load",
        }
    }
}

struct Version {
    schema: Value,
    validator: jsonschema::Validator,
}

struct EventSchemas {
    policy: Compatibility,
    versions: BTreeMap<u32, Version>,
    /// What `validate_compatible` tries when `dataschema` names no version:
    /// the newest, then each older version compatible with it, newest first.
    /// Worked out at load so no event pays for a schema diff.
    fallbacks: Vec<u32>,
}

impl EventSchemas {
    fn newest(&self) -> (u32, &Version) {
        let (n, v) = self.versions.last_key_value().expect("a loaded type has a version");
        (*n, v)
    }

    fn version(&self, event_type: &str, n: u32) -> Result<&Version, SchemaError> {
        self.versions.get(&n).ok_or_else(|| SchemaError::UnknownVersion {
            event_type: event_type.to_owned(),
            version: n,
            known: describe_versions(self.versions.keys().copied()),
        })
    }
}

fn describe_versions(vs: impl Iterator<Item = u32>) -> String {
    let v: Vec<String> = vs.map(|n| n.to_string()).collect();
    match v.len() {
        1 => format!("only version {}", v[0]),
        _ => format!("versions {}", v.join(", ")),
    }
}

/// All event types' schemas. Cheap to share (`Arc`) between workers.
pub struct SchemaRegistry {
    types: BTreeMap<String, EventSchemas>,
}

impl fmt::Debug for SchemaRegistry {
    /// Versions and policies only: the schemas themselves would swamp a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Summary<'a>(&'a EventSchemas);
        impl fmt::Debug for Summary<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let versions: Vec<u32> = self.0.versions.keys().copied().collect();
                write!(f, "{versions:?} {}", self.0.policy)
            }
        }
        f.write_str("SchemaRegistry ")?;
        let mut m = f.debug_map();
        for (name, t) in &self.types {
            m.entry(name, &Summary(t));
        }
        m.finish()
    }
}

impl SchemaRegistry {
    pub fn latest_version(&self, event_type: &str) -> Option<u32> {
        self.types.get(event_type).map(|t| t.newest().0)
    }

    /// Every event type, in name order.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// The type's versions, oldest first (empty for an unknown type).
    pub fn versions(&self, event_type: &str) -> Vec<u32> {
        self.types.get(event_type).map(|t| t.versions.keys().copied().collect()).unwrap_or_default()
    }

    pub fn policy(&self, event_type: &str) -> Option<Compatibility> {
        self.types.get(event_type).map(|t| t.policy)
    }

    pub fn schema(&self, event_type: &str, version: u32) -> Option<&Value> {
        self.types.get(event_type)?.versions.get(&version).map(|v| &v.schema)
    }

    /// The `dataschema` attribute naming a version, relative to the
    /// registry: `schemas/ClaimCreated/2.json`.
    pub fn dataschema_uri(event_type: &str, version: u32) -> String {
        format!("schemas/{event_type}/{version}.json")
    }

    /// Checks every version after the first of every type against its
    /// predecessors under the type's policy; empty means all is well.
    pub fn check_all(&self) -> Vec<(String, u32, Incompatibility)> {
        let mut out = Vec::new();
        for (name, t) in &self.types {
            let mut previous: Vec<(String, &Value)> = Vec::new();
            for (n, v) in &t.versions {
                for inc in compat::check_labelled(t.policy, &previous, &v.schema) {
                    out.push((name.clone(), *n, inc));
                }
                previous.push((format!("version {n}"), &v.schema));
            }
        }
        out
    }

    fn event_type(&self, event_type: &str) -> Result<&EventSchemas, SchemaError> {
        self.types.get(event_type).ok_or_else(|| SchemaError::UnknownEventType { event_type: event_type.to_owned() })
    }
}
