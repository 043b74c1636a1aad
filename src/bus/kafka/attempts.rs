//! Retry attempt state on Kafka: a compacted per-group topic
//! `<group>.attempts`, as DESIGN allows when offset-commit metadata will not
//! do. (Kafka keeps commit metadata, but brokers may cap or drop it — the
//! test broker returns it empty — and one string per partition would have to
//! carry every retrying event of that partition.)
//!
//! Key `topic|partition|offset`, value the attempt state as JSON, a tombstone
//! once the group's position has passed the offset. The state is written and
//! acknowledged before the offset commit that depends on it, so whoever owns
//! the partition next finds it. A background thread follows the topic from
//! its beginning into a map. Before a member trusts the map for a newly
//! assigned partition it [`sync`](AttemptLog::sync)s: it appends a marker
//! and waits until the follower has read it. Everything acknowledged before
//! the marker is then in the map. No watermark is involved.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{kerr, Producer};
use crate::bus::{AttemptState, BusError, TopicPartition};
use crate::event::Record;

/// How long a sync waits for its own marker before the poll reports a
/// transient error (and the worker tries again).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The most retrying events remembered: a worker's own are bounded by its
/// in-flight limit, far below this.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Serialize, Deserialize)]
struct Stored {
    attempts: u32,
    first_failure_ms: i64,
    last_failure_ms: i64,
}

#[derive(Default)]
struct LogState {
    map: HashMap<(TopicPartition, u64), AttemptState>,
    markers: HashSet<String>,
}

pub struct AttemptLog {
    topic: String,
    member: String,
    producer: Producer,
    state: Arc<Mutex<LogState>>,
    stop: Arc<AtomicBool>,
    syncs: u64,
}

fn key_of(tp: &TopicPartition, offset: u64) -> String {
    // Kafka topic names never contain `|`.
    format!("{}|{}|{}", tp.topic, tp.partition, offset)
}

fn parse_key(k: &str) -> Option<(TopicPartition, u64)> {
    let mut it = k.rsplitn(3, '|');
    let offset = it.next()?.parse().ok()?;
    let partition = it.next()?.parse().ok()?;
    let topic = it.next()?.to_string();
    Some((TopicPartition { topic: topic.into(), partition }, offset))
}

impl AttemptLog {
    /// Starts following `topic` (partition 0, from the beginning).
    pub fn start(reader: BaseConsumer, topic: &str, member: &str, producer: Producer) -> Result<AttemptLog, BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).map_err(kerr("assign attempts log"))?;
        reader.assign(&tpl).map_err(kerr("assign attempts log"))?;
        let state = Arc::new(Mutex::new(LogState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp, name) = (state.clone(), stop.clone(), topic.to_string());
        let own_markers = format!("sync|{member}|");
        std::thread::Builder::new()
            .name("attempts-log".into())
            .spawn(move || follow(reader, st, stp, name, own_markers))
            .map_err(|e| BusError::Task(format!("cannot start the attempts-log thread: {e}")))?;
        Ok(AttemptLog { topic: topic.to_string(), member: member.to_string(), producer, state, stop, syncs: 0 })
    }

    /// Returns once every attempt record acknowledged before this call is
    /// in the map (see the module docs).
    pub async fn sync(&mut self) -> Result<(), BusError> {
        self.syncs += 1;
        let marker = format!("sync|{}|{}", self.member, self.syncs);
        let rec =
            Record { key: Some(marker.clone().into_bytes()), headers: Default::default(), value: b"sync".to_vec() };
        self.producer.produce_all(&self.topic, Some(0), &[rec], false).await?;
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            if self.lock().markers.remove(&marker) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::Task(format!(
                    "attempts log `{}` did not catch up within {SYNC_TIMEOUT:?}",
                    self.topic
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn get(&self, tp: &TopicPartition, offset: u64) -> Option<AttemptState> {
        self.lock().map.get(&(tp.clone(), offset)).copied()
    }

    /// Writes attempt states and tombstones the entries of `passed`
    /// partitions below the given offsets; returns once acknowledged.
    pub async fn write(
        &mut self,
        upserts: &[(TopicPartition, u64, AttemptState)],
        passed: &[(TopicPartition, u64)],
    ) -> Result<(), BusError> {
        let mut records = Vec::new();
        {
            let mut st = self.lock();
            for (tp, off, a) in upserts {
                st.map.insert((tp.clone(), *off), *a);
                let v = Stored {
                    attempts: a.attempts,
                    first_failure_ms: a.first_failure_ms,
                    last_failure_ms: a.last_failure_ms,
                };
                let value = serde_json::to_vec(&v).unwrap_or_default();
                records.push(Record { key: Some(key_of(tp, *off).into_bytes()), headers: Default::default(), value });
            }
            if !st.map.is_empty() {
                let gone: Vec<_> = st
                    .map
                    .keys()
                    .filter(|(tp, off)| passed.iter().any(|(p, next)| p == tp && off < next))
                    .cloned()
                    .collect();
                for k in gone {
                    st.map.remove(&k);
                    // An empty value is our tombstone: librdkafka sends a
                    // null payload for it, which compaction removes.
                    records.push(Record {
                        key: Some(key_of(&k.0, k.1).into_bytes()),
                        headers: Default::default(),
                        value: vec![],
                    });
                }
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.producer.produce_all(&self.topic, Some(0), &records, true).await.map(|_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for AttemptLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn follow(
    reader: BaseConsumer,
    state: Arc<Mutex<LogState>>,
    stop: Arc<AtomicBool>,
    topic: String,
    own_markers: String,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(msg) = reader.poll(Duration::from_millis(100)) else { continue };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "attempts log read error");
                continue;
            }
        };
        let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if key.starts_with("sync|") {
            // Other members' markers are theirs to wait for.
            if key.starts_with(&own_markers) {
                st.markers.insert(key.to_string());
            }
            continue;
        }
        let Some(k) = parse_key(key) else { continue };
        match msg.payload().filter(|p| !p.is_empty()).map(serde_json::from_slice::<Stored>) {
            // Anyone who can write the topic can add entries: past the
            // bound, new ones are ignored (an event then retries from its
            // first attempt), so memory stays bounded.
            Some(Ok(_)) if st.map.len() >= MAX_ENTRIES && !st.map.contains_key(&k) => {
                tracing::warn!(topic = %topic, key, "attempts log full: entry ignored");
            }
            Some(Ok(s)) => {
                st.map.insert(
                    k,
                    AttemptState {
                        attempts: s.attempts,
                        first_failure_ms: s.first_failure_ms,
                        last_failure_ms: s.last_failure_ms,
                    },
                );
            }
            Some(Err(e)) => tracing::warn!(topic = %topic, key, error = %e, "unreadable attempt record ignored"),
            None => {
                st.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_dots_and_dashes() {
        let tp = TopicPartition { topic: "claims.created-v2".into(), partition: 7 };
        assert_eq!(parse_key(&key_of(&tp, 12345)), Some((tp, 12345)));
        assert_eq!(parse_key("garbage"), None);
    }
}
