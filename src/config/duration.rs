//! Human-readable durations (`"250ms"`, `"5s"`, `"1m 30s"`) with an error
//! that says what was expected, so the path-prefixed message reads
//! `workers[0].batch.max_wait: expected a duration like "5ms"`.

use std::time::Duration;

use serde::{de::Error, Deserialize, Deserializer};

/// The longest duration any setting takes: ten years. Longer ones are
/// refused, because adding them to a clock reading could overflow (a
/// panic), and no timeout or interval means that much.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn parse<E: Error>(s: &str) -> Result<Duration, E> {
    let d = humantime::parse_duration(s)
        .map_err(|e| E::custom(format!("expected a duration like \"5ms\", got \"{s}\" ({e})")))?;
    if d > MAX {
        return Err(E::custom(format!("\"{s}\" is too long: at most 10 years")));
    }
    Ok(d)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Other(serde::de::IgnoredAny),
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Raw::deserialize(d)? {
        Raw::Text(s) => Ok(s),
        Raw::Other(_) => Err(D::Error::custom("expected a duration like \"5ms\" (a string)")),
    }
}

pub mod req {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(&text(d)?)
    }
}

pub mod opt {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parse(&text(d)?).map(Some)
    }
}
