//! `modelbus bench-floor` (hidden; `bench --kafka` starts it): what the
//! Kafka client alone costs per event for a worker's wire work, so the
//! benchmark shows how much of modelbus's CPU per event is its own and how
//! low any librdkafka-based worker could go.
//!
//! It consumes the input topic in its own group with the worker's consumer
//! settings. For every event it produces one record shaped like a real
//! result: the event's key, and the headers and value of a result modelbus
//! wrote earlier in the same run (its 16 CloudEvents headers). It produces
//! through the worker's own producer (idempotent, `acks=all`, one wait per
//! batch) and commits after each batch is acknowledged, as the worker does.
//! It decodes, validates, scores and builds nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use modelbus::bus::kafka::consumer::group_config;
use modelbus::bus::kafka::KafkaBus;
use modelbus::bus::ReadFrom;
use modelbus::event::Record;

#[derive(clap::Args, Debug)]
pub struct FloorArgs {
    /// The bench's config (its `[bus.kafka]` section is used).
    #[arg(long)]
    pub config: PathBuf,
    /// Consumer group, of this run only.
    #[arg(long)]
    pub group: String,
    /// Input topic.
    #[arg(long)]
    pub topic: String,
    /// A topic holding a real result, whose headers and value are copied.
    #[arg(long)]
    pub template_topic: String,
    /// Where the copies go.
    #[arg(long)]
    pub result_topic: String,
    /// Stop after this many events.
    #[arg(long)]
    pub count: usize,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let config = modelbus::config::load(&args.config)?;
    let bus = KafkaBus::open(super::kafka_config(&config)?.clone())?;
    let template = bus
        .read(&args.template_topic, ReadFrom::Beginning, 1)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("no result in {} to copy", args.template_topic))?
        .record;
    bus.ensure_topic(&args.result_topic, true).await?;
    let consumer: BaseConsumer = group_config(bus.config(), &args.group, "bench-floor").create()?;
    consumer.subscribe(&[&args.topic])?;
    let mut done = 0;
    while done < args.count {
        let mut records = Vec::with_capacity(args.batch);
        let mut next = BTreeMap::new();
        while records.len() < args.batch {
            // Waits only for a batch's first record, as the worker does.
            let wait = if records.is_empty() { Duration::from_millis(100) } else { Duration::ZERO };
            let Some(m) = tokio::task::block_in_place(|| consumer.poll(wait)) else { break };
            let m = m?;
            records.push(Record {
                key: m.key().map(<[u8]>::to_vec),
                headers: template.headers.clone(),
                value: template.value.clone(),
            });
            next.insert(m.partition(), m.offset() + 1);
        }
        if records.is_empty() {
            continue;
        }
        bus.producer().produce_all(&args.result_topic, None, &records, false).await?;
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next {
            offsets.add_partition_offset(&args.topic, p, Offset::Offset(o))?;
        }
        consumer.commit(&offsets, CommitMode::Async)?;
        done += records.len();
    }
    Ok(())
}
