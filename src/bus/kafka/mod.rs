//! The Kafka backend, through `rdkafka` (librdkafka built from its vendored
//! source). Records map one to one onto Kafka records in the CloudEvents
//! Kafka binding's binary mode: the `ce_*` attributes (the `ce_dl*` failure
//! ones too) are already headers of [`Record`], the key is the partition
//! key, the value is the data.
//!
//! Written to Kafka's protocol semantics. The producer is idempotent with
//! `acks=all` and partitions with murmur2 like the Java client, and
//! acknowledges a publish per batch ([`producer`]). Group
//! consumption, commits and retry state live in [`consumer`] and
//! [`attempts`]. Reads without a group ([`KafkaFollower`]) never trust the
//! high watermark to mean "the end": they stop after a quiet period, which
//! is also correct on brokers whose watermark lags.

pub(crate) mod attempts;
mod config;
pub mod consumer;
mod error;
pub(crate) mod lag;
pub(crate) mod producer;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

pub use config::KafkaBusConfig;
pub use consumer::KafkaConsumer;
pub use error::KafkaBusError;
pub use producer::Producer;

use super::{BusError, Delivery, Published, ReadFrom, TopicPartition};
use crate::event::Record;

/// librdkafka properties modelbus sets itself; `bus.kafka.properties` may not
/// override them, because the delivery guarantees depend on them.
pub const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "partitioner",
];

/// How long a group-less reader waits for its first record, and then for
/// the next one, before it decides it has read everything there is.
pub(crate) const READ_FIRST_WAIT: Duration = Duration::from_secs(3);
pub(crate) const READ_QUIET: Duration = Duration::from_millis(700);

pub struct KafkaBus {
    cfg: KafkaBusConfig,
    producer: Producer,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist, so publishing checks metadata once per topic.
    known: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// librdkafka's errors about its configuration quote property values,
/// `sasl.password` as readily as any: those never leave as they are.
fn kerr(op: &'static str) -> impl Fn(KafkaError) -> BusError {
    move |source| match source {
        // librdkafka quotes the entry of a list it refuses: that goes too.
        KafkaError::ClientConfig(_, desc, property, value) => {
            KafkaBusError::Config { op, reason: crate::secrets::redact(&desc, &value), property }.into()
        }
        // Client creation checks properties together and names a value it
        // refuses (`Unsupported SASL mechanism: ...`) without saying which
        // property it is: scrub every value the config took from the environment.
        KafkaError::ClientCreation(msg) => {
            KafkaBusError::Client { op, source: KafkaError::ClientCreation(crate::secrets::scrub(&msg).into_owned()) }
                .into()
        }
        source => KafkaBusError::Client { op, source }.into(),
    }
}

impl KafkaBus {
    pub fn open(cfg: KafkaBusConfig) -> Result<KafkaBus, BusError> {
        let mut producer_config = cfg.client_config(Role::Producer);
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Keys land where Java producers would put them.
            .set("partitioner", "murmur2_random")
            .set_if_absent("linger.ms", "1")
            .set_if_absent("message.timeout.ms", &cfg.request_timeout.as_millis().to_string());
        let producer = Producer::create(&producer_config).map_err(kerr("create producer"))?;
        let admin = cfg.client_config(Role::Admin).create().map_err(kerr("create admin client"))?;
        Ok(KafkaBus { cfg, producer, admin, known: Default::default() })
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    pub fn config(&self) -> &KafkaBusConfig {
        &self.cfg
    }

    /// Appends records and waits for every acknowledgement (`acks=all`).
    /// A missing topic is created first, as on the embedded bus (or refused,
    /// naming it, when `create_topics` is off).
    pub async fn publish_each(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Published>, BusError> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner()).contains(topic);
        if !known {
            self.ensure_topic(topic, true).await?;
            self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_string());
        }
        Ok(self.producer.produce_each(topic, None, &records, false).await)
    }

    /// Creates the topic if missing and allowed; refuses naming it otherwise.
    /// `retained = false` (dead letters) asks for unlimited retention.
    pub async fn ensure_topic(&self, topic: &str, retained: bool) -> Result<u32, BusError> {
        let extra: &[(&str, &str)] = if retained { &[] } else { &[("retention.ms", "-1"), ("retention.bytes", "-1")] };
        self.ensure_topic_with(topic, self.cfg.partitions, extra).await
    }

