//! Validating an event's data: choosing the version it is checked against
//! (the one its `dataschema` names, else the newest, or for workers any
//! version compatible with the newest) and turning the validator's reasons
//! into a bounded [`SchemaError::Violation`].

use serde_json::Value;

use super::{SchemaError, SchemaRegistry, Version};

/// At most this many validator reasons are quoted in an error.
const MAX_REASONS: usize = 10;
/// Reasons quote the offending value; a huge one is cut.
const MAX_REASON_CHARS: usize = 300;

impl SchemaRegistry {
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
