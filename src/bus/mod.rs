//! The bus: topics with partitions, keys, consumer groups, committed offsets
//! and headers. One API, one enum of backends that delegates by `match`.
//!
//! A consumer's commit carries everything that must move together with the
//! group's position: the offsets, the retry attempt state of events still
//! being retried, and the dead letters that let the position move past a
//! failed event. A backend makes these durable atomically (embedded: one
//! SQLite transaction) or in the order that keeps the at-least-once promise.

pub mod embedded;
pub mod kafka;
pub mod partition;

use std::time::Duration;

use crate::config::{BusConfig, Config};
use crate::error::{Classify, ErrorClass};
use crate::event::Record;

/// A bus error: a backend's own, which classifies itself, or one any
/// backend may give.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedBusError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaBusError),
    #[error("topic `{0}` does not exist")]
    NoSuchTopic(String),
    #[error("partition {partition} out of range for topic `{topic}` ({partitions} partitions)")]
    BadPartition { topic: String, partition: u32, partitions: u32 },
    #[error("bus task failed: {0}")]
    Task(String),
    #[error("record of {size} bytes is over the bus's limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("injected {0} fault at {1}")]
    Injected(ErrorClass, &'static str),
}

impl Classify for BusError {
    fn class(&self) -> ErrorClass {
        match self {
            BusError::Embedded(e) => e.class(),
            BusError::Kafka(e) => e.class(),
            BusError::Task(_) => ErrorClass::Transient,
            BusError::RecordTooLarge { .. } => ErrorClass::Permanent,
            BusError::Injected(class, _) => *class,
            BusError::NoSuchTopic(_) | BusError::BadPartition { .. } => ErrorClass::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            BusError::Embedded(e) => e.code(),
            BusError::Kafka(e) => e.code(),
            BusError::NoSuchTopic(_) => "no_such_topic",
            BusError::BadPartition { .. } => "bad_partition",
            BusError::Task(_) => "bus_task",
            BusError::RecordTooLarge { .. } => "record_too_large",
            BusError::Injected(..) => "injected_fault",
        }
    }
}

impl BusError {
    /// Whether the bus refused this one record for what it is (its size),
    /// so that no retry can succeed: the record fails alone, permanently.
    pub fn refuses_record(&self) -> bool {
        match self {
            BusError::RecordTooLarge { .. } => true,
            BusError::Kafka(e) => e.refuses_record(),
            _ => false,
        }
    }
}

/// What became of one record of a publish: where it was written, or why
/// the bus refused it.
pub type Published = Result<(u32, u64), BusError>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Shared: every in-flight event names its partition, and a clone
    /// must not allocate.
    pub topic: std::sync::Arc<str>,
    pub partition: u32,
}

/// A record read from the bus, with where it was read and its retry state.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub tp: TopicPartition,
    pub offset: u64,
    /// Milliseconds since the epoch when the bus accepted it.
    pub timestamp_ms: i64,
    pub record: Record,
    /// Attempt state persisted by an earlier owner of the partition (or an
    /// earlier life of this one), so retries resume instead of restarting.
    pub attempts: Option<AttemptState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    pub attempts: u32,
    pub first_failure_ms: i64,
    pub last_failure_ms: i64,
}

/// What moves together with the group's position.
#[derive(Debug, Default, Clone)]
pub struct Commit {
    /// Next offset to read, per partition: everything before it is handled.
    pub offsets: Vec<(TopicPartition, u64)>,
    /// Attempt state of events being retried (upserted).
    pub attempts: Vec<(TopicPartition, u64, AttemptState)>,
    /// Dead letters, written before (or with) the offsets that pass them.
    pub dead_letters: Vec<DeadLetterWrite>,
}

#[derive(Debug, Clone)]
pub struct DeadLetterWrite {
    /// Where the failed record was read; not written if that partition is fenced.
    pub origin: TopicPartition,
    /// Its offset there: no position of `origin` may pass it until written.
    pub offset: u64,
    /// The dead-letter topic.
    pub topic: String,
    pub record: Record,
}

/// A consumer-group member id, unique to this consumer: host, process and
/// a random part, so an operator can tell from a log or a lease which
/// machine and process held a partition. Shared by every bus.
pub fn member_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Partitions whose commit was refused because another member owns them
/// now (a newer lease generation). Their in-flight work must be dropped.
#[derive(Debug, Default)]
pub struct CommitOutcome {
    pub fenced: Vec<TopicPartition>,
}

#[derive(Debug, Default)]
pub struct Polled {
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Default, Clone)]
pub struct Rebalance {
    pub assigned: Vec<TopicPartition>,
    pub revoked: Vec<TopicPartition>,
}

/// Where a group-less reader (`tail`, `dlq list`) starts.
#[derive(Debug, Clone, Copy)]
pub enum ReadFrom {
    Beginning,
    End,
}

pub enum Bus {
    Embedded(embedded::EmbeddedBus),
    /// Boxed: a Kafka bus holds its clients' state, ten times the size of
    /// an embedded handle.
    Kafka(Box<kafka::KafkaBus>),
}

