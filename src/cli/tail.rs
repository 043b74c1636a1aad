//! `tail`: a topic's events as JSON lines. A record that is not a valid
//! CloudEvent is printed raw with the decoding error, never skipped.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use modelbus::bus::{Bus, ReadFrom};
use modelbus::event::Event;
use serde_json::json;

use super::escape::escape_control_json;
use super::load_config;

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
    let mut out = std::io::stdout().lock();
    let mut idle = Duration::ZERO;
    loop {
        let want = args.count.map_or(1000, |c| (c - seen).min(1000));
        if want == 0 {
            break;
        }
        let batch = follower.next_batch(want, Duration::from_millis(200)).await?;
        if batch.is_empty() {
            idle += Duration::from_millis(200);
            if args.idle_timeout.is_some_and(|t| idle >= t) {
                break;
            }
            continue;
        }
        idle = Duration::ZERO;
        for d in batch {
            let line = match Event::from_record(&d.record) {
                Ok(e) => e.to_structured(),
                Err(err) => json!({
                    "undecodable": err.to_string(),
                    "partition": d.tp.partition, "offset": d.offset,
                    "value": String::from_utf8_lossy(&d.record.value),
                }),
            };
            // JSON escapes only U+0000-U+001F; DEL, C1 controls and bidi
            // overrides in a published value would reach the terminal raw.
            writeln!(out, "{}", escape_control_json(&line.to_string()))?;
            seen += 1;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
