//! Reading a config file: TOML syntax, `${ENV}` interpolation, typed
//! deserialisation and validation, collecting *every* problem with its path
//! instead of stopping at the first, so one `modelbus validate` run shows a
//! newcomer all that is wrong.

use std::path::{Path, PathBuf};

use super::Config;
use crate::secrets::Secrets;

/// One problem, at one path (`workers[0].batch.max_wait`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {} problem(s)", self.file.display(), self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl crate::error::Classify for ConfigErrors {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Fatal
    }
    fn code(&self) -> &'static str {
        "bad_config"
    }
}

pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigErrors {
        file: file.to_path_buf(),
        errors: vec![ConfigError { path: String::new(), message: format!("cannot read: {e}") }],
    })?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, &base).map_err(|errors| ConfigErrors { file: file.to_path_buf(), errors })
}

/// Parses `text`, resolving relative paths against `base`.
pub fn load_str(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    match load_partial(text, base) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(errors),
    }
}

/// Every problem of `text`, and the config as far as it could be read
/// (the offending keys left out or at their defaults), so that `validate`
/// can go on to check the models and schemas it names.
pub fn load_partial(text: &str, base: &Path) -> (Option<Config>, Vec<ConfigError>) {
    let mut doc: toml::Value = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return (None, vec![ConfigError { path: String::new(), message: format!("invalid TOML: {e}") }]),
    };
    let mut errors = Vec::new();
    let mut secrets = Secrets::default();
    interpolate_env(&mut doc, String::new(), &mut errors, &mut secrets);
    // Later errors of this process (the Kafka client's) are scrubbed too.
    crate::secrets::remember(&secrets);
    let warnings = super::BusConfig::unselected(&doc);
    let mut config = deserialize_collecting(doc, &mut errors);
    if let Some(c) = &config {
        errors.extend(super::validate::validate(c));
    }
    if let Some(c) = config.as_mut() {
        resolve_paths(c, base);
        c.warnings = scrub(warnings, &secrets);
    }
    (config, scrub(errors, &secrets))
}

/// Messages quote offending values (`got "..."`, `invalid type: string
/// "..."`); one that came from the environment is shown as `${NAME}`.
fn scrub(errors: Vec<ConfigError>, secrets: &Secrets) -> Vec<ConfigError> {
    errors.into_iter().map(|e| ConfigError { message: secrets.scrub(&e.message).into_owned(), path: e.path }).collect()
}

/// Replaces `${NAME}` in every string with the environment variable NAME,
/// noting each value in `secrets`.
fn interpolate_env(v: &mut toml::Value, path: String, errors: &mut Vec<ConfigError>, secrets: &mut Secrets) {
    match v {
        toml::Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let Some(end) = rest[start..].find('}') else {
                    errors.push(ConfigError { path: path.clone(), message: "unterminated `${`".into() });
                    return;
                };
                let name = &rest[start + 2..start + end];
                match std::env::var(name) {
                    Ok(val) => {
                        secrets.add(name, &val);
                        out.push_str(&val);
                    }
                    Err(_) => errors.push(ConfigError {
                        path: path.clone(),
                        message: format!("environment variable `{name}` is not set"),
                    }),
                }
                rest = &rest[start + end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_env(item, format!("{path}[{i}]"), errors, secrets);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                interpolate_env(item, p, errors, secrets);
            }
        }
        _ => {}
    }
}

/// serde stops at the first error, so after each one the offending key is
/// removed and deserialisation tried again, until it succeeds or an error
/// repeats. A required key that was removed shows up as `missing field`,
/// which is then not reported a second time.
fn deserialize_collecting(mut doc: toml::Value, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            // With the bad keys removed the rest still deserialises, so the
            // cross-field checks can report their problems too.
            Ok(c) => return Some(c),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        // An error inside a backend's section carries its path there.
        let (path, message) = match super::sealed::split(&message) {
            Some((inner, message)) => (super::sealed::join(&path, inner), message.to_string()),
            None => (path, message),
        };
        // toml appends the location (`in \`a.b\``); the path says it already.
        let message = message.split("\nin `").next().unwrap_or(&message);
        let message = message.split(" in `").next().unwrap_or(message).trim().to_string();
        // serde_path_to_error's path already ends at an unknown key.
        let key_path = path.clone();
        let missing_removed = missing_field_name(&message).is_some_and(|f| {
            let p = if path.is_empty() { f.to_string() } else { format!("{path}.{f}") };
            removed.contains(&p) || removed.contains(&path)
        });
        if !missing_removed {
            let e = ConfigError { path: key_path.clone(), message: tidy(&message) };
            if errors.contains(&e) {
                return None;
            }
            errors.push(e);
        }
        if missing_removed || key_path.is_empty() || !remove_path(&mut doc, &key_path) {
            return None;
        }
        removed.push(key_path);
    }
    None
}

fn unknown_field_name(msg: &str) -> Option<&str> {
    msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next())
}

fn missing_field_name(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `").and_then(|r| r.split('`').next())
}

fn tidy(msg: &str) -> String {
    if let Some(field) = unknown_field_name(msg) {
        let expected = msg.split("expected ").nth(1).unwrap_or("").trim_end_matches('.');
        if expected.is_empty() {
            return format!("unknown key `{field}`");
        }
        return format!("unknown key `{field}`; known keys: {expected}");
    }
    msg.to_string()
}

/// Removes `a.b[2].c` from the document. Returns whether anything was removed.
fn remove_path(doc: &mut toml::Value, path: &str) -> bool {
    let mut segs: Vec<Seg> = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            segs.push(Seg::Key(name.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse::<usize>() {
                segs.push(Seg::Index(i));
            }
        }
    }
    let Some((last, parents)) = segs.split_last() else { return false };
    let mut cur = doc;
    for s in parents {
        cur = match (s, cur) {
            (Seg::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        // Removing from an array would shift indices; blank it instead.
        (Seg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a[*i] = toml::Value::Table(Default::default());
            true
        }
        _ => false,
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn resolve_paths(c: &mut Config, base: &Path) {
    let abs = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    abs(&mut c.data_dir);
    abs(&mut c.schemas);
    for m in c.models.values_mut() {
        abs(&mut m.path);
        if let Some(g) = m.golden.as_mut() {
            abs(g);
        }
    }
}
