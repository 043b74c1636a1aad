//! The schema registry: every event type's versioned JSON Schemas, loaded
//! and compiled once at start-up, and the rules for which version an event
//! is validated against. Compatibility between versions is in [`compat`].
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
use std::fs;
use std::path::{Path, PathBuf};

pub mod compat;
#[cfg(test)]
mod tests;

pub use compat::{check, Compatibility, Incompatibility};

/// The name of the optional per-type policy file.
pub const POLICY_FILE: &str = "compatibility";

/// At most this many validator reasons are quoted in an error.
const MAX_REASONS: usize = 10;
/// Reasons quote the offending value; a huge one is cut.
const MAX_REASON_CHARS: usize = 300;

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

fn load_error(path: &Path, reason: impl fmt::Display) -> SchemaError {
    SchemaError::Load { path: path.to_path_buf(), reason: reason.to_string() }
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
    /// Loads and compiles every schema under `dir` (layout in the module doc).
    pub fn load(dir: &Path) -> Result<Self, SchemaError> {
        let mut types = BTreeMap::new();
        for path in sorted_entries(dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                return Err(load_error(&path, "event type directory names must be UTF-8"));
            };
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            types.insert(name, load_type(&path)?);
        }
        Ok(SchemaRegistry { types })
    }

    /// Validates `data` for `event_type`, against the version `dataschema`
    /// names, else the newest; returns the version that validated.
    pub fn validate(&self, event_type: &str, dataschema: Option<&str>, data: &Value) -> Result<u32, SchemaError> {
        let t = self.event_type(event_type)?;
        let (n, v) = match dataschema.and_then(dataschema_version) {
            Some(n) => (n, t.version(event_type, n)?),
            None => t.newest(),
        };
        check_data(event_type, n, v, data)
    }

    /// As [`validate`](Self::validate), except that when `dataschema` names
    /// no version, the data may match any version compatible with the
    /// newest under the type's policy: the first that validates, newest
    /// first, is returned. Under `none` no older version counts as
    /// compatible, so only the newest is tried.
    pub fn validate_compatible(
        &self,
        event_type: &str,
        dataschema: Option<&str>,
        data: &Value,
    ) -> Result<u32, SchemaError> {
        let t = self.event_type(event_type)?;
        if let Some(n) = dataschema.and_then(dataschema_version) {
            return check_data(event_type, n, t.version(event_type, n)?, data);
        }
        let mut first_err = None;
        for &n in &t.fallbacks {
            let v = &t.versions[&n];
            if v.validator.is_valid(data) {
                return Ok(n);
            }
            if first_err.is_none() {
                first_err = Some(check_data(event_type, n, v, data));
            }
        }
        match first_err {
            Some(Err(SchemaError::Violation { event_type, version, reasons, more, .. })) => {
                let also_tried = t.fallbacks[1..].to_vec();
                Err(SchemaError::Violation { event_type, version, reasons, more, also_tried })
            }
            Some(other) => other,
            None => unreachable!("fallbacks always holds the newest version"),
        }
    }

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

/// The version a `dataschema` attribute names: the integer last path
/// segment, with an optional `.json` suffix or `v` prefix; query and
/// fragment are ignored. `None` when it names none.
pub fn dataschema_version(dataschema: &str) -> Option<u32> {
    let path = dataschema.split(['?', '#']).next().unwrap_or("");
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    let last = last.strip_suffix(".json").unwrap_or(last);
    let digits = last.strip_prefix(['v', 'V']).unwrap_or(last);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too large for any real version: still named, so it must fail as unknown, not fall back.
    Some(digits.parse().unwrap_or(u32::MAX))
}

fn check_data(event_type: &str, version: u32, v: &Version, data: &Value) -> Result<u32, SchemaError> {
    if v.validator.is_valid(data) {
        return Ok(version);
    }
    let mut reasons = Vec::new();
    let mut more = 0;
    for e in v.validator.iter_errors(data) {
        if reasons.len() < MAX_REASONS {
            let at = match e.instance_path.as_str() {
                "" => "(root)",
                p => p,
            };
            reasons.push(truncate(format!("{at}: {e}"), MAX_REASON_CHARS));
        } else {
            more += 1;
        }
    }
    Err(SchemaError::Violation { event_type: event_type.to_owned(), version, reasons, more, also_tried: Vec::new() })
}

fn truncate(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, SchemaError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| load_error(dir, e))? {
        out.push(entry.map_err(|e| load_error(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn load_type(dir: &Path) -> Result<EventSchemas, SchemaError> {
    let mut policy = Compatibility::default();
    let mut versions = BTreeMap::new();
    for path in sorted_entries(dir)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == POLICY_FILE {
            policy = load_policy(&path)?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let n = match stem.parse::<u32>() {
            Ok(n) if n >= 1 && n.to_string() == stem => n,
            _ => return Err(load_error(&path, "schema files must be named by version: 1.json, 2.json, ...")),
        };
        versions.insert(n, load_version(&path)?);
    }
    if versions.is_empty() {
        return Err(load_error(dir, "no schema versions (expected 1.json, 2.json, ...)"));
    }
    let fallbacks = fallbacks(policy, &versions);
    Ok(EventSchemas { policy, versions, fallbacks })
}

fn load_policy(path: &Path) -> Result<Compatibility, SchemaError> {
    let text = fs::read_to_string(path).map_err(|e| load_error(path, e))?;
    let words: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    match words.as_slice() {
        [one] => one.parse().map_err(|e| load_error(path, e)),
        _ => Err(load_error(path, "expected one compatibility policy, e.g. `backward`")),
    }
}

/// The draft-2020-12 meta-schema URI, with or without the empty fragment.
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

fn load_version(path: &Path) -> Result<Version, SchemaError> {
    let text = fs::read_to_string(path).map_err(|e| load_error(path, e))?;
    let schema: Value = serde_json::from_str(&text).map_err(|e| load_error(path, format!("not JSON: {e}")))?;
    // Another draft's keywords mean other things (`items` as a tuple,
    // `definitions`); validating it as 2020-12 would silently check the wrong thing.
    if let Some(declared) = schema.get("$schema") {
        if declared.as_str().map(|s| s.trim_end_matches('#')) != Some(DRAFT_2020_12) {
            return Err(load_error(
                path,
                format!("declares $schema {declared}; modelbus schemas are draft 2020-12 ({DRAFT_2020_12})"),
            ));
        }
    }
    let validator =
        jsonschema::draft202012::new(&schema).map_err(|e| load_error(path, format!("invalid JSON Schema: {e}")))?;
    Ok(Version { schema, validator })
}

fn fallbacks(policy: Compatibility, versions: &BTreeMap<u32, Version>) -> Vec<u32> {
    let mut iter = versions.iter().rev();
    let Some((&newest, nv)) = iter.next() else {
        return Vec::new();
    };
    let mut out = vec![newest];
    if policy == Compatibility::None {
        return out;
    }
    for (&n, v) in iter {
        let pair = [(format!("version {n}"), &v.schema)];
        if compat::check_labelled(policy, &pair, &nv.schema).is_empty() {
            out.push(n);
        }
    }
    out
}
