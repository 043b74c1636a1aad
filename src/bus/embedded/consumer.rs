//! A consumer group member on the embedded bus: the partitions it holds and
//! its position in each, polling them, and applying what membership and
//! commits report back to that state.
//!
//! The transactions live beside it: joining, heartbeats and lease takeover in
//! [`super::membership`], the commit fenced by the lease generation in
//! [`super::commit`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::commit::commit_tx;
use super::membership::{leave, rebalance, RebalanceCtx};
use super::wake::WalWatch;
use super::{blocking, ensure_topic, fetch_batch, store, Shared};
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
        blocking(&self.conn, move |c| leave(c, &group, &member).map_err(|e| store::store_err(&path, e))).await
    }
}
