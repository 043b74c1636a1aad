//! Consumer groups on the embedded bus: membership by heartbeat, partitions
//! by lease, and commits fenced by the lease generation.
//!
//! Every member heartbeats into `members`. The live members (heartbeat within
//! the session timeout), sorted, split the group's partitions round-robin.
//! A member takes a partition's lease only when it is free or its owner is no
//! longer live, bumping the lease's generation. A member gives up a lease it
//! should no longer hold in its next commit, after the work done on that
//! partition is committed, so a handover repeats as little as possible.
//!
//! Every commit transaction checks that the committer still holds the lease
//! at the generation it acquired, so a process that stalled (SIGSTOP) past
//! the session timeout and then resumes cannot commit over its successor:
//! its partitions come back as fenced.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::wake::WalWatch;
use super::{append, blocking, ensure_topic, fetch_batch, log, store, Shared};
use crate::bus::{AttemptState, BusError, Commit, CommitOutcome, Polled, Rebalance, TopicPartition};

#[derive(Debug, Clone)]
struct Owned {
    generation: i64,
    position: u64,
}

pub struct EmbeddedConsumer {
    shared: Arc<Shared>,
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    group: String,
    topics: Vec<String>,
    member: String,
    owned: BTreeMap<TopicPartition, Owned>,
    /// Attempt state loaded with a newly acquired partition, handed out with
    /// the matching deliveries.
    attempts: HashMap<(TopicPartition, u64), AttemptState>,
    last_heartbeat: Option<Instant>,
    last_retention: Instant,
    /// Revocations seen during a poll or a commit, reported by the next `maintain`.
    revoked_backlog: Vec<TopicPartition>,
    /// Partitions to hand over: no longer fetched, released by the next
    /// commit once what was done on them is committed.
    releasing: Vec<TopicPartition>,
    next_partition: usize,
    /// Wakes an idle poll when another process writes (None: poll only).
    wal: Option<WalWatch>,
    /// Held while the consumer lives: lag probes see it gone once closed.
    alive: Arc<()>,
}

impl EmbeddedConsumer {
    pub(crate) async fn join(
        shared: Arc<Shared>,
        conn: Arc<Mutex<Connection>>,
        group: &str,
        topics: &[String],
    ) -> Result<Self, BusError> {
        let member = crate::bus::member_id();
        let path = shared.dir.join(store::FILE_NAME);
        let mut c = EmbeddedConsumer {
            wal: WalWatch::new(&path),
            path,
            shared,
            conn,
            group: group.to_string(),
            topics: topics.to_vec(),
            member,
            owned: BTreeMap::new(),
            attempts: HashMap::new(),
            last_heartbeat: None,
            last_retention: Instant::now(),
            revoked_backlog: Vec::new(),
            releasing: Vec::new(),
            next_partition: 0,
            alive: Arc::new(()),
        };
        let (topics, parts, path) = (c.topics.clone(), c.shared.cfg.partitions, c.path.clone());
        blocking(&c.conn, move |conn| {
            for t in &topics {
                ensure_topic(conn, t, parts, true).map_err(|e| store::store_err(&path, e))?;
            }
            Ok(())
        })
        .await?;
        c.maintain(true).await?;
        Ok(c)
    }

    pub fn member_id(&self) -> &str {
        &self.member
    }

