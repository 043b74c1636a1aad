//! The embedded bus: durable topics, partitions and consumer groups in one
//! SQLite file (WAL mode) under the data directory. Several processes on one
//! host may share it; group membership and partition leases live in the same
//! file (see [`membership`]); a commit is one transaction (see [`commit`]).

mod commit;
mod config;
mod consumer;
mod error;
pub(crate) mod lag;
mod log;
mod membership;
pub(crate) mod store;
mod wake;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;

pub use config::{EmbeddedBusConfig, SyncMode};
pub use consumer::EmbeddedConsumer;
pub use error::EmbeddedBusError;

use super::{BusError, Delivery, Published, ReadFrom, TopicPartition};
use crate::event::Record;
use log::{append, fetch_batch, head};

/// The largest record ([`Record::size`]) the embedded bus stores. SQLite
/// refuses blobs over a gigabyte and would fail the whole transaction with
/// it; records this large are far past any payload limit, so a bound well
/// below that keeps one record from holding megabytes of every fetch.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub(crate) struct Shared {
    dir: PathBuf,
    cfg: EmbeddedBusConfig,
    notify: Arc<Notify>,
}

pub struct EmbeddedBus {
    shared: Arc<Shared>,
    conn: Arc<Mutex<Connection>>,
    round_robin: AtomicU32,
}

/// Runs SQLite work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| BusError::Task(e.to_string()))?
}

impl EmbeddedBus {
    pub fn open(dir: &Path, cfg: EmbeddedBusConfig) -> Result<EmbeddedBus, BusError> {
        let conn = store::open(dir, cfg.sync)?;
        Ok(EmbeddedBus {
            shared: Arc::new(Shared { dir: dir.to_path_buf(), notify: store::notifier(dir), cfg }),
            conn: Arc::new(Mutex::new(conn)),
            round_robin: AtomicU32::new(0),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> BusError + Clone + Send + 'static {
        let path = self.shared.dir.join(store::FILE_NAME);
        move |e| store::store_err(&path, e)
    }

    pub async fn ensure_topic(&self, topic: &str, retained: bool) -> Result<u32, BusError> {
        let (topic, err, parts) = (topic.to_string(), self.err(), self.shared.cfg.partitions);
        blocking(&self.conn, move |c| ensure_topic(c, &topic, parts, retained).map_err(err)).await
    }

    /// Appends the records that fit [`MAX_RECORD_BYTES`] in one
    /// transaction; a larger one is refused alone.
    pub async fn publish_each(&self, topic: &str, mut records: Vec<Record>) -> Result<Vec<Published>, BusError> {
        // The stored sizes bound `Record::size` from above and cost nothing,
        // where `size` walks the headers: this runs for every result.
        let fits = |r: &Record| {
            r.value.len() + r.key.as_ref().map_or(0, Vec::len) + r.headers.as_bytes().len() <= MAX_RECORD_BYTES
                || r.size() <= MAX_RECORD_BYTES
        };
        if records.iter().all(fits) {
            return Ok(self.append_all(topic, records).await?.into_iter().map(Ok).collect());
        }
        let sizes: Vec<usize> = records.iter().map(Record::size).collect();
        records.retain(fits);
        let mut written = self.append_all(topic, records).await?.into_iter();
        Ok(sizes
            .into_iter()
            .map(|size| match size <= MAX_RECORD_BYTES {
                true => written.next().ok_or_else(|| BusError::Task("a record's position went missing".into())),
                false => Err(BusError::RecordTooLarge { size, limit: MAX_RECORD_BYTES }),
            })
            .collect())
    }

    async fn append_all(&self, topic: &str, records: Vec<Record>) -> Result<Vec<(u32, u64)>, BusError> {
        let (topic, err, parts) = (topic.to_string(), self.err(), self.shared.cfg.partitions);
        let rr = self.round_robin.fetch_add(records.len() as u32, Ordering::Relaxed);
        let out = blocking(&self.conn, move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&err)?;
            let n = ensure_topic(&tx, &topic, parts, true).map_err(&err)?;
            let out = append(&tx, &topic, n, records, rr).map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(out)
        })
        .await?;
        self.shared.notify.notify_waiters();
        Ok(out)
    }

    /// A group member that shares this handle's connection. A worker
    /// publishes its results through the same handle, and in WAL mode a write
    /// by one connection empties every other connection's page cache in the
    /// process; with one connection, fetches, publishes and commits keep
    /// theirs (SQLite serialises writers anyway).
    pub async fn consumer(&self, group: &str, topics: &[String]) -> Result<EmbeddedConsumer, BusError> {
        EmbeddedConsumer::join(self.shared.clone(), self.conn.clone(), group, topics).await
    }

