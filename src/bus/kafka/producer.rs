//! The Kafka producer, with one acknowledgement per batch of records instead
//! of a future per record.
//!
//! rdkafka's `FutureProducer` gives every record a oneshot channel, boxes
//! its sender as the delivery opaque, and wakes the waiting task once per
//! delivery report. A worker publishes a whole batch of results and needs
//! only "all of them are acknowledged, at these offsets". So here each batch
//! has one entry in the context's table; a record's delivery opaque is its
//! batch and its index, packed into the pointer-sized integer librdkafka
//! carries for us (no allocation), and the last report of a batch completes
//! it with a single wake-up. librdkafka reports every record it accepted
//! exactly once, delivered or failed (at the latest when
//! `message.timeout.ms` expires), so every batch completes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use tokio::sync::oneshot;

use super::BusError;
use crate::bus::Published;
use crate::event::Record;

/// Low bits of a delivery opaque: the record's index within its batch.
const INDEX_BITS: u32 = 16;
/// Larger publishes are split into batches of this many records.
const MAX_BATCH: usize = 1 << INDEX_BITS;
/// How long to wait for room when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

/// One record's outcome: where it was written, or why not.
type Report = Result<(u32, u64), KafkaError>;

/// Each record's outcome, in the order the batch was given.
type Acked = Vec<Report>;

struct Batch {
    /// Each record's report as it arrives: its (partition, offset), or why
    /// it failed. `None` until reported; a record never handed to
    /// librdkafka stays `None` and reads as cancelled.
    results: Vec<Option<Report>>,
    /// Records accepted by librdkafka (or still to be) and not yet reported.
    outstanding: usize,
    done: Option<oneshot::Sender<Acked>>,
}

/// The batches in flight, keyed by a per-producer sequence number.
#[derive(Default)]
pub struct AckContext {
    batches: Mutex<HashMap<usize, Batch>>,
    next: AtomicUsize,
}

impl AckContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Batch>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, n: usize) -> (usize, oneshot::Receiver<Acked>) {
        // Wraps after 2^48 batches (2^16 on 32-bit targets), long after
        // the entries that could collide with it are gone.
        let id = self.next.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> INDEX_BITS);
        let (tx, rx) = oneshot::channel();
        let batch = Batch { results: (0..n).map(|_| None).collect(), outstanding: n, done: Some(tx) };
        self.lock().insert(id, batch);
        (id, rx)
    }

    /// `n` records of batch `id` are settled: with `report`, the record at
    /// that index was reported (delivered, failed, or refused before it was
    /// queued); without, they were never handed to librdkafka.
    fn settle(&self, id: usize, n: usize, report: Option<(usize, Report)>) {
        let mut map = self.lock();
        let Some(b) = map.get_mut(&id) else { return };
        if let Some((i, result)) = report {
            if let Some(slot) = b.results.get_mut(i) {
                *slot = Some(result);
            }
        }
        b.outstanding = b.outstanding.saturating_sub(n);
        if b.outstanding == 0 {
            if let Some(b) = map.remove(&id) {
                let results = b.results.into_iter().map(|r| r.unwrap_or(Err(KafkaError::Canceled))).collect();
                if let Some(tx) = b.done {
                    // The publisher may have given up waiting; nothing to tell then.
                    let _ = tx.send(results);
                }
            }
        }
    }
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (id, index) = (opaque >> INDEX_BITS, opaque & (MAX_BATCH - 1));
        let report = match result {
            Ok(m) => Ok((m.partition() as u32, m.offset() as u64)),
            Err((e, _)) => Err(e.clone()),
        };
        self.settle(id, 1, Some((index, report)));
    }
}

/// A cheaply cloned handle to one librdkafka producer and its polling thread.
#[derive(Clone)]
pub struct Producer {
    inner: ThreadedProducer<AckContext>,
}

impl Producer {
    pub fn create(config: &ClientConfig) -> KafkaResult<Producer> {
        Ok(Producer { inner: config.create_with_context(AckContext::default())? })
    }

    pub fn client(&self) -> &rdkafka::client::Client<AckContext> {
        use rdkafka::producer::Producer as _;
        self.inner.client()
    }

