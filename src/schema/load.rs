//! Loading the registry: reading `<dir>/<EventType>/<version>.json` and the
//! optional policy file (layout and naming rules in the [module
//! doc](super)), compiling each schema once, and working out each type's
//! fallback versions. Every failure here names its file and is fatal.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::{compat, Compatibility, EventSchemas, SchemaError, SchemaRegistry, Version};

/// The name of the optional per-type policy file.
pub const POLICY_FILE: &str = "compatibility";

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
}

fn load_error(path: &Path, reason: impl fmt::Display) -> SchemaError {
    SchemaError::Load { path: path.to_path_buf(), reason: reason.to_string() }
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
