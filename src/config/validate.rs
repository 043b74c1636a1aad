//! Cross-field checks that serde cannot express: references between
//! sections, column syntax, output expressions, bounds. Each problem names
//! its path; all of them are returned together.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Config, ConfigError};
use crate::dead_letter::MAX_HEADER_BYTES;
use crate::model::OutputExpr;

pub fn validate(c: &Config) -> Vec<ConfigError> {
    let mut errs = c.bus.validate();
    let mut err = |path: String, message: String| errs.push(ConfigError { path, message });
    let ms = Duration::from_millis(1);
    for (name, store) in &c.feature_stores {
        if !is_identifier(name) {
            err(format!("feature_stores.{name}"), "store names are letters, digits and `_`".into());
        }
        for e in store.breaker.validate(&format!("feature_stores.{name}.breaker")) {
            err(e.path, e.message);
        }
    }
    for (name, m) in &c.models {
        if let Some(sha) = &m.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                err(format!("models.{name}.sha256"), "expected 64 hex digits".into());
            }
        }
        if m.runtime == super::Runtime::Ort && !cfg!(feature = "ort") {
            err(format!("models.{name}.runtime"), "`ort` needs modelbus built with the `ort` Cargo feature".into());
        }
    }
    let mut names = BTreeSet::new();
    for (i, w) in c.workers.iter().enumerate() {
        let p = format!("workers[{i}]");
        if !names.insert(w.name.as_str()) {
            err(format!("{p}.name"), format!("duplicate worker name `{}`", w.name));
        }
        if w.name.is_empty() {
            err(format!("{p}.name"), "must not be empty".into());
        }
        if w.topic.is_empty() {
            err(format!("{p}.topic"), "must not be empty".into());
        }
        if !c.models.contains_key(&w.model) {
            err(format!("{p}.model"), format!("no model named `{}` in [models]", w.model));
        }
        match &w.feature_store {
            Some(fs) if !c.feature_stores.contains_key(fs) => {
                err(format!("{p}.feature_store"), format!("no store named `{fs}` in [feature_stores]"))
            }
            Some(_) if w.entity_key.is_none() => {
                err(format!("{p}.entity_key"), "required when feature_store is set".into())
            }
            _ => {}
        }
        if let Some(k) = &w.entity_key {
            if !k.starts_with("data.") && !["subject", "id"].contains(&k.as_str()) {
                err(format!("{p}.entity_key"), "expected `data.<field>`, `subject` or `id`".into());
            }
        }
        if w.inputs.is_empty() {
            err(format!("{p}.inputs"), "at least one model input is required".into());
        }
        for (input, cols) in &w.inputs {
            if cols.is_empty() {
                err(format!("{p}.inputs.{input}"), "at least one column is required".into());
            }
            for (j, col) in cols.iter().enumerate() {
                let cp = format!("{p}.inputs.{input}[{j}]");
                if let Some(f) = col.strip_prefix("features.") {
                    if w.feature_store.is_none() {
                        err(cp, format!("uses feature `{f}` but the worker has no feature_store"));
                    }
                } else if col.strip_prefix("data.").is_none_or(str::is_empty) {
                    err(cp, format!("expected `data.<field>` or `features.<name>`, got `{col}`"));
                }
            }
        }
        if w.outputs.is_empty() {
            err(format!("{p}.outputs"), "at least one output mapping is required".into());
        }
        for (field, expr) in &w.outputs {
            if let Err(e) = expr.parse::<OutputExpr>() {
                err(format!("{p}.outputs.{field}"), e);
            }
        }
        if w.batch.max_size == 0 || w.batch.max_size > 65_536 {
            err(format!("{p}.batch.max_size"), "must be between 1 and 65536".into());
        }
        if w.max_in_flight < w.batch.max_size {
            err(format!("{p}.max_in_flight"), "must be at least batch.max_size".into());
        }
        match w.max_payload_bytes {
            Some(0) => err(format!("{p}.max_payload_bytes"), "must be positive".into()),
            Some(n) => {
                // The dead letter of a record this large must still fit the bus.
                let (limit, what) = (c.bus.max_record_bytes(), c.bus.record_limit_reason());
                let most = limit.saturating_sub(MAX_HEADER_BYTES);
                if n > most {
                    err(
                        format!("{p}.max_payload_bytes"),
                        format!("{n} cannot fit: at most {most}, which is {what} less {MAX_HEADER_BYTES} bytes of dead-letter attributes"),
                    );
                }
            }
            None => {}
        }
        if w.commit_interval < ms {
            err(format!("{p}.commit_interval"), "must be at least 1ms".into());
        }
        let r = &w.retry;
        if r.max_attempts == 0 {
            err(format!("{p}.retry.max_attempts"), "must be at least 1 (the first attempt)".into());
        }
        if !(1.0..=1000.0).contains(&r.multiplier) {
            err(format!("{p}.retry.multiplier"), "must be a number between 1 and 1000".into());
        }
        if r.max_delay < r.initial_delay {
            err(format!("{p}.retry.max_delay"), "must be at least retry.initial_delay".into());
        }
        if w.sinks.is_empty() {
            err(format!("{p}.sinks"), "at least one sink is required".into());
        }
        for (j, s) in w.sinks.iter().enumerate() {
            for e in s.validate(&format!("{p}.sinks[{j}]"), &w.topic) {
                err(e.path, e.message);
            }
        }
    }
    errs
}

pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}
