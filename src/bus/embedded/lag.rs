//! Consumer lag on the embedded bus: for each partition this member holds
//! the lease of, the partition's next offset less the group's committed
//! one. The same figure `/metrics` reports for Kafka, read from the store
//! on a connection of the probe's own (read-only), off the worker's loop.

use std::path::PathBuf;
use std::sync::{Mutex, Weak};

use rusqlite::{params, Connection, OpenFlags};

use crate::bus::TopicPartition;

/// Reads lag for one member's partitions. It holds the consumer weakly: once
/// the consumer is closed, [`EmbeddedLagProbe::read`] returns `None`.
#[derive(Clone)]
pub struct EmbeddedLagProbe {
    pub(super) path: PathBuf,
    pub(super) group: String,
    pub(super) member: String,
    pub(super) alive: Weak<()>,
    pub(super) conn: std::sync::Arc<Mutex<Option<Connection>>>,
}

impl EmbeddedLagProbe {
    /// Lag of each partition this member owns; `None` once the consumer is
    /// closed. Blocking: call it from a blocking thread. A store that cannot
    /// be read right now reports no partitions rather than an error.
    pub fn read(&self) -> Option<Vec<(TopicPartition, u64)>> {
        self.alive.upgrade()?;
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            *guard = Connection::open_with_flags(&self.path, flags).ok();
        }
        let Some(conn) = guard.as_ref() else { return Some(Vec::new()) };
        Some(self.query(conn).unwrap_or_default())
    }

    fn query(&self, conn: &Connection) -> rusqlite::Result<Vec<(TopicPartition, u64)>> {
        let mut st = conn.prepare_cached(
            "SELECT l.topic, l.part, coalesce(h.next_offset, 0), coalesce(o.next_offset, 0)
             FROM leases l
             LEFT JOIN heads h ON h.topic = l.topic AND h.part = l.part
             LEFT JOIN offsets o ON o.grp = l.grp AND o.topic = l.topic AND o.part = l.part
             WHERE l.grp = ?1 AND l.owner = ?2
             ORDER BY l.topic, l.part",
        )?;
        let rows = st.query_map(params![self.group, self.member], |r| {
            let (topic, part, head, committed): (String, u32, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok((TopicPartition { topic: topic.into(), partition: part }, head.saturating_sub(committed).max(0) as u64))
        })?;
        rows.collect()
    }
}
