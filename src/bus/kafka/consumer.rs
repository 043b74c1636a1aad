//! A worker's group membership on Kafka: subscribe, poll batches, commit the
//! contiguous watermark that the worker hands over, with dead letters and
//! retry state made durable first.
//!
//! Rebalances happen inside librdkafka's poll, in [`GroupContext`]'s
//! callbacks. The worker must learn of one before it takes any record of the
//! new assignment, or it would mix records of a lost partition with those of
//! the same partition re-read from the committed offset. So a poll stops at
//! the first record that arrives after a rebalance and keeps it aside, and
//! returns nothing more until [`KafkaConsumer::maintain`] has reported the
//! rebalance (and, for new partitions, caught up with the attempts log).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance as KRebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::attempts::AttemptLog;
use super::KafkaBusConfig;
use super::{kerr, recv_batch, KafkaBus, Producer, Role, SetIfAbsent};
use crate::bus::{BusError, Commit, CommitOutcome, Delivery, Polled, Rebalance, TopicPartition};
use crate::error::{Classify, ErrorClass};

#[derive(Default)]
struct GroupState {
    owned: BTreeSet<TopicPartition>,
    /// Rebalances not yet reported by `maintain`.
    events: Rebalance,
    /// Offsets the worker has handled (staged, or handed to a commit that
    /// has not succeeded yet), committed on revocation.
    pending: BTreeMap<TopicPartition, u64>,
    joined: bool,
}

/// librdkafka's callbacks land here, on the thread that polls.
#[derive(Default)]
pub struct GroupContext {
    state: Mutex<GroupState>,
    /// Bumped by every rebalance callback.
    epoch: AtomicU64,
}

impl GroupContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn tps(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| TopicPartition { topic: e.topic().into(), partition: e.partition() as u32 }).collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        let KRebalance::Revoke(tpl) = rebalance else { return };
        let revoked = tps(tpl);
        // Commit on revocation: what the worker has handled since its last
        // commit. Still a member here, so the commit is accepted.
        let pending: Vec<(TopicPartition, u64)> = {
            let st = self.lock();
            revoked.iter().filter_map(|tp| st.pending.get(tp).map(|o| (tp.clone(), *o))).collect()
        };
        if !pending.is_empty() {
            let mut list = TopicPartitionList::new();
            for (tp, off) in &pending {
                let _ = list.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*off as i64));
            }
            match consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => tracing::info!(partitions = pending.len(), "committed pending offsets on revocation"),
                Err(e) => tracing::warn!(error = %e, "commit on revocation failed; the next owner repeats that work"),
            }
        }
        let mut st = self.lock();
        for tp in &revoked {
            st.owned.remove(tp);
            st.pending.remove(tp);
        }
        st.events.revoked.extend(revoked);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        let mut st = self.lock();
        match rebalance {
            KRebalance::Assign(tpl) => {
                let assigned = tps(tpl);
                st.owned.extend(assigned.iter().cloned());
                st.events.assigned.extend(assigned);
                st.joined = true;
            }
            KRebalance::Revoke(_) => {}
            KRebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
        drop(st);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<GroupContext>>,
    producer: Producer,
    attempts: AttemptLog,
    member: String,
    /// The context's epoch as last reported by `maintain`.
    seen_epoch: u64,
    /// New partitions are waiting for the attempts log to catch up.
    needs_sync: bool,
    /// The first record after a rebalance, held until `maintain` reports it.
    stash: Option<Delivery>,
    paused: bool,
    timeout: Duration,
}

/// Commit errors that mean "no longer a member of this generation": the
/// partitions are being (or were) handed to someone else.
fn is_fencing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::StaleMemberEpoch
        )
    )
}

/// A worker's group consumer: the pass-through properties, then what
/// at-least-once delivery needs (no auto commit, offsets stored only by
/// the worker). `bench-floor` uses it too, so its consumer is the worker's.
pub fn group_config(cfg: &KafkaBusConfig, group: &str, member: &str) -> ClientConfig {
    let mut c = cfg.client_config(Role::Consumer);
    c.set("group.id", group)
        .set("client.id", member)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set_if_absent("auto.offset.reset", "earliest")
        .set_if_absent("session.timeout.ms", &cfg.session_timeout.as_millis().to_string())
        // Bound what librdkafka prefetches: with `pause` this is the backpressure.
        .set_if_absent("queued.max.messages.kbytes", "16384");
    c
}

