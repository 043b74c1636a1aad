//! `dlq list` and `dlq show`: what was dead-lettered and why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use modelbus::bus::{Bus, ReadFrom};
use modelbus::dead_letter::replay::{replay, ReplayOptions};
use modelbus::dead_letter::{DeadLetter, Filter};

use super::load_config;

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest last, with counts by stage and reason.
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
        /// The dead letter's id (`dlid`).
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

async fn read_all(config: &modelbus::config::Config, topic: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
    let bus = Bus::open(config)?;
    let mut topics: Vec<String> = match topic {
        Some(t) => vec![t.to_string()],
        None => config.workers.iter().map(|w| w.dead_letter_topic()).collect(),
    };
    topics.sort();
    topics.dedup();
    let existing: Vec<String> = bus.topics().await?.into_iter().map(|(t, _)| t).collect();
    let mut out = Vec::new();
    for t in topics.iter().filter(|t| existing.contains(t)) {
        for d in bus.read(t, ReadFrom::Beginning, usize::MAX).await? {
            if let Some(dl) = DeadLetter::from_record(d.record, d.tp.partition, d.offset) {
                out.push(dl);
            }
        }
    }
    out.sort_by_key(|d| d.last_failure());
    Ok(out)
}

pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List { sel, json } => {
            let config = load_config(&sel.config)?;
            let filter = sel.filter();
            let all = read_all(&config, sel.topic.as_deref()).await?;
            let picked: Vec<&DeadLetter> = all.iter().filter(|d| filter.matches(d)).collect();
            let mut by_reason: BTreeMap<(String, String), usize> = BTreeMap::new();
            for d in &picked {
                if json {
                    println!("{}", serde_json::to_string(&d.attrs)?);
                } else {
                    println!(
                        "{}  {:<8} {:<9} {:<28} attempts={} {}/{}@{}  {}",
                        d.id(),
                        d.attr("dlstage"),
                        d.attr("dlclass"),
                        d.attr("dlcode"),
                        d.attr("dlattempts"),
                        d.attr("dltopic"),
                        d.attr("dlpartition"),
                        d.attr("dloffset"),
                        d.attr("dllastfailure"),
                    );
                }
                *by_reason.entry((d.attr("dlstage").into(), d.attr("dlcode").into())).or_default() += 1;
            }
            if !json {
                println!("\n{} dead letter(s)", picked.len());
                for ((stage, code), n) in by_reason {
                    println!("  {n:>6}  {stage:<9} {code}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { sel, dry_run, rate, max_replays } => {
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
            let (mut replayed, mut already, mut refused) = (0, 0, 0);
            for (topic, max) in topics.iter().filter(|(t, _)| existing.contains(t)) {
                let opts = ReplayOptions { filter: filter.clone(), dry_run, rate, max_replays: *max };
                let report = replay(&bus, topic, &opts).await?;
                for (id, target) in &report.replayed {
                    println!("{} {id} -> {target}", if dry_run { "would replay" } else { "replayed" });
                }
                for id in &report.refused {
                    println!("refused {id}: already replayed {max} time(s) (loop guard)");
                }
                replayed += report.replayed.len();
                already += report.already.len();
                refused += report.refused.len();
            }
            println!(
                "{}{replayed} replayed, {already} skipped (replayed before), {refused} refused by the loop guard",
                if dry_run { "dry run: " } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, config } => {
            let config = load_config(&config)?;
            let all = read_all(&config, None).await?;
            let Some(d) = all.iter().rev().find(|d| d.id() == id) else {
                bail!("no dead letter with id `{id}`")
            };
            println!("{}", serde_json::to_string_pretty(&d.to_json())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
