//! Group membership on the embedded bus, as SQLite transactions: the
//! heartbeat that keeps a member live, the round-robin split of the group's
//! partitions among live members, taking over a lease, and leaving.
//!
//! Every member heartbeats into `members`. The live members (heartbeat within
//! the session timeout), sorted, split the group's partitions round-robin.
//! A member takes a partition's lease only when it is free or its owner is no
//! longer live, bumping the lease's generation. A member gives up a lease it
//! should no longer hold in its next commit (see [`super::commit`]), after the
//! work done on that partition is committed, so a handover repeats as little
//! as possible.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{log, store};
use crate::bus::{AttemptState, TopicPartition};

/// What one heartbeat needs to know of the member sending it.
pub(super) struct RebalanceCtx {
    pub(super) group: String,
    pub(super) member: String,
    pub(super) topics: Vec<String>,
    /// The leases this member holds, with the generation it acquired each at.
    pub(super) owned: Vec<(TopicPartition, i64)>,
    pub(super) session_timeout_ms: i64,
    /// Retention limits (age, records) when retention is due with this heartbeat.
    pub(super) retention: Option<(Option<Duration>, Option<u64>)>,
}

/// A partition taken over: its lease generation, the group's position in
/// it, and the attempt state of its events still being retried.
pub(super) type Gained = (TopicPartition, i64, u64, Vec<(u64, AttemptState)>);

#[derive(Default)]
pub(super) struct RebalanceOutcome {
    /// Leases another member holds now: this member stalled past its session.
    pub(super) lost: Vec<TopicPartition>,
    /// Leases to give up so that a newly live member can take them.
    pub(super) released: Vec<TopicPartition>,
    pub(super) gained: Vec<Gained>,
}

/// One heartbeat: records this member live, checks the leases it holds and
/// takes over the free ones it should hold, in one transaction.
pub(super) fn rebalance(c: &mut Connection, ctx: &RebalanceCtx) -> rusqlite::Result<RebalanceOutcome> {
    let now = store::now_ms();
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO members(grp, member, heartbeat, topics) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(grp, member) DO UPDATE SET heartbeat = excluded.heartbeat",
        params![ctx.group, ctx.member, now, ctx.topics.join(",")],
    )?;
    // Rows of long-dead members are only clutter; liveness is decided by time.
    tx.execute(
        "DELETE FROM members WHERE grp = ?1 AND heartbeat < ?2",
        params![ctx.group, now - 20 * ctx.session_timeout_ms],
    )?;
    let live: Vec<String> = {
        let mut st =
            tx.prepare_cached("SELECT member FROM members WHERE grp = ?1 AND heartbeat >= ?2 ORDER BY member")?;
        let rows = st.query_map(params![ctx.group, now - ctx.session_timeout_ms], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let me = live.iter().position(|m| m == &ctx.member).unwrap_or(0);
    let mut all = Vec::new();
    for t in &ctx.topics {
        let n: u32 = tx.query_row("SELECT partitions FROM topics WHERE name = ?1", [t], |r| r.get(0))?;
        all.extend((0..n).map(|p| TopicPartition { topic: t.as_str().into(), partition: p }));
    }
    all.sort();
    let desired: Vec<&TopicPartition> =
        all.iter().enumerate().filter(|(i, _)| i % live.len().max(1) == me).map(|(_, tp)| tp).collect();

    let mut out = RebalanceOutcome::default();
    let lease = |tp: &TopicPartition| -> rusqlite::Result<Option<(Option<String>, i64)>> {
        tx.query_row(
            "SELECT owner, generation FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3",
            params![ctx.group, tp.topic, tp.partition],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    };
    for (tp, generation) in &ctx.owned {
        let still_mine = matches!(lease(tp)?, Some((Some(o), g)) if o == ctx.member && g == *generation);
        if !still_mine {
            out.lost.push(tp.clone());
        } else if !desired.contains(&tp) {
            // Given up in the next commit, after the work done on it is committed.
            out.released.push(tp.clone());
        }
    }
    for tp in desired {
        if ctx.owned.iter().any(|(o, _)| o == tp) {
            continue;
        }
        let generation = match lease(tp)? {
            None => 1,
            Some((None, g)) => g + 1,
            Some((Some(owner), g)) if !live.contains(&owner) || owner == ctx.member => g + 1,
            // A live member still holds it; it lets go at its next commit.
            Some(_) => continue,
        };
        tx.execute(
            "INSERT INTO leases(grp, topic, part, owner, generation) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(grp, topic, part) DO UPDATE SET owner = excluded.owner, generation = excluded.generation",
            params![ctx.group, tp.topic, tp.partition, ctx.member, generation],
        )?;
        let position: i64 = tx
            .query_row(
                "SELECT next_offset FROM offsets WHERE grp = ?1 AND topic = ?2 AND part = ?3",
                params![ctx.group, tp.topic, tp.partition],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let attempts = {
            let mut st = tx.prepare_cached(
                "SELECT off, attempts, first_failure, last_failure FROM attempts
                 WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND off >= ?4",
            )?;
            let rows = st.query_map(params![ctx.group, tp.topic, tp.partition, position], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    AttemptState { attempts: r.get(1)?, first_failure_ms: r.get(2)?, last_failure_ms: r.get(3)? },
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        out.gained.push((tp.clone(), generation, position as u64, attempts));
    }
    if let Some((age, count)) = ctx.retention {
        log::enforce_retention(&tx, age.map(|a| now - a.as_millis() as i64), count)?;
    }
    tx.commit()?;
    Ok(out)
}

/// Leaving the group: frees this member's leases at once, so the others need
/// not wait out its session timeout, and removes its heartbeat.
pub(super) fn leave(c: &mut Connection, group: &str, member: &str) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("UPDATE leases SET owner = NULL WHERE grp = ?1 AND owner = ?2", params![group, member])?;
    tx.execute("DELETE FROM members WHERE grp = ?1 AND member = ?2", params![group, member])?;
    tx.commit()
}