impl Bus {
    pub fn open(config: &Config) -> Result<Bus, BusError> {
        match &config.bus {
            BusConfig::Embedded(c) => Ok(Bus::Embedded(embedded::EmbeddedBus::open(&config.data_dir, c.clone())?)),
            BusConfig::Kafka(c) => Ok(Bus::Kafka(Box::new(kafka::KafkaBus::open(c.clone())?))),
        }
    }

    /// Appends records; returns once they are durable. Keys choose the
    /// partition with murmur2; a keyless record goes round-robin. Fails if
    /// any record was refused (others of the batch may have been written:
    /// use [`Bus::publish_each`] where that matters).
    pub async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<Vec<(u32, u64)>, BusError> {
        self.publish_each(topic, records).await?.into_iter().collect()
    }

    /// Appends records and reports what became of each, in input order. The
    /// outer error fails the whole batch (nothing can be said of any record:
    /// retry them all); an inner one fails that record alone, e.g. one over
    /// [`Bus::max_record_bytes`], while the others are written once.
    pub async fn publish_each(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Published>, BusError> {
        if let Some(class) = crate::faults::check("bus.publish") {
            return Err(BusError::Injected(class, "bus.publish"));
        }
        match self {
            Bus::Embedded(b) => b.publish_each(topic, records).await,
            Bus::Kafka(b) => b.publish_each(topic, records).await,
        }
    }

    /// The largest record ([`Record::size`]) this bus accepts: Kafka's
    /// `message.max.bytes` less the record framing, the embedded bus's own
    /// bound. Dead letters are cut to fit it.
    pub fn max_record_bytes(&self) -> usize {
        match self {
            Bus::Embedded(_) => embedded::MAX_RECORD_BYTES,
            Bus::Kafka(b) => b.config().max_record_bytes(),
        }
    }

    /// Creates a topic if it is missing. `retained = false` exempts it from
    /// retention (dead-letter topics).
    pub async fn ensure_topic(&self, topic: &str, retained: bool) -> Result<u32, BusError> {
        match self {
            Bus::Embedded(b) => b.ensure_topic(topic, retained).await,
            Bus::Kafka(b) => b.ensure_topic(topic, retained).await,
        }
    }

    pub async fn consumer(&self, group: &str, topics: &[String]) -> Result<Consumer, BusError> {
        match self {
            Bus::Embedded(b) => Ok(Consumer::Embedded(Box::new(b.consumer(group, topics).await?))),
            Bus::Kafka(b) => Ok(Consumer::Kafka(Box::new(b.consumer(group, topics).await?))),
        }
    }

    /// Reads a topic without a group, in partition then offset order.
    pub async fn read(&self, topic: &str, from: ReadFrom, max: usize) -> Result<Vec<Delivery>, BusError> {
        match self {
            Bus::Embedded(b) => b.read(topic, from, max).await,
            Bus::Kafka(b) => b.read(topic, from, max).await,
        }
    }

    /// A reader that follows a topic from `from` (for `tail`).
    pub async fn follow(&self, topic: &str, from: ReadFrom) -> Result<Follower, BusError> {
        match self {
            Bus::Embedded(b) => Ok(Follower::Embedded(b.follow(topic, from).await?)),
            Bus::Kafka(b) => Ok(Follower::Kafka(b.follow(topic, from).await?)),
        }
    }

    /// The record at `offset` of one partition, without a group, or None
    /// when there is none there (never written, or removed by retention).
    /// For a tool that knows where a record is (`dlq show
    /// <topic>/<partition>@<offset>`): one read, where [`Bus::scan`] reads
    /// the whole topic to find it.
    pub async fn read_at(&self, topic: &str, partition: u32, offset: u64) -> Result<Option<Delivery>, BusError> {
        match self {
            Bus::Embedded(b) => b.read_at(topic, partition, offset).await,
            Bus::Kafka(b) => b.read_at(topic, partition, offset).await,
        }
    }

    /// The next offset of each partition of `topic` (its high watermark).
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, BusError> {
        match self {
            Bus::Embedded(b) => b.end_offsets(topic).await,
            Bus::Kafka(b) => b.end_offsets(topic).await,
        }
    }

    pub async fn topics(&self) -> Result<Vec<(String, u32)>, BusError> {
        match self {
            Bus::Embedded(b) => b.topics().await,
            Bus::Kafka(b) => b.topics().await,
        }
    }

    /// Reads a topic from its beginning a chunk at a time, to its end as
    /// [`Bus::read`] finds it: for tools that must not hold a whole topic in
    /// memory (a dead-letter topic can be gigabytes).
    pub async fn scan(&self, topic: &str) -> Result<Scan, BusError> {
        let (first, quiet) = match self {
            // Everything committed is there at once.
            Bus::Embedded(_) => (Duration::ZERO, Duration::ZERO),
            Bus::Kafka(_) => (kafka::READ_FIRST_WAIT, kafka::READ_QUIET),
        };
        Ok(Scan { follower: self.follow(topic, ReadFrom::Beginning).await?, wait: first, quiet })
    }
}

/// See [`Bus::scan`].
pub struct Scan {
    follower: Follower,
    wait: Duration,
    quiet: Duration,
}

impl Scan {
    /// The next records, at most `max`; empty once the topic is read.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let chunk = self.follower.next_batch(max, self.wait).await?;
        self.wait = self.quiet;
        Ok(chunk)
    }
}

