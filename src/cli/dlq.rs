//! `dlq list` and `dlq show`: what was dead-lettered and why.
//!
//! A dead letter is named two ways: by its `dlid` (a hash of where the
//! failed event was read and by which group, the same however often it is
//! written) and by its position on the dead-letter topic,
//! `<topic>/<partition>@<offset>`, which `list` prints. `show` reads a
//! position with one read; a `dlid` cannot be inverted, so it scans.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use modelbus::bus::Bus;
use modelbus::dead_letter::replay::{replay, ReplayOptions};
use modelbus::dead_letter::{DeadLetter, Filter};
use serde_json::Value;

use super::escape::{escape_control, escape_control_json};
use super::load_config;
use super::out::Out;

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters in topic order, with counts by stage and reason.
    List {
        #[command(flatten)]
        sel: Selection,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on their group's replay topic (`<group>.replay`).
    ///
    /// Takes the same filters as `list`. Each original record keeps its id and trace,
    /// gets `replaycount` incremented and starts with no attempts. A dead letter already
    /// replayed is skipped (the tool remembers); one replayed too often is refused.
    Replay {
        #[command(flatten)]
        sel: Selection,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most replays per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Refuse events already replayed this many times (default: the worker's `max_replays`).
        #[arg(long)]
        max_replays: Option<u32>,
    },
    /// Print one dead letter: its failure attributes and the original record.
    Show {
        /// The dead letter's position as `list` prints it, `<topic>/<partition>@<offset>`
        /// (one read), or its id, `dlid` (reads every dead-letter topic).
        id: String,
        #[arg(long, short, default_value = "modelbus.toml")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct Selection {
    #[arg(long, short, default_value = "modelbus.toml")]
    config: PathBuf,
    /// Dead-letter topic (default: every worker's).
    #[arg(long)]
    topic: Option<String>,
    /// Only this worker's.
    #[arg(long)]
    worker: Option<String>,
    /// Only this stage: decode, validate, features, infer, emit.
    #[arg(long)]
    stage: Option<String>,
    /// Only this error class: permanent or transient.
    #[arg(long)]
    class: Option<String>,
    /// Only failures at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only failures at or before this RFC 3339 time.
    #[arg(long)]
    until: Option<DateTime<Utc>>,
}

impl Selection {
    fn filter(&self) -> Filter {
        Filter {
            worker: self.worker.clone(),
            stage: self.stage.clone(),
            class: self.class.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

/// The dead-letter topics to read: the one asked for, or every worker's.
async fn topics_of(bus: &Bus, config: &modelbus::config::Config, topic: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut topics: Vec<String> = match topic {
        Some(t) => vec![t.to_string()],
        None => config.workers.iter().map(|w| w.dead_letter_topic()).collect(),
    };
    topics.sort();
    topics.dedup();
    let existing: Vec<String> = bus.topics().await?.into_iter().map(|(t, _)| t).collect();
    topics.retain(|t| existing.contains(t));
    Ok(topics)
}

/// Calls `each` with every dead letter of `topics` and the topic it is on,
/// in topic order, a chunk at a time: a dead-letter topic is never held in
/// memory whole.
async fn for_each_dead_letter(
    bus: &Bus,
    topics: &[String],
    mut each: impl FnMut(&str, DeadLetter) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for t in topics {
        let mut scan = bus.scan(t).await?;
        loop {
            let chunk = scan.next_chunk(500).await?;
            if chunk.is_empty() {
                break;
            }
            for d in chunk {
                if let Some(dl) = DeadLetter::from_record(d.record, d.tp.partition, d.offset) {
                    each(t, dl)?;
                }
            }
        }
    }
    Ok(())
}

/// Where a dead letter is on its dead-letter topic.
struct Position {
    topic: String,
    partition: u32,
    offset: u64,
}

impl Position {
    fn of(topic: &str, d: &DeadLetter) -> Position {
        Position { topic: topic.to_string(), partition: d.dlq_partition, offset: d.dlq_offset }
    }

    /// `<topic>/<partition>@<offset>`; None for anything without an `@`
    /// (a `dlid` has none).
    fn parse(s: &str) -> Option<anyhow::Result<Position>> {
        let (at, offset) = s.rsplit_once('@')?;
        let parsed = at.rsplit_once('/').and_then(|(topic, partition)| {
            let (partition, offset) = (partition.parse().ok()?, offset.parse().ok()?);
            (!topic.is_empty()).then(|| Position { topic: topic.to_string(), partition, offset })
        });
        Some(parsed.with_context(|| format!("`{s}`: expected a dlid or <topic>/<partition>@<offset>")))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A dead letter as `list --json` prints it: every `dl*` attribute, the
/// original event's `id` (its `ce_id`, null when it had none) and the
/// dead letter's `position` (for `show`).
fn list_json(at: &Position, d: &DeadLetter) -> Value {
    let mut line: serde_json::Map<String, Value> =
        d.attrs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    line.insert("id".into(), d.record.header_str("ce_id").into());
    line.insert("position".into(), at.to_string().into());
    Value::Object(line)
}

/// The dead letter at `at`: one read of the bus.
async fn dead_letter_at(bus: &Bus, at: &Position) -> anyhow::Result<DeadLetter> {
    let Some(d) = bus.read_at(&at.topic, at.partition, at.offset).await? else {
        bail!("no record at {at}");
    };
    DeadLetter::from_record(d.record, d.tp.partition, d.offset)
        .with_context(|| format!("the record at {at} is not a dead letter"))
}

/// The dead letter with this `dlid`, from a scan of every dead-letter topic
/// of the config. The last one wins: a crash before a commit repeats a dead
/// letter with the same id.
async fn dead_letter_with_id(bus: &Bus, config: &modelbus::config::Config, id: &str) -> anyhow::Result<DeadLetter> {
    let topics = topics_of(bus, config, None).await?;
    let mut found = None;
    for_each_dead_letter(bus, &topics, |_, d| {
        if d.id() == id {
            found = Some(d);
        }
        Ok(())
    })
    .await?;
    found.with_context(|| format!("no dead letter with id `{id}`"))
}

/// The most replays per second `--rate` takes, and the fewest.
const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.001..=1_000_000.0;

pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List { sel, json } => {
            let config = load_config(&sel.config)?;
            let filter = sel.filter();
            let bus = Bus::open(&config)?;
            let topics = topics_of(&bus, &config, sel.topic.as_deref()).await?;
            let mut by_reason: BTreeMap<(String, String), usize> = BTreeMap::new();
            let mut picked = 0usize;
            let mut out = Out::new();
            for_each_dead_letter(&bus, &topics, |topic, d| {
                if !filter.matches(&d) {
                    return Ok(());
                }
                picked += 1;
                let at = Position::of(topic, &d);
                if json {
                    writeln!(out, "{}", escape_control_json(&list_json(&at, &d).to_string()))?;
                } else {
                    // Attribute values come from the records: control
                    // characters in them must not reach the terminal.
                    let a = |name: &str| escape_control(d.attr(name)).into_owned();
                    writeln!(
                        out,
                        "{}  {}  {:<8} {:<9} {:<28} attempts={} from {}/{}@{}  {}",
                        a("dlid"),
                        escape_control(&at.to_string()),
                        a("dlstage"),
                        a("dlclass"),
                        a("dlcode"),
                        a("dlattempts"),
                        a("dltopic"),
                        a("dlpartition"),
                        a("dloffset"),
                        a("dllastfailure"),
                    )?;
                }
                *by_reason.entry((d.attr("dlstage").into(), d.attr("dlcode").into())).or_default() += 1;
                Ok(())
            })
            .await?;
            if !json {
                writeln!(out, "\n{picked} dead letter(s)")?;
                for ((stage, code), n) in by_reason {
                    writeln!(out, "  {n:>6}  {:<9} {}", escape_control(&stage), escape_control(&code))?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { sel, dry_run, rate, max_replays } => {
            if let Some(r) = rate.filter(|r| !RATE_RANGE.contains(r)) {
                bail!("--rate {r}: must be between {} and {} replays per second", RATE_RANGE.start(), RATE_RANGE.end());
            }
            let config = load_config(&sel.config)?;
            let bus = Bus::open(&config)?;
            let filter = sel.filter();
            let mut topics: Vec<(String, u32)> = config
                .workers
                .iter()
                .filter(|w| sel.worker.as_deref().is_none_or(|n| n == w.name))
                .map(|w| (w.dead_letter_topic(), max_replays.unwrap_or(w.max_replays)))
                .collect();
            if let Some(t) = &sel.topic {
                topics.retain(|(d, _)| d == t);
                if topics.is_empty() {
                    topics.push((t.clone(), max_replays.unwrap_or(3)));
                }
            }
            topics.dedup();
            let existing: Vec<String> = bus.topics().await?.into_iter().map(|(t, _)| t).collect();
            let (mut replayed, mut already, mut refused, mut other) = (0, 0, 0, 0);
            let mut out = Out::new();
            for (topic, max) in topics.iter().filter(|(t, _)| existing.contains(t)) {
                // Only the groups this config dead-letters to `topic` may be
                // replayed to, whatever a dead letter's `dlgroup` says.
                let groups = config
                    .workers
                    .iter()
                    .filter(|w| &w.dead_letter_topic() == topic)
                    .map(|w| w.group().to_string())
                    .collect();
                let opts = ReplayOptions { filter: filter.clone(), dry_run, rate, max_replays: *max, groups };
                let report = replay(&bus, topic, &opts).await?;
                for (id, target) in &report.replayed {
                    writeln!(out, "{} {id} -> {target}", if dry_run { "would replay" } else { "replayed" })?;
                }
                for id in &report.refused {
                    writeln!(out, "refused {id}: already replayed {max} time(s) (loop guard)")?;
                }
                for (id, why) in &report.refused_other {
                    writeln!(out, "refused {}: {}", escape_control(id), escape_control(why))?;
                }
                replayed += report.replayed.len();
                already += report.already.len();
                refused += report.refused.len();
                other += report.refused_other.len();
            }
            writeln!(
                out,
                "{}{replayed} replayed, {already} skipped (replayed before), {refused} refused by the loop guard, {other} refused (not replayable)",
                if dry_run { "dry run: " } else { "" }
            )?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, config } => {
            let config = load_config(&config)?;
            let bus = Bus::open(&config)?;
            let d = match Position::parse(&id) {
                Some(at) => dead_letter_at(&bus, &at?).await?,
                None => dead_letter_with_id(&bus, &config, &id).await?,
            };
            let mut out = Out::new();
            writeln!(out, "{}", serde_json::to_string_pretty(&d.to_json())?)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