    /// A lag reader for this member's partitions (see [`super::lag`]).
    pub fn lag_probe(&self) -> super::lag::EmbeddedLagProbe {
        super::lag::EmbeddedLagProbe {
            path: self.path.clone(),
            group: self.group.clone(),
            member: self.member.clone(),
            alive: Arc::downgrade(&self.alive),
            conn: Default::default(),
        }
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    /// Heartbeats and rebalances when a heartbeat is due (or `force`).
    pub async fn maintain(&mut self, force: bool) -> Result<Rebalance, BusError> {
        let mut reb = self.heartbeat(force).await?;
        reb.revoked.splice(0..0, self.revoked_backlog.drain(..));
        Ok(reb)
    }

    async fn heartbeat(&mut self, force: bool) -> Result<Rebalance, BusError> {
        let cfg = &self.shared.cfg;
        if !force && self.last_heartbeat.is_some_and(|t| t.elapsed() < cfg.heartbeat_interval) {
            return Ok(Rebalance::default());
        }
        self.last_heartbeat = Some(Instant::now());
        // Retention scans records, so it runs every 20 heartbeats, not every one.
        let retention_due = self.last_retention.elapsed() > cfg.heartbeat_interval * 20
            && (cfg.retention_age.is_some() || cfg.retention_records.is_some());
        if retention_due {
            self.last_retention = Instant::now();
        }
        let ctx = RebalanceCtx {
            group: self.group.clone(),
            member: self.member.clone(),
            topics: self.topics.clone(),
            owned: self.owned.iter().map(|(tp, o)| (tp.clone(), o.generation)).collect(),
            session_timeout_ms: cfg.session_timeout.as_millis() as i64,
            retention: retention_due.then_some((cfg.retention_age, cfg.retention_records)),
        };
        let path = self.path.clone();
        let outcome = blocking(&self.conn, move |c| rebalance(c, &ctx).map_err(|e| store::store_err(&path, e))).await?;
        let mut reb = Rebalance::default();
        if !outcome.lost.is_empty() {
            tracing::warn!(group = %self.group, member = %self.member, partitions = ?outcome.lost,
                "lease lost to another member (this member missed its session timeout)");
        }
        for tp in outcome.released {
            if !self.releasing.contains(&tp) {
                self.releasing.push(tp);
            }
        }
        for tp in outcome.lost {
            self.forget(&tp);
            reb.revoked.push(tp);
        }
        for (tp, generation, position, attempts) in outcome.gained {
            for (off, a) in attempts {
                self.attempts.insert((tp.clone(), off), a);
            }
            self.owned.insert(tp.clone(), Owned { generation, position });
            reb.assigned.push(tp);
        }
        if !reb.assigned.is_empty() {
            tracing::info!(group = %self.group, member = %self.member, partitions = ?reb.assigned,
                "partitions assigned");
        }
        Ok(reb)
    }

    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Polled, BusError> {
        // The runtime's clock, so a paused test clock governs waiting too.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.notify.notified();
            if let Some(w) = &mut self.wal {
                w.clear();
            }
            let mut parts: Vec<(TopicPartition, u64)> = self
                .owned
                .iter()
                .filter(|(tp, _)| !self.releasing.contains(tp))
                .map(|(tp, o)| (tp.clone(), o.position))
                .collect();
            if !parts.is_empty() {
                // Rotate the starting partition so a busy one cannot starve the rest.
                let k = self.next_partition % parts.len();
                parts.rotate_left(k);
                self.next_partition = self.next_partition.wrapping_add(1);
            }
            let path = self.path.clone();
            let mut batch =
                blocking(&self.conn, move |c| fetch_batch(c, parts, max).map_err(|e| store::store_err(&path, e)))
                    .await?;
            for d in &mut batch {
                if let Some(o) = self.owned.get_mut(&d.tp) {
                    o.position = o.position.max(d.offset + 1);
                }
                // Nearly always empty: skip hashing every delivery's key.
                if !self.attempts.is_empty() {
                    d.attempts = self.attempts.remove(&(d.tp.clone(), d.offset));
                }
            }
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Polled { deliveries: batch });
            }
            let cfg = &self.shared.cfg;
            let nap = cfg
                .poll_interval
                .min(cfg.heartbeat_interval)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            super::wake::nap(nap, notified, self.wal.as_mut()).await;
            // Keep heartbeating while idle; the worker hears of revocations
            // at its next `maintain`.
            let reb = self.heartbeat(false).await?;
            self.revoked_backlog.extend(reb.revoked);
        }
    }

    fn forget(&mut self, tp: &TopicPartition) {
        self.owned.remove(tp);
        self.releasing.retain(|t| t != tp);
        self.attempts.retain(|(t, _), _| t != tp);
    }

    pub async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, BusError> {
        let empty = commit.offsets.is_empty() && commit.attempts.is_empty() && commit.dead_letters.is_empty();
        if empty && self.releasing.is_empty() {
            return Ok(CommitOutcome::default());
        }
        let release = std::mem::take(&mut self.releasing);
        let owned: HashMap<TopicPartition, i64> = self.owned.iter().map(|(tp, o)| (tp.clone(), o.generation)).collect();
        let (group, member, path) = (self.group.clone(), self.member.clone(), self.path.clone());
        let parts = self.shared.cfg.partitions;
        let had_dead_letters = !commit.dead_letters.is_empty();
        let rel = release.clone();
        let fenced = match blocking(&self.conn, move |c| {
            commit_tx(c, &group, &member, &owned, commit, parts, &rel).map_err(|e| store::store_err(&path, e))
        })
        .await
        {
            Ok(f) => f,
            Err(e) => {
                self.releasing = release;
                return Err(e);
            }
        };
        for tp in &fenced {
            self.forget(tp);
        }
        if !release.is_empty() {
            tracing::info!(group = %self.group, member = %self.member, partitions = ?release,
                "partitions committed and released for rebalance");
        }
        for tp in release {
            if !fenced.contains(&tp) {
                self.forget(&tp);
                self.revoked_backlog.push(tp);
            }
        }
        if had_dead_letters {
            self.shared.notify.notify_waiters();
        }
        Ok(CommitOutcome { fenced })
    }

    pub async fn close(self) -> Result<(), BusError> {
        let (group, member, path) = (self.group.clone(), self.member.clone(), self.path.clone());
        blocking(&self.conn, move |c| {
            let tx =
                c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| store::store_err(&path, e))?;
            tx.execute("UPDATE leases SET owner = NULL WHERE grp = ?1 AND owner = ?2", params![group, member])
                .and_then(|_| tx.execute("DELETE FROM members WHERE grp = ?1 AND member = ?2", params![group, member]))
                .and_then(|_| tx.commit())
                .map_err(|e| store::store_err(&path, e))
        })
        .await
    }
}

struct RebalanceCtx {
    group: String,
    member: String,
    topics: Vec<String>,
    owned: Vec<(TopicPartition, i64)>,
    session_timeout_ms: i64,
    retention: Option<(Option<Duration>, Option<u64>)>,
}

/// A partition taken over: its lease generation, the group's position in
/// it, and the attempt state of its events still being retried.
type Gained = (TopicPartition, i64, u64, Vec<(u64, AttemptState)>);

#[derive(Default)]
struct RebalanceOutcome {
    /// Leases another member holds now: this member stalled past its session.
    lost: Vec<TopicPartition>,
    /// Leases to give up so that a newly live member can take them.
    released: Vec<TopicPartition>,
    gained: Vec<Gained>,
}

fn rebalance(c: &mut Connection, ctx: &RebalanceCtx) -> rusqlite::Result<RebalanceOutcome> {
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

fn commit_tx(
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