impl KafkaConsumer {
    pub(super) async fn join(bus: &KafkaBus, group: &str, topics: &[String]) -> Result<KafkaConsumer, BusError> {
        let cfg = bus.config();
        for t in topics {
            bus.ensure_topic(t, true).await?;
        }
        let attempts_topic = format!("{group}.attempts");
        bus.ensure_topic_with(&attempts_topic, 1, &[("cleanup.policy", "compact")]).await?;
        let member = crate::bus::member_id();
        let consumer: StreamConsumer<GroupContext> = group_config(cfg, group, &member)
            .create_with_context(GroupContext::default())
            .map_err(kerr("create consumer"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(kerr("subscribe"))?;
        let reader: BaseConsumer = cfg
            .client_config(Role::Consumer)
            .set("group.id", format!("{group}.attempts-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set_if_absent("fetch.wait.max.ms", "20")
            .create()
            .map_err(kerr("create attempts reader"))?;
        let attempts = AttemptLog::start(reader, &attempts_topic, &member, bus.producer().clone())?;
        Ok(KafkaConsumer {
            consumer: Arc::new(consumer),
            producer: bus.producer().clone(),
            attempts,
            member,
            seen_epoch: 0,
            needs_sync: false,
            stash: None,
            paused: false,
            timeout: cfg.request_timeout,
        })
    }

    pub fn lag_probe(&self) -> super::lag::LagProbe {
        super::lag::LagProbe { consumer: Arc::downgrade(&self.consumer), timeout: self.timeout }
    }

    pub fn member_id(&self) -> &str {
        &self.member
    }

    fn ctx(&self) -> &GroupContext {
        self.consumer.context()
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.ctx().lock().owned.iter().cloned().collect()
    }

    /// Whether the group has assigned this member its partitions (maybe none).
    pub fn joined(&self) -> bool {
        self.ctx().lock().joined
    }

    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Polled, BusError> {
        let epoch = self.ctx().epoch.load(Ordering::SeqCst);
        if epoch != self.seen_epoch || self.needs_sync {
            // A rebalance is waiting to be reported; nothing before `maintain`.
            return Ok(Polled::default());
        }
        let mut out: Vec<Delivery> = self.stash.take().into_iter().collect();
        let wait = if out.is_empty() { wait } else { Duration::ZERO };
        let ctx = self.consumer.context().clone();
        let got = recv_batch(&self.consumer, max.saturating_sub(out.len()), wait, |_| {
            ctx.epoch.load(Ordering::SeqCst) == epoch
        })
        .await;
        let (batch, held) = match got {
            Ok(v) => v,
            // librdkafka reconnects and refetches by itself (brokers restarting,
            // leaders moving); the worker keeps its in-flight work meanwhile.
            Err(e) if e.class() == ErrorClass::Transient => {
                tracing::warn!(member = %self.member, error = %e, "consume error; retrying");
                (Vec::new(), None)
            }
            Err(e) => return Err(e),
        };
        out.extend(batch);
        self.stash = held;
        for d in &mut out {
            d.attempts = self.attempts.get(&d.tp, d.offset);
        }
        Ok(Polled { deliveries: out })
    }

    /// Reports rebalances since the last call, and catches up with the
    /// attempts log when partitions were assigned.
    pub async fn maintain(&mut self) -> Result<Rebalance, BusError> {
        let epoch = self.ctx().epoch.load(Ordering::SeqCst);
        let mut reb = Rebalance::default();
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            reb = std::mem::take(&mut self.ctx().lock().events);
            if let Some(d) = &self.stash {
                if reb.revoked.contains(&d.tp) && !reb.assigned.contains(&d.tp) {
                    self.stash = None;
                }
            }
            if !reb.assigned.is_empty() {
                self.needs_sync = true;
            }
            // librdkafka starts a newly assigned partition unpaused, while
            // under cooperative rebalancing (`partition.assignment.strategy =
            // "cooperative-sticky"`) the partitions kept across it stay
            // paused. A full worker would then fetch from the new ones past
            // its limit, since `set_paused(true)` is a no-op while `paused`
            // is already set. Resuming every owned partition makes them all
            // match `paused = false`; the worker's next `set_paused(full)`
            // pauses them all again if it is still full. That pause does not
            // hold for a partition nothing was consumed from yet (measured
            // with this librdkafka, eager or cooperative: records published
            // after it still arrived), so a new partition prefetches anyway,
            // bounded by `queued.max.messages.kbytes`; a full worker polls
            // nothing, so its in-flight bound holds regardless.
            if self.paused {
                self.set_paused(false)?;
            }
            tracing::info!(member = %self.member, assigned = ?reb.assigned, revoked = ?reb.revoked, "rebalance");
        }
        if self.needs_sync {
            // A failed sync is retried on the next call; polls wait for it.
            match self.attempts.sync().await {
                Ok(()) => self.needs_sync = false,
                Err(e) => tracing::warn!(error = %e, "attempts log not caught up yet"),
            }
        }
        Ok(reb)
    }

    /// Records handled positions for the revocation callback to commit.
    pub fn stage(&mut self, offsets: Vec<(TopicPartition, u64)>) {
        let mut st = self.ctx().lock();
        for (tp, off) in offsets {
            if st.owned.contains(&tp) {
                let e = st.pending.entry(tp).or_insert(off);
                *e = (*e).max(off);
            }
        }
    }

    /// Pauses fetching from every owned partition while the worker is full,
    /// and resumes when it has room: backpressure without a growing buffer.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), BusError> {
        if paused == self.paused {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for tp in self.assignment() {
            tpl.add_partition(&tp.topic, tp.partition as i32);
        }
        if paused {
            self.consumer.pause(&tpl).map_err(kerr("pause"))?;
        } else {
            self.consumer.resume(&tpl).map_err(kerr("resume"))?;
        }
        self.paused = paused;
        Ok(())
    }

    /// Dead letters, then attempt state, then offsets: each durable before
    /// the next, so a crash in between repeats work but never skips it.
    pub async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, BusError> {
        let owned: BTreeSet<TopicPartition> = self.ctx().lock().owned.clone();
        let mut fenced = BTreeSet::new();
        let mut keep = |tp: &TopicPartition| {
            let ok = owned.contains(tp);
            if !ok {
                fenced.insert(tp.clone());
            }
            ok
        };
        let offsets: Vec<_> = commit.offsets.into_iter().filter(|(tp, _)| keep(tp)).collect();
        let upserts: Vec<_> = commit.attempts.into_iter().filter(|(tp, _, _)| keep(tp)).collect();
        let mut dead: BTreeMap<String, Vec<crate::event::Record>> = BTreeMap::new();
        for dl in commit.dead_letters {
            if keep(&dl.origin) {
                dead.entry(dl.topic).or_default().push(dl.record);
            }
        }
        for (topic, records) in &dead {
            let written = self.producer.produce_each(topic, None, records, false).await;
            let mut again = Vec::new();
            for (w, rec) in written.into_iter().zip(records) {
                match w {
                    Ok(_) => {}
                    // Cut to fit already, and still refused (a broker whose
                    // limit is below the client's): write its attributes
                    // alone rather than block the partition for ever.
                    Err(e) if e.refuses_record() => {
                        tracing::error!(topic = %topic, error = %e, "dead letter refused by the broker; writing its attributes only");
                        again.push(crate::dead_letter::strip_to_attributes(rec));
                    }
                    Err(e) => return Err(e),
                }
            }
            if !again.is_empty() {
                self.producer.produce_all(topic, None, &again, false).await?;
            }
        }
        self.attempts.write(&upserts, &offsets).await?;
        if !offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            {
                let mut st = self.ctx().lock();
                for (tp, off) in &offsets {
                    tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(*off as i64))
                        .map_err(kerr("commit"))?;
                    let e = st.pending.entry(tp.clone()).or_insert(*off);
                    *e = (*e).max(*off);
                }
            }
            let c = self.consumer.clone();
            let res = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| BusError::Task(e.to_string()))?;
            match res {
                Ok(()) => {
                    let mut st = self.ctx().lock();
                    for (tp, off) in &offsets {
                        if st.pending.get(tp) == Some(off) {
                            st.pending.remove(tp);
                        }
                    }
                }
                Err(e) if is_fencing(&e) => {
                    tracing::warn!(error = %e, "commit refused: the group is rebalancing");
                    fenced.extend(offsets.iter().map(|(tp, _)| tp.clone()));
                }
                Err(e) => return Err(super::KafkaBusError::Client { op: "commit", source: e }.into()),
            }
        }
        Ok(CommitOutcome { fenced: fenced.into_iter().collect() })
    }

    /// Leaves the group (librdkafka's close), so others take the partitions at once.
    pub async fn close(self) -> Result<(), BusError> {
        let KafkaConsumer { consumer, attempts, .. } = self;
        drop(attempts);
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await
        .map_err(|e| BusError::Task(e.to_string()))
    }
}
