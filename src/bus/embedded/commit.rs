//! The embedded bus's commit: offsets, the attempt state of events still
//! retrying, and the dead letters that let an offset pass a failed event,
//! written as one SQLite transaction, so they move together or not at all.
//!
//! Every commit transaction checks that the committer still holds the lease
//! at the generation it acquired, so a process that stalled (SIGSTOP) past
//! the session timeout and then resumes cannot commit over its successor:
//! its partitions come back as fenced. The same transaction gives up the
//! leases the member is handing over (see [`super::membership`]), after the
//! work done on them is committed.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{append, ensure_topic};
use crate::bus::{Commit, TopicPartition};

/// Writes `commit` for the partitions `member` still holds at the generation
/// in `owned`, and frees the leases in `release`; returns the partitions
/// found fenced (their part of the commit is dropped).
pub(super) fn commit_tx(
    c: &mut Connection,
    group: &str,
    member: &str,
    owned: &HashMap<TopicPartition, i64>,
    commit: Commit,
    partitions: u32,
    release: &[TopicPartition],
) -> rusqlite::Result<Vec<TopicPartition>> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut verdict: HashMap<TopicPartition, bool> = HashMap::new();
    let mut holds = |tp: &TopicPartition| -> rusqlite::Result<bool> {
        if let Some(v) = verdict.get(tp) {
            return Ok(*v);
        }
        let ok = match owned.get(tp) {
            None => false,
            Some(generation) => tx
                .query_row(
                    "SELECT 1 FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3
                     AND owner = ?4 AND generation = ?5",
                    params![group, tp.topic, tp.partition, member, generation],
                    |_| Ok(()),
                )
                .optional()?
                .is_some(),
        };
        verdict.insert(tp.clone(), ok);
        Ok(ok)
    };
    // Dead letters first, in the same transaction as the offsets that pass them.
    let mut by_topic: BTreeMap<String, Vec<crate::event::Record>> = BTreeMap::new();
    for dl in commit.dead_letters {
        if holds(&dl.origin)? {
            by_topic.entry(dl.topic).or_default().push(dl.record);
        }
    }
    for (topic, records) in by_topic {
        let n = ensure_topic(&tx, &topic, partitions, false)?;
        append(&tx, &topic, n, records, 0)?;
    }
    for (tp, off, a) in &commit.attempts {
        if holds(tp)? {
            tx.execute(
                "INSERT INTO attempts(grp, topic, part, off, attempts, first_failure, last_failure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(grp, topic, part, off) DO UPDATE SET attempts = excluded.attempts,
                   first_failure = excluded.first_failure, last_failure = excluded.last_failure",
                params![group, tp.topic, tp.partition, *off as i64, a.attempts, a.first_failure_ms, a.last_failure_ms],
            )?;
        }
    }
    for (tp, next) in &commit.offsets {
        if holds(tp)? {
            tx.execute(
                "INSERT INTO offsets(grp, topic, part, next_offset) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(grp, topic, part) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                params![group, tp.topic, tp.partition, *next as i64],
            )?;
            tx.execute(
                "DELETE FROM attempts WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND off < ?4",
                params![group, tp.topic, tp.partition, *next as i64],
            )?;
        }
    }
    for tp in release {
        if holds(tp)? {
            tx.execute(
                "UPDATE leases SET owner = NULL WHERE grp = ?1 AND topic = ?2 AND part = ?3",
                params![group, tp.topic, tp.partition],
            )?;
        }
    }
    tx.commit()?;
    Ok(verdict.into_iter().filter(|(_, ok)| !ok).map(|(tp, _)| tp).collect())
}
