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

use std::collections::HashSet;
use std::time::Duration;

use super::{DeadLetter, Filter};
use crate::bus::{Bus, BusError, ReadFrom};
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
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    /// (dlid, target topic) of what was (or, in a dry run, would be) replayed.
    pub replayed: Vec<(String, String)>,
    /// Already replayed by an earlier run.
    pub already: Vec<String>,
    /// Refused by the loop guard.
    pub refused: Vec<String>,
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
    let done: HashSet<Vec<u8>> = bus
        .read(&ledger, ReadFrom::Beginning, usize::MAX)
        .await?
        .into_iter()
        .filter_map(|d| d.record.key)
        .collect();
    let mut report = ReplayReport::default();
    let pause = opts.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    for d in bus.read(dlq_topic, ReadFrom::Beginning, usize::MAX).await? {
        let Some(dl) = DeadLetter::from_record(d.record, d.tp.partition, d.offset) else { continue };
        if !opts.filter.matches(&dl) {
            continue;
        }
        let id = dl.id().to_string();
        if done.contains(id.as_bytes()) || report.replayed.iter().any(|(r, _)| r == &id) {
            report.already.push(id);
            continue;
        }
        let mut original = dl.original();
        let count = replay_count(&original);
        if count >= opts.max_replays {
            report.refused.push(id);
            continue;
        }
        original.set_header(&format!("{CE_PREFIX}{REPLAYCOUNT}"), (count + 1).to_string());
        let target = format!("{}.replay", dl.attr("dlgroup"));
        if !opts.dry_run {
            bus.publish(&target, vec![original]).await?;
            let mark = Record { key: Some(id.as_bytes().to_vec()), headers: Default::default(), value: target.as_bytes().to_vec() };
            bus.publish(&ledger, vec![mark]).await?;
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
        report.replayed.push((id, target));
    }
    Ok(report)
}