    pub async fn topics(&self) -> Result<Vec<(String, u32)>, BusError> {
        let err = self.err();
        blocking(&self.conn, move |c| {
            let mut st = c.prepare("SELECT name, partitions FROM topics ORDER BY name").map_err(&err)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(&err)
        })
        .await
    }

    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, BusError> {
        let (t, err) = (topic.to_string(), self.err());
        blocking(&self.conn, move |c| {
            let n: Option<u32> = c
                .query_row("SELECT partitions FROM topics WHERE name = ?1", [&t], |r| r.get(0))
                .optional()
                .map_err(&err)?;
            let n = n.ok_or_else(|| BusError::NoSuchTopic(t.clone()))?;
            (0..n).map(|p| head(c, &t, p).map_err(&err)).collect()
        })
        .await
    }

    /// See [`crate::bus::Bus::read_at`]: one seek by rowid in the partition's log.
    pub async fn read_at(&self, topic: &str, partition: u32, offset: u64) -> Result<Option<Delivery>, BusError> {
        let (t, err) = (topic.to_string(), self.err());
        blocking(&self.conn, move |c| {
            let partitions = partitions_of(c, &t).map_err(&err)?.ok_or_else(|| BusError::NoSuchTopic(t.clone()))?;
            if partition >= partitions {
                return Err(BusError::BadPartition { topic: t, partition, partitions });
            }
            let tp = TopicPartition { topic: t.as_str().into(), partition };
            // The first record at or after `offset`: another one when
            // retention removed it.
            let found = fetch_batch(c, [(tp, offset)], 1).map_err(&err)?;
            Ok(found.into_iter().next().filter(|d| d.offset == offset))
        })
        .await
    }

    pub async fn read(&self, topic: &str, from: ReadFrom, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut f = self.follow(topic, from).await?;
        let mut out = Vec::new();
        loop {
            let batch = f.next_batch(max - out.len(), Duration::ZERO).await?;
            if batch.is_empty() || out.len() >= max {
                break;
            }
            out.extend(batch);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    pub async fn follow(&self, topic: &str, from: ReadFrom) -> Result<EmbeddedFollower, BusError> {
        let (t, err) = (topic.to_string(), self.err());
        let positions = blocking(&self.conn, move |c| {
            let n: Option<u32> = c
                .query_row("SELECT partitions FROM topics WHERE name = ?1", [&t], |r| r.get(0))
                .optional()
                .map_err(&err)?;
            let n = n.ok_or_else(|| BusError::NoSuchTopic(t.clone()))?;
            let mut pos = Vec::new();
            for p in 0..n {
                let off = match from {
                    ReadFrom::Beginning => 0,
                    ReadFrom::End => head(c, &t, p).map_err(&err)?,
                };
                pos.push(off);
            }
            Ok(pos)
        })
        .await?;
        Ok(EmbeddedFollower {
            topic: topic.to_string(),
            positions,
            conn: self.conn.clone(),
            path: self.shared.dir.join(store::FILE_NAME),
            notify: self.shared.notify.clone(),
        })
    }
}

/// Creates the topic if missing; returns its partition count.
fn ensure_topic(c: &Connection, topic: &str, partitions: u32, retained: bool) -> rusqlite::Result<u32> {
    let mut st = c.prepare_cached("SELECT partitions FROM topics WHERE name = ?1")?;
    if let Some(n) = st.query_row([topic], |r| r.get::<_, u32>(0)).optional()? {
        return Ok(n);
    }
    c.execute(
        "INSERT OR IGNORE INTO topics(name, partitions, retained) VALUES (?1, ?2, ?3)",
        params![topic, partitions, retained as i64],
    )?;
    st.query_row([topic], |r| r.get::<_, u32>(0))
}

/// The partition count of `topic`, or None when it does not exist.
fn partitions_of(c: &Connection, topic: &str) -> rusqlite::Result<Option<u32>> {
    c.prepare_cached("SELECT partitions FROM topics WHERE name = ?1")?.query_row([topic], |r| r.get(0)).optional()
}

/// How often a follower looks for records written by another process.
const FOLLOW_NAP: Duration = Duration::from_millis(5);

/// A group-less reader of one topic, for `tail` and the dead-letter tools.
pub struct EmbeddedFollower {
    topic: String,
    positions: Vec<u64>,
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    notify: Arc<Notify>,
}

impl EmbeddedFollower {
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let (topic, positions, path) = (self.topic.clone(), self.positions.clone(), self.path.clone());
            let batch = blocking(&self.conn, move |c| {
                let parts = positions
                    .iter()
                    .enumerate()
                    .map(|(p, from)| (TopicPartition { topic: topic.as_str().into(), partition: p as u32 }, *from));
                fetch_batch(c, parts, max).map_err(|e| store::store_err(&path, e))
            })
            .await?;
            for d in &batch {
                self.positions[d.tp.partition as usize] = d.offset + 1;
            }
            let now = tokio::time::Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            // No WAL watch here (see `wake`): followers (tail, the
            // dead-letter tools, the bench's result counting) can afford a
            // few milliseconds, and a watch would wake them on every commit
            // of a busy bus for a read transaction each.
            let nap = FOLLOW_NAP.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }
}