    pub(crate) async fn ensure_topic_with(
        &self,
        topic: &str,
        partitions: u32,
        config: &[(&str, &str)],
    ) -> Result<u32, BusError> {
        if let Some(n) = self.partitions_of(topic).await? {
            return Ok(n);
        }
        if !self.cfg.create_topics {
            return Err(KafkaBusError::MissingTopic(topic.to_string()).into());
        }
        let mut new =
            NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(self.cfg.replication_factor as i32));
        for (k, v) in config {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.cfg.request_timeout));
        let results = self.admin.create_topics([&new], &opts).await.map_err(kerr("create topic"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaBusError::CreateTopic { topic, code }.into()),
            }
        }
        // Metadata propagates asynchronously after creation.
        for _ in 0..50 {
            if let Some(n) = self.partitions_of(topic).await? {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BusError::Task(format!("topic `{topic}` was created but does not appear in metadata")))
    }

    /// Partition count of `topic`, or None when it does not exist.
    pub(crate) async fn partitions_of(&self, topic: &str) -> Result<Option<u32>, BusError> {
        let topics = self.topics().await?;
        Ok(topics.into_iter().find(|(t, _)| t == topic).map(|(_, n)| n))
    }

    pub async fn topics(&self) -> Result<Vec<(String, u32)>, BusError> {
        let producer = self.producer.clone();
        let timeout = self.cfg.request_timeout;
        // Asking for all topics never auto-creates one.
        let md = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| BusError::Task(e.to_string()))?
            .map_err(kerr("fetch metadata"))?;
        let mut out: Vec<(String, u32)> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| (t.name().to_string(), t.partitions().len() as u32))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The high watermark of each partition, as the broker reports it.
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, BusError> {
        let n = self.partitions_of(topic).await?.ok_or_else(|| BusError::NoSuchTopic(topic.to_string()))?;
        let producer = self.producer.clone();
        let (t, timeout) = (topic.to_string(), self.cfg.request_timeout);
        tokio::task::spawn_blocking(move || {
            (0..n as i32)
                .map(|p| producer.client().fetch_watermarks(&t, p, timeout).map(|(_, hi)| hi.max(0) as u64))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| BusError::Task(e.to_string()))?
        .map_err(kerr("fetch watermarks"))
    }

    pub async fn consumer(&self, group: &str, topics: &[String]) -> Result<KafkaConsumer, BusError> {
        KafkaConsumer::join(self, group, topics).await
    }

    /// Reads what the topic holds, up to `max` records; see [`READ_QUIET`].
    pub async fn read(&self, topic: &str, from: ReadFrom, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut f = self.follow(topic, from).await?;
        let mut out = f.next_batch(max, READ_FIRST_WAIT).await?;
        while out.len() < max {
            let batch = f.next_batch(max - out.len(), READ_QUIET).await?;
            if batch.is_empty() {
                break;
            }
            out.extend(batch);
        }
        Ok(out)
    }

    pub async fn follow(&self, topic: &str, from: ReadFrom) -> Result<KafkaFollower, BusError> {
        let n = self.partitions_of(topic).await?.ok_or_else(|| BusError::NoSuchTopic(topic.to_string()))?;
        let consumer = self.reader()?;
        let offset = match from {
            ReadFrom::Beginning => Offset::Beginning,
            ReadFrom::End => Offset::End,
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..n as i32 {
            tpl.add_partition_offset(topic, p, offset).map_err(kerr("assign"))?;
        }
        consumer.assign(&tpl).map_err(kerr("assign"))?;
        Ok(KafkaFollower { consumer })
    }

    /// See [`crate::bus::Bus::read_at`]: one partition assigned at `offset`
    /// and one message read. None when nothing comes within
    /// [`READ_FIRST_WAIT`] (past the end), or what comes is another offset
    /// (this one was deleted or compacted away; the reader then starts where
    /// `auto.offset.reset` says). The high watermark is not asked first:
    /// some brokers report it wrong (see [`KafkaFollower`]).
    pub async fn read_at(&self, topic: &str, partition: u32, offset: u64) -> Result<Option<Delivery>, BusError> {
        let partitions = self.partitions_of(topic).await?.ok_or_else(|| BusError::NoSuchTopic(topic.to_string()))?;
        if partition >= partitions {
            return Err(BusError::BadPartition { topic: topic.to_string(), partition, partitions });
        }
        let consumer = self.reader()?;
        let mut tpl = TopicPartitionList::new();
        let at =
            i64::try_from(offset).map_err(|_| BusError::Task(format!("offset {offset} is out of Kafka's range")))?;
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(at)).map_err(kerr("assign"))?;
        consumer.assign(&tpl).map_err(kerr("assign"))?;
        let (found, _) = recv_batch(&consumer, 1, READ_FIRST_WAIT, |_| true).await?;
        Ok(found.into_iter().next().filter(|d| d.offset == offset))
    }

    /// A consumer for reading without a group ([`KafkaBus::follow`],
    /// [`KafkaBus::read_at`]): it joins none and commits nothing.
    fn reader(&self) -> Result<StreamConsumer, BusError> {
        self.cfg
            .client_config(Role::Consumer)
            // The group id only satisfies librdkafka.
            .set("group.id", format!("modelbus-reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set_if_absent("fetch.wait.max.ms", "50")
            .create()
            .map_err(kerr("create reader"))
    }
}

impl KafkaBusConfig {
    /// Brokers and the pass-through properties for one kind of client
    /// (common ones, then the role's own); callers add what they own.
    fn client_config(&self, role: Role) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        let own = match role {
            Role::Producer => Some(&self.producer_properties),
            Role::Consumer => Some(&self.consumer_properties),
            Role::Admin => None,
        };
        for (k, v) in self.properties.iter().chain(own.into_iter().flatten()) {
            c.set(k, v);
        }
        c
    }
}

/// Which client a configuration is for: librdkafka warns about properties
/// that do not apply to a client, so role-specific ones go only to theirs.
#[derive(Clone, Copy)]
enum Role {
    Producer,
    Consumer,
    Admin,
}

trait SetIfAbsent {
    fn set_if_absent(&mut self, key: &str, value: &str) -> &mut Self;
}

impl SetIfAbsent for ClientConfig {
    /// Our defaults, which `bus.kafka.properties` may override.
    fn set_if_absent(&mut self, key: &str, value: &str) -> &mut Self {
        if self.get(key).is_none() {
            self.set(key, value);
        }
        self
    }
}

/// A Kafka message as a bus delivery. Headers become the record's headers
/// unchanged (binary mode); a null header value reads as empty. `topic`
/// keeps the last topic name seen: a batch nearly always comes from one or
/// two topics, and sharing the name saves an allocation per message.
pub(crate) fn delivery(m: &BorrowedMessage<'_>, topic: &mut Option<std::sync::Arc<str>>) -> Delivery {
    let name = m.topic();
    let topic = match topic {
        Some(t) if &**t == name => t.clone(),
        _ => topic.insert(name.into()).clone(),
    };
    Delivery {
        tp: TopicPartition { topic, partition: m.partition() as u32 },
        offset: m.offset() as u64,
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        record: Record {
            key: m.key().map(<[u8]>::to_vec),
            headers: headers_of(m),
            value: m.payload().unwrap_or_default().to_vec(),
        },
        attempts: None,
    }
}

/// A message's headers, read straight from librdkafka. rdkafka's own
/// accessor unwraps each name as UTF-8 and panics on one that is not, and
/// anyone can write such a name: the worker would die on that record at
/// every restart. Here a name that is not UTF-8 is repaired lossily (U+FFFD)
/// and the record gains a [`INVALID_HEADER_NAME`] header holding the
/// original name's bytes in hex, so decoding refuses it
/// (`invalid_header_name`) and its dead letter shows what the name was.
fn headers_of(m: &BorrowedMessage<'_>) -> crate::event::Headers {
    use rdkafka::bindings as rd;
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m` is a live message; librdkafka fills `hdrs` with a pointer
    // it owns for the message's lifetime, or reports an error.
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut hdrs) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return crate::event::Headers::new();
    }
    // SAFETY: `hdrs` is valid (above).
    let count = unsafe { rd::rd_kafka_header_cnt(hdrs) };
    // Room for about 32 bytes per header, more than most CloudEvents
    // headers take stored: one allocation instead of a doubling series.
    let mut out = crate::event::Headers::with_capacity(count * 32);
    let mut repaired = Vec::new();
    for i in 0..count {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: `i < count`; the pointers librdkafka returns stay valid
        // while the message lives (it owns the header list).
        let err = unsafe { rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name (librdkafka stores it so), and a
        // value of `size` bytes, or null for a null value.
        let (name, value) = unsafe {
            let v = if value.is_null() { &[][..] } else { std::slice::from_raw_parts(value as *const u8, size) };
            (std::ffi::CStr::from_ptr(name).to_bytes(), v)
        };
        match std::str::from_utf8(name) {
            Ok(n) => out.push(n, value),
            Err(_) => {
                out.push(&String::from_utf8_lossy(name), value);
                repaired.push(hex::encode(name));
            }
        }
    }
    for original in repaired {
        out.push(crate::event::INVALID_HEADER_NAME, original.as_bytes());
    }
    out
}

/// A group-less reader of one topic, for `tail` and the dead-letter tools.
pub struct KafkaFollower {
    consumer: StreamConsumer,
}

impl KafkaFollower {
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        recv_batch(&self.consumer, max, wait, |_| true).await.map(|(v, _)| v)
    }
}

/// Up to `max` messages: waits at most `wait` for the first, then takes only
/// what is already fetched. Stops early (returning the message it stopped
/// at) when `accept` refuses one.
pub(crate) async fn recv_batch<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
    mut accept: impl FnMut(&Delivery) -> bool,
) -> Result<(Vec<Delivery>, Option<Delivery>), BusError> {
    use futures::{FutureExt, StreamExt};
    let mut out = Vec::new();
    if max == 0 {
        return Ok((out, None));
    }
    // One stream for the batch: each `recv` registers and removes a waker
    // slot under a mutex, twice per message.
    let mut stream = consumer.stream();
    let mut topic = None;
    let first = match tokio::time::timeout(wait, stream.next()).await {
        Err(_) | Ok(None) => return Ok((out, None)),
        Ok(Some(m)) => m.map_err(kerr("consume"))?,
    };
    let d = delivery(&first, &mut topic);
    if !accept(&d) {
        return Ok((out, Some(d)));
    }
    out.push(d);
    while out.len() < max {
        match stream.next().now_or_never() {
            Some(Some(Ok(m))) => {
                let d = delivery(&m, &mut topic);
                if !accept(&d) {
                    return Ok((out, Some(d)));
                }
                out.push(d);
            }
            Some(Some(Err(e))) => {
                tracing::warn!(error = %e, "consume error");
                break;
            }
            Some(None) | None => break,
        }
    }
    Ok((out, None))
}
