//! Consumer lag: the committed offset against the high watermark, per owned
//! partition. This is what autoscalers (KEDA) and backlog alerts read.
//!
//! Kafka's high watermark is the offset the next record will get. Some
//! brokers report it wrongly — the in-memory test broker reports the last
//! batch's base offset + 1, which undercounts when a batch holds several
//! records — so tests check [`lag`] against a fake watermark and never
//! assert lag read from that broker.

use std::sync::Weak;
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::Offset;

use super::consumer::GroupContext;
use crate::bus::TopicPartition;

/// Records the group has yet to handle in one partition. With no committed
/// offset the group starts at the low watermark (`auto.offset.reset =
/// earliest`); retention may also have moved the low watermark past it.
pub fn lag(committed: Option<u64>, low: u64, high: u64) -> u64 {
    let position = committed.unwrap_or(low).max(low);
    high.saturating_sub(position)
}

/// Reads lag for a consumer's partitions, off the worker's loop. It holds
/// the consumer weakly, so it never delays the consumer's close (leaving the
/// group happens when the consumer is dropped).
#[derive(Clone)]
pub struct LagProbe {
    pub(super) consumer: Weak<StreamConsumer<GroupContext>>,
    pub(super) timeout: Duration,
}

impl LagProbe {
    /// Lag of each partition this member owns; None once the consumer is
    /// closed. Blocking: call it from a blocking thread.
    pub fn read(&self) -> Option<Vec<(TopicPartition, u64)>> {
        let consumer = self.consumer.upgrade()?;
        let Ok(assigned) = consumer.assignment() else { return Some(vec![]) };
        let Ok(committed) = consumer.committed_offsets(assigned, self.timeout) else { return Some(vec![]) };
        let mut out = Vec::new();
        for e in committed.elements() {
            let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), self.timeout) else { continue };
            let c = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            };
            let tp = TopicPartition { topic: e.topic().into(), partition: e.partition() as u32 };
            out.push((tp, lag(c, low.max(0) as u64, high.max(0) as u64)));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::lag;

    #[test]
    fn lag_is_the_watermark_minus_the_committed_offset() {
        // A fake watermark: 1,000 records produced, 640 committed.
        assert_eq!(lag(Some(640), 0, 1000), 360);
        assert_eq!(lag(Some(1000), 0, 1000), 0);
    }

    #[test]
    fn no_commit_yet_counts_from_the_low_watermark() {
        assert_eq!(lag(None, 0, 250), 250);
        assert_eq!(lag(None, 100, 250), 150);
    }

    #[test]
    fn retention_past_the_commit_and_a_stale_watermark_never_go_negative() {
        assert_eq!(lag(Some(50), 100, 250), 150);
        // A watermark below the commit (a broker that reports it late).
        assert_eq!(lag(Some(300), 0, 250), 0);
    }
}
