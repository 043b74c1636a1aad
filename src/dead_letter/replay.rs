//! Replaying dead letters, safely. A replay puts the original record back on
//! the *failed group's* replay topic (`<group>.replay`, which that worker
//! also reads), so other consumers of the origin topic never see it again.
//! The record keeps its id and trace context (so the trace links the
//! failure to the replay), gets `replaycount` incremented, and starts with no
//! attempts. A record already replayed `max_replays` times is refused (a
//! loop guard). What was replayed is remembered in a ledger topic,
//! `<dlq topic>.replayed`, keyed by `dlid`, so running the tool twice does
//! not replay the same dead letter twice; a crash between the replay and the
//! ledger write can repeat one replay, which the result's deterministic id
//! (and input dedup, when on) absorbs.
//!
//! The target group is named by the dead letter's own `dlgroup` header, and
//! anyone who can write to the dead-letter topic can write that header. So
//! a replay goes only to a group the config says dead-letters to this
//! topic ([`ReplayOptions::groups`]); anything else is refused and
//! reported. A dead letter whose value was cut to fit the bus
//! (`dltruncated`) is refused too: the original is no longer in it.
//! Both topics are read a chunk at a time, never whole.

use std::collections::HashSet;
use std::time::Duration;

use super::{DeadLetter, Filter};
use crate::bus::{Bus, BusError};
use crate::event::{Record, CE_PREFIX};

pub const REPLAYCOUNT: &str = "replaycount";

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub filter: Filter,
    pub dry_run: bool,
    /// Most replays per second.
    pub rate: Option<f64>,
    /// Refuse a record already replayed this many times.
    pub max_replays: u32,
    /// The groups that may be replayed to: those of the workers whose
    /// dead-letter topic this is.
    pub groups: Vec<String>,
}

/// How many dead letters are read and held at a time.
const CHUNK: usize = 500;

#[derive(Debug, Default)]
pub struct ReplayReport {
    /// (dlid, target topic) of what was (or, in a dry run, would be) replayed.
    pub replayed: Vec<(String, String)>,
    /// Already replayed by an earlier run.
    pub already: Vec<String>,
    /// Refused by the loop guard.
    pub refused: Vec<String>,
    /// Refused for another reason: (dlid, why).
    pub refused_other: Vec<(String, String)>,
}

pub fn ledger_topic(dlq_topic: &str) -> String {
    format!("{dlq_topic}.replayed")
}

fn replay_count(r: &Record) -> u32 {
    r.header_str(&format!("{CE_PREFIX}{REPLAYCOUNT}")).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Replays the dead letters of `dlq_topic` that match the filter.
pub async fn replay(bus: &Bus, dlq_topic: &str, opts: &ReplayOptions) -> Result<ReplayReport, BusError> {
    let ledger = ledger_topic(dlq_topic);
    bus.ensure_topic(&ledger, false).await?;
    // The ids of what was replayed before: 36 bytes each, not the records.
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    let mut scan = bus.scan(&ledger).await?;
    loop {
        let chunk = scan.next_chunk(CHUNK * 10).await?;
        if chunk.is_empty() {
            break;
        }
        done.extend(chunk.into_iter().filter_map(|d| d.record.key));
    }
    let mut report = ReplayReport::default();
    let pause = opts.rate.filter(|r| r.is_finite() && *r > 0.0).and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok());
    let mut scan = bus.scan(dlq_topic).await?;
    loop {
        let chunk = scan.next_chunk(CHUNK).await?;
        if chunk.is_empty() {
            break;
        }
        for d in chunk {
            let Some(dl) = DeadLetter::from_record(d.record, d.tp.partition, d.offset) else { continue };
            if !opts.filter.matches(&dl) {
                continue;
            }
            let id = dl.id().to_string();
            if done.contains(id.as_bytes()) {
                report.already.push(id);
                continue;
            }
            let group = dl.attr("dlgroup");
            if !opts.groups.iter().any(|g| g == group) {
                let why =
                    format!("its group `{group}` is not a group of this config that dead-letters to `{dlq_topic}`");
                report.refused_other.push((id, why));
                continue;
            }
            if dl.truncated() {
                let why = format!(
                    "its value was cut to fit the bus ({} of {} bytes kept)",
                    dl.record.value.len(),
                    dl.attr("dloriginalsize")
                );
                report.refused_other.push((id, why));
                continue;
            }
            let mut original = dl.original();
            let count = replay_count(&original);
            if count >= opts.max_replays {
                report.refused.push(id);
                continue;
            }
            original.set_header(&format!("{CE_PREFIX}{REPLAYCOUNT}"), count.saturating_add(1).to_string());
            let target = format!("{group}.replay");
            if !opts.dry_run {
                bus.publish(&target, vec![original]).await?;
                let mark = Record {
                    key: Some(id.as_bytes().to_vec()),
                    headers: Default::default(),
                    value: target.as_bytes().to_vec(),
                };
                bus.publish(&ledger, vec![mark]).await?;
                if let Some(p) = pause {
                    tokio::time::sleep(p).await;
                }
            }
            done.insert(id.as_bytes().to_vec());
            report.replayed.push((id, target));
        }
    }
    Ok(report)
}