pub enum Consumer {
    /// Boxed, both: each carries its group state inline, and one worker
    /// holds one consumer for its life.
    Embedded(Box<embedded::EmbeddedConsumer>),
    Kafka(Box<kafka::KafkaConsumer>),
}

impl Consumer {
    /// Returns up to `max` records from owned partitions, waiting at most
    /// `wait` for the first.
    pub async fn poll(&mut self, max: usize, wait: Duration) -> Result<Polled, BusError> {
        if let Some(class) = crate::faults::check("bus.poll") {
            return Err(BusError::Injected(class, "bus.poll"));
        }
        match self {
            Consumer::Embedded(c) => c.poll(max, wait).await,
            Consumer::Kafka(c) => c.poll(max, wait).await,
        }
    }

    pub async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, BusError> {
        if !commit.dead_letters.is_empty() {
            if let Some(class) = crate::faults::check("dead_letter.write") {
                return Err(BusError::Injected(class, "dead_letter.write"));
            }
        }
        match self {
            Consumer::Embedded(c) => c.commit(commit).await,
            Consumer::Kafka(c) => c.commit(commit).await,
        }
    }

    /// Heartbeat and rebalance, if due. Call it often; it is cheap when not due.
    pub async fn maintain(&mut self) -> Result<Rebalance, BusError> {
        if let Some(class) = crate::faults::check("bus.maintain") {
            return Err(BusError::Injected(class, "bus.maintain"));
        }
        match self {
            Consumer::Embedded(c) => c.maintain(false).await,
            Consumer::Kafka(c) => c.maintain().await,
        }
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        match self {
            Consumer::Embedded(c) => c.assignment(),
            Consumer::Kafka(c) => c.assignment(),
        }
    }

    pub fn member_id(&self) -> &str {
        match self {
            Consumer::Embedded(c) => c.member_id(),
            Consumer::Kafka(c) => c.member_id(),
        }
    }

    /// Leaves the group, releasing partitions so others take them at once.
    pub async fn close(self) -> Result<(), BusError> {
        match self {
            Consumer::Embedded(c) => c.close().await,
            Consumer::Kafka(c) => c.close().await,
        }
    }

    /// Offers positions the bus may commit on its own (`InFlight::safe_watermarks`).
    /// Kafka commits them when a rebalance revokes the partition between two
    /// regular commits; the embedded bus hands over only after a commit, so
    /// it needs nothing here.
    /// `offsets` is only called when the bus has a use for them.
    pub fn stage(&mut self, offsets: impl FnOnce() -> Vec<(TopicPartition, u64)>) {
        match self {
            Consumer::Embedded(_) => {}
            Consumer::Kafka(c) => c.stage(offsets()),
        }
    }

    /// Stops (or resumes) fetching while the worker is full. The embedded
    /// bus reads only when polled, so it needs nothing here.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), BusError> {
        match self {
            Consumer::Embedded(_) => Ok(()),
            Consumer::Kafka(c) => c.set_paused(paused),
        }
    }

    /// Whether the group has given this member its assignment (for `/readyz`).
    pub fn joined(&self) -> bool {
        match self {
            // Joining the embedded group happens when the consumer is created.
            Consumer::Embedded(_) => true,
            Consumer::Kafka(c) => c.joined(),
        }
    }

    /// A handle that reads consumer lag off the worker's loop.
    pub fn lag_probe(&self) -> LagProbe {
        match self {
            Consumer::Embedded(c) => LagProbe::Embedded(c.lag_probe()),
            Consumer::Kafka(c) => LagProbe::Kafka(c.lag_probe()),
        }
    }
}

/// Reads a consumer's lag (records not yet handled, per owned partition)
/// off the worker's loop, on every bus: what autoscalers and backlog
/// alerts read from `/metrics`.
#[derive(Clone)]
pub enum LagProbe {
    Embedded(embedded::lag::EmbeddedLagProbe),
    Kafka(kafka::lag::LagProbe),
}

impl LagProbe {
    /// Lag of each partition the member owns; `None` once its consumer is
    /// closed. Blocking (a store read, or broker round trips).
    pub fn read(&self) -> Option<Vec<(TopicPartition, u64)>> {
        match self {
            LagProbe::Embedded(p) => p.read(),
            LagProbe::Kafka(p) => p.read(),
        }
    }
}

pub enum Follower {
    Embedded(embedded::EmbeddedFollower),
    Kafka(kafka::KafkaFollower),
}

impl Follower {
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        match self {
            Follower::Embedded(f) => f.next_batch(max, wait).await,
            Follower::Kafka(f) => f.next_batch(max, wait).await,
        }
    }
}
