//! `tail`: a topic's events as JSON lines. A record that is not a valid
//! CloudEvent is printed raw with the decoding error, never skipped. Every
//! line carries all of its record's headers (`headers`): attributes a
//! CloudEvent has no place for, and the `ce_dl*` failure attributes and
//! `ce_id` of a dead letter whose original could not be decoded.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use modelbus::bus::{Bus, Delivery, ReadFrom};
use modelbus::event::{Event, Headers};
use serde_json::{json, Map, Value};

use super::escape::escape_control_json;
use super::load_config;
use super::out::{reader_gone, Out};

#[derive(clap::Args)]
pub struct TailArgs {
    /// The topic to read.
    topic: String,
    #[arg(long, short, default_value = "modelbus.toml")]
    config: PathBuf,
    /// Start at the oldest retained record instead of only new ones.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<usize>,
    /// Stop when nothing new arrives for this long (e.g. "2s"); default: follow forever.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

pub async fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    let bus = Bus::open(&config)?;
    let from = if args.from_beginning { ReadFrom::Beginning } else { ReadFrom::End };
    let mut follower = bus.follow(&args.topic, from).await?;
    let mut seen = 0usize;
    let mut out = Out::new();
    let mut idle = Duration::ZERO;
    loop {
        let want = args.count.map_or(1000, |c| (c - seen).min(1000));
        if want == 0 {
            break;
        }
        let batch = follower.next_batch(want, Duration::from_millis(200)).await?;
        if batch.is_empty() {
            // `tail t | head -1` on a quiet topic: no write would fail.
            if reader_gone() {
                break;
            }
            idle += Duration::from_millis(200);
            if args.idle_timeout.is_some_and(|t| idle >= t) {
                break;
            }
            continue;
        }
        idle = Duration::ZERO;
        for d in batch {
            // JSON escapes only U+0000-U+001F; DEL, C1 controls and bidi
            // overrides in a published value would reach the terminal raw.
            writeln!(out, "{}", escape_control_json(&line_of(&d).to_string()))?;
            seen += 1;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A record as `tail` prints it: the event in structured mode, or what can
/// be said of a record that is not one; with all of its headers either way.
fn line_of(d: &Delivery) -> Value {
    let mut line = match Event::from_record(&d.record) {
        Ok(e) => e.to_structured(),
        Err(err) => json!({
            "undecodable": err.to_string(),
            "partition": d.tp.partition, "offset": d.offset,
            "key": d.record.key.as_deref().map(String::from_utf8_lossy),
            "value": String::from_utf8_lossy(&d.record.value),
        }),
    };
    line["headers"] = headers_json(&d.record.headers);
    line
}

/// Headers as a JSON object: a value as text, or `{"hex": …}` when it is
/// not UTF-8; a name that occurs more than once maps to all its values, in
/// order, as an array.
fn headers_json(headers: &Headers) -> Value {
    let mut m = Map::new();
    for (name, v) in headers.iter() {
        let v = match std::str::from_utf8(v) {
            Ok(text) => Value::from(text),
            Err(_) => json!({ "hex": hex::encode(v) }),
        };
        match m.get_mut(name) {
            None => {
                m.insert(name.to_string(), v);
            }
            Some(Value::Array(all)) => all.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
        }
    }
    Value::Object(m)
}
