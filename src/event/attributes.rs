//! The rules an attribute obeys whichever content mode carried it: required
//! ones non-empty, `specversion` 1.0, extension names, `time` in RFC 3339
//! (and how modelbus writes it), a data content type that is not a
//! CloudEvents format.

use chrono::{DateTime, SecondsFormat, Utc};

use super::EventError;

pub(super) fn nonempty(name: &'static str, v: String) -> Result<String, EventError> {
    if v.is_empty() {
        return Err(EventError::InvalidAttribute { name: name.into(), reason: "must not be empty".into() });
    }
    Ok(v)
}

pub(super) fn check_spec(spec: &str) -> Result<(), EventError> {
    if spec == "1.0" {
        Ok(())
    } else {
        Err(EventError::SpecVersion(spec.into()))
    }
}

/// CloudEvents: extension names are lowercase ASCII letters or digits.
pub(super) fn check_extension_name(name: &str) -> Result<(), EventError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(EventError::InvalidAttribute {
            name: name.into(),
            reason: "extension names must be lowercase letters and digits".into(),
        })
    }
}

/// How modelbus writes a time: RFC 3339 in UTC, to the microsecond.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>, EventError> {
    use chrono::Datelike;
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| EventError::InvalidAttribute { name: "time".into(), reason: e.to_string() })?;
    // RFC 3339 has four-digit years: a time whose offset moves it past
    // 9999 or before 0000 in UTC could not be written back (fuzzing found
    // `9999-12-31T23:59:59-23:59`).
    if !(0..=9999).contains(&t.year()) {
        return Err(EventError::InvalidAttribute {
            name: "time".into(),
            reason: format!("`{s}` is outside years 0000-9999 in UTC"),
        });
    }
    Ok(t)
}

/// A data content type that names a CloudEvents format is structured
/// mode's own: written back as `content-type`, it would make the event's
/// data be read as a whole event (fuzzing found it).
pub(super) fn check_datacontenttype(dct: Option<&str>) -> Result<(), EventError> {
    match dct {
        Some(d) if d.trim_start().to_ascii_lowercase().starts_with("application/cloudevents") => {
            Err(EventError::InvalidAttribute {
                name: "datacontenttype".into(),
                reason: format!("`{d}` is a CloudEvents format, not a type of data"),
            })
        }
        _ => Ok(()),
    }
}