    /// Queues every record, then waits for every acknowledgement, so a
    /// batch costs one round trip. `partition` pins them (the attempts log);
    /// `empty_is_null` sends an empty value as a null one (a compaction
    /// tombstone). Returns each record's (partition, offset), in order, or
    /// the first record's error.
    pub async fn produce_all(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: &[Record],
        empty_is_null: bool,
    ) -> Result<Vec<(u32, u64)>, BusError> {
        self.produce_each(topic, partition, records, empty_is_null).await.into_iter().collect()
    }

    /// As [`Producer::produce_all`], with each record's own outcome: one
    /// refused (too large) or failed record does not fail the others, which
    /// are written once.
    pub async fn produce_each(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: &[Record],
        empty_is_null: bool,
    ) -> Vec<Published> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(MAX_BATCH) {
            out.extend(self.produce_batch(topic, partition, chunk, empty_is_null).await);
        }
        out
    }

    async fn produce_batch(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: &[Record],
        empty_is_null: bool,
    ) -> Vec<Published> {
        if records.is_empty() {
            return Vec::new();
        }
        let ctx = self.client().context();
        let (id, acked) = ctx.begin(records.len());
        // Whatever is not handed to librdkafka (an error, or this future
        // dropped while waiting for room) will never be reported.
        let mut unsent = Unsent { ctx, id, n: records.len() };
        for (i, r) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in r.headers.iter() {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            let mut rec: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, (id << INDEX_BITS) | i).headers(headers);
            if !(empty_is_null && r.value.is_empty()) {
                rec = rec.payload(&r.value[..]);
            }
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            loop {
                match self.inner.send(rec) {
                    Ok(()) => break,
                    // librdkafka's queue is full: wait for room (backpressure).
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        tokio::time::sleep(QUEUE_FULL_WAIT).await;
                    }
                    // Refused before it was queued (too large, say): this
                    // record fails alone; the others still go, once.
                    Err((source, _)) => {
                        ctx.settle(id, 1, Some((i, Err(source))));
                        break;
                    }
                }
            }
            unsent.n -= 1;
        }
        drop(unsent);
        match acked.await {
            Ok(results) => results
                .into_iter()
                .map(|r| r.map_err(|source| super::KafkaBusError::Client { op: "produce", source }.into()))
                .collect(),
            Err(_) => (0..records.len())
                .map(|_| Err(BusError::Task("the producer was dropped before acknowledging".into())))
                .collect(),
        }
    }
}

/// Settles the records of a batch that never reached librdkafka.
struct Unsent<'a> {
    ctx: &'a AckContext,
    id: usize,
    n: usize,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.ctx.settle(self.id, self.n, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_completes_with_its_last_report_in_record_order() {
        let ctx = AckContext::default();
        let (id, mut rx) = ctx.begin(3);
        ctx.settle(id, 1, Some((2, Ok((1, 7)))));
        ctx.settle(id, 1, Some((0, Ok((0, 4)))));
        assert!(rx.try_recv().is_err(), "one record is still outstanding");
        ctx.settle(id, 1, Some((1, Ok((0, 5)))));
        let got: Vec<(u32, u64)> = rx.try_recv().unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![(0, 4), (0, 5), (1, 7)]);
        assert!(ctx.lock().is_empty());
    }

    #[test]
    fn a_failed_record_fails_alone_and_unsent_records_settle_the_batch() {
        let ctx = AckContext::default();
        let (id, mut rx) = ctx.begin(4);
        ctx.settle(id, 1, Some((0, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))));
        ctx.settle(id, 1, Some((1, Ok((0, 1)))));
        // The last two were never handed to librdkafka.
        ctx.settle(id, 2, None);
        let got = rx.try_recv().unwrap();
        assert!(matches!(got[0], Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut))));
        assert_eq!(got[1].as_ref().ok(), Some(&(0, 1)));
        assert!(matches!(got[2], Err(KafkaError::Canceled)) && matches!(got[3], Err(KafkaError::Canceled)));
        assert!(ctx.lock().is_empty());
    }

    #[test]
    fn opaques_carry_batch_and_index() {
        let ctx = AckContext::default();
        let (a, _ra) = ctx.begin(1);
        let (b, _rb) = ctx.begin(1);
        assert_ne!(a, b);
        let opaque = (b << INDEX_BITS) | 5;
        assert_eq!((opaque >> INDEX_BITS, opaque & (MAX_BATCH - 1)), (b, 5));
    }
}
