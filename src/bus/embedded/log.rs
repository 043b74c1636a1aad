//! Partition logs: the records of each (topic, partition) live in a table of
//! their own, `log_<id>`, keyed by offset (the rowid). The `logs` table maps
//! a partition to its id; `heads` keeps each partition's next offset.
//!
//! Why not one `records` table keyed by (topic, partition, offset), as the
//! first format had: every append then lands in the middle of one shared
//! b-tree, and each full page splits by redistributing its neighbours
//! (`balance_nonroot`), after comparing the topic text at every level. With
//! one rowid table per partition an append is always at the right edge,
//! where SQLite splits by starting a new page and leaves the old one full.
//! Under callgrind this cut the SQLite share of a result's publish by more
//! than half. Offsets are the rowids, so a fetch is a rowid range scan.

use rusqlite::{params, Connection, OptionalExtension};

use super::store;
use crate::bus::partition::partition_for;
use crate::bus::{Delivery, TopicPartition};
use crate::event::{Headers, Record};

fn table(id: i64) -> String {
    format!("log_{id}")
}

/// The id of a partition's log, if it was ever written.
fn id_of(c: &Connection, topic: &str, part: u32) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM logs WHERE topic = ?1 AND part = ?2")?
        .query_row(params![topic, part], |r| r.get(0))
        .optional()
}

/// The id of a partition's log, creating the log inside the caller's
/// write transaction when it does not exist yet.
fn ensure(c: &Connection, topic: &str, part: u32) -> rusqlite::Result<i64> {
    if let Some(id) = id_of(c, topic, part)? {
        return Ok(id);
    }
    c.execute("INSERT INTO logs(topic, part) VALUES (?1, ?2)", params![topic, part])?;
    let id = c.last_insert_rowid();
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {}(
            off INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
            key BLOB, headers BLOB NOT NULL, value BLOB NOT NULL)",
        table(id)
    ))?;
    Ok(id)
}

pub(crate) fn head(c: &Connection, topic: &str, part: u32) -> rusqlite::Result<u64> {
    let mut st = c.prepare_cached("SELECT next_offset FROM heads WHERE topic = ?1 AND part = ?2")?;
    Ok(st.query_row(params![topic, part], |r| r.get::<_, i64>(0)).optional()?.unwrap_or(0) as u64)
}

/// Appends records inside the caller's write transaction; returns each
/// record's (partition, offset), in input order.
pub(crate) fn append(
    c: &Connection,
    topic: &str,
    partitions: u32,
    records: Vec<Record>,
    round_robin: u32,
) -> rusqlite::Result<Vec<(u32, u64)>> {
    let ts = store::now_ms();
    let parts: Vec<u32> = records
        .iter()
        .enumerate()
        .map(|(i, r)| match &r.key {
            Some(k) => partition_for(k, partitions),
            None => round_robin.wrapping_add(i as u32) % partitions,
        })
        .collect();
    let mut out = vec![(0, 0); records.len()];
    let mut up = c.prepare_cached(
        "INSERT INTO heads(topic, part, next_offset) VALUES (?1, ?2, ?3)
         ON CONFLICT(topic, part) DO UPDATE SET next_offset = excluded.next_offset",
    )?;
    // One pass per partition touched, so each uses one prepared insert.
    let mut done: Vec<u32> = Vec::new();
    for &part in &parts {
        if done.contains(&part) {
            continue;
        }
        done.push(part);
        let id = ensure(c, topic, part)?;
        let mut off = head(c, topic, part)?;
        let mut ins = c.prepare_cached(&format!(
            "INSERT INTO {}(off, ts, key, headers, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            table(id)
        ))?;
        for (i, r) in records.iter().enumerate().filter(|(i, _)| parts[*i] == part) {
            ins.execute(params![off as i64, ts, r.key, r.headers.as_bytes(), r.value])?;
            out[i] = (part, off);
            off += 1;
        }
        up.execute(params![topic, part, off as i64])?;
    }
    Ok(out)
}

/// The most bytes ([`Record::size`]) one fetch returns, past its first
/// record: a batch of a thousand megabyte records would otherwise be held
/// in memory at once.
pub(crate) const MAX_FETCH_BYTES: usize = 16 << 20;

/// One batch of up to `max` records and about [`MAX_FETCH_BYTES`] from
/// several partitions, each read from its offset, in the order given.
pub(crate) fn fetch_batch(
    c: &Connection,
    parts: impl IntoIterator<Item = (TopicPartition, u64)>,
    max: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (tp, from) in parts {
        if out.len() >= max || bytes >= MAX_FETCH_BYTES {
            break;
        }
        let room = max - out.len();
        fetch(c, &tp, from, room, &mut out, &mut bytes)?;
    }
    Ok(out)
}

/// Appends up to `max` records of one partition, from offset `from`, to
/// `out`, stopping once `bytes` (the batch's running size) reaches
/// [`MAX_FETCH_BYTES`]. A poll reads several partitions into one batch, so
/// they go straight into it rather than through a vector per partition.
fn fetch(
    c: &Connection,
    tp: &TopicPartition,
    from: u64,
    max: usize,
    out: &mut Vec<Delivery>,
    bytes: &mut usize,
) -> rusqlite::Result<()> {
    let Some(id) = id_of(c, &tp.topic, tp.partition)? else {
        return Ok(());
    };
    let mut st = c.prepare_cached(&format!(
        "SELECT off, ts, key, headers, value FROM {} WHERE off >= ?1 ORDER BY off LIMIT ?2",
        table(id)
    ))?;
    let rows = st.query_map(params![from as i64, max as i64], |r| {
        Ok(Delivery {
            tp: tp.clone(),
            offset: r.get::<_, i64>(0)? as u64,
            timestamp_ms: r.get(1)?,
            record: Record { key: r.get(2)?, headers: Headers::from_bytes(r.get::<_, Vec<u8>>(3)?), value: r.get(4)? },
            attempts: None,
        })
    })?;
    for row in rows {
        let d = row?;
        // Only the value's length: the whole size walks the headers, and
        // the value is what can be large.
        *bytes += d.record.value.len();
        out.push(d);
        if *bytes >= MAX_FETCH_BYTES {
            break;
        }
    }
    Ok(())
}

/// Deletes old records of retained topics: older than `min_ts` (ms), and
/// more than `keep` behind the head. Dead-letter topics are unretained and
/// never touched.
pub(crate) fn enforce_retention(c: &Connection, min_ts: Option<i64>, keep: Option<u64>) -> rusqlite::Result<()> {
    let logs: Vec<(i64, String, u32)> = c
        .prepare_cached(
            "SELECT l.id, l.topic, l.part FROM logs l JOIN topics t ON t.name = l.topic WHERE t.retained = 1",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, topic, part) in logs {
        if let Some(min_ts) = min_ts {
            c.execute(&format!("DELETE FROM {} WHERE ts < ?1", table(id)), [min_ts])?;
        }
        if let Some(keep) = keep {
            let cut = head(c, &topic, part)?.saturating_sub(keep);
            c.execute(&format!("DELETE FROM {} WHERE off < ?1", table(id)), [cut as i64])?;
        }
    }
    Ok(())
}

/// Moves the records of a data directory written by the first storage
/// format (one shared `records` table) into partition logs, once, in one
/// transaction. Offsets, timestamps and bytes are kept as they were.
pub(crate) fn migrate_shared_table(c: &mut Connection) -> rusqlite::Result<()> {
    let exists = |c: &Connection| -> rusqlite::Result<bool> {
        c.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'", [], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    };
    if !exists(c)? {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated while this one waited for the lock.
    if !exists(&tx)? {
        return Ok(());
    }
    let parts: Vec<(String, u32)> = tx
        .prepare("SELECT DISTINCT topic, part FROM records")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (topic, part) in &parts {
        let id = ensure(&tx, topic, *part)?;
        tx.execute(
            &format!(
                "INSERT INTO {}(off, ts, key, headers, value)
                 SELECT off, ts, key, headers, value FROM records WHERE topic = ?1 AND part = ?2 ORDER BY off",
                table(id)
            ),
            params![topic, part],
        )?;
    }
    tx.execute_batch("DROP TABLE records")?;
    tx.commit()?;
    tracing::info!(partitions = parts.len(), "moved records into per-partition logs (storage format 2)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = store::open(dir.path(), crate::bus::embedded::SyncMode::Normal).unwrap();
        (dir, c)
    }

    fn fetch_vec(c: &Connection, tp: &TopicPartition, from: u64, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        fetch(c, tp, from, max, &mut out, &mut 0).unwrap();
        out
    }

    #[test]
    fn a_fetch_is_bounded_by_bytes_too() {
        let (_d, c) = conn();
        let big = "x".repeat(MAX_FETCH_BYTES / 4 + 1);
        append(&c, "t", 2, (0..10).map(|i| rec(&format!("k{i}"), &big)).collect(), 0).unwrap();
        let parts = (0..2).map(|p| (TopicPartition { topic: "t".into(), partition: p }, 0));
        let got = fetch_batch(&c, parts, 1000).unwrap();
        assert_eq!(got.len(), 4, "four records reach the bound; the fetch stops there");
        // One record larger than the bound still comes, alone.
        append(&c, "u", 1, vec![rec("k", &"y".repeat(MAX_FETCH_BYTES + 1)), rec("k", "z")], 0).unwrap();
        let got = fetch_batch(&c, [(TopicPartition { topic: "u".into(), partition: 0 }, 0)], 1000).unwrap();
        assert_eq!(got.len(), 1);
    }

    fn rec(key: &str, value: &str) -> Record {
        Record { key: Some(key.into()), headers: Headers::from_pairs([("h", key)]), value: value.into() }
    }

    #[test]
    fn appends_and_fetches_by_offset_per_partition() {
        let (_d, c) = conn();
        let out = append(&c, "t", 1, vec![rec("a", "1"), rec("b", "2"), rec("c", "3")], 0).unwrap();
        assert_eq!(out, vec![(0, 0), (0, 1), (0, 2)]);
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        let got = fetch_vec(&c, &tp, 1, 10);
        assert_eq!(got.iter().map(|d| d.offset).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(got[0].record, rec("b", "2"));
        assert!(fetch_vec(&c, &TopicPartition { topic: "never".into(), partition: 0 }, 0, 10).is_empty());
    }

    #[test]
    fn retention_by_count_keeps_offsets_growing() {
        let (_d, c) = conn();
        c.execute("INSERT INTO topics(name, partitions, retained) VALUES ('t', 1, 1)", []).unwrap();
        append(&c, "t", 1, (0..5).map(|i| rec("k", &i.to_string())).collect(), 0).unwrap();
        enforce_retention(&c, None, Some(2)).unwrap();
        let tp = TopicPartition { topic: "t".into(), partition: 0 };
        assert_eq!(fetch_vec(&c, &tp, 0, 10).iter().map(|d| d.offset).collect::<Vec<_>>(), vec![3, 4]);
        let next = append(&c, "t", 1, vec![rec("k", "5")], 0).unwrap();
        assert_eq!(next, vec![(0, 5)], "offsets are never reused after deletion");
    }

    #[test]
    fn first_format_records_are_migrated_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(store::FILE_NAME)).unwrap();
            c.execute_batch(
                "CREATE TABLE records(
                    topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
                    ts INTEGER NOT NULL, key BLOB, headers BLOB NOT NULL, value BLOB NOT NULL,
                    PRIMARY KEY(topic, part, off)) WITHOUT ROWID;
                 CREATE TABLE heads(topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                    PRIMARY KEY(topic, part)) WITHOUT ROWID;
                 INSERT INTO records VALUES ('t', 1, 7, 5, X'6B', X'00000000', X'7B7D');
                 INSERT INTO heads VALUES ('t', 1, 8);",
            )
            .unwrap();
        }
        let c = store::open(dir.path(), crate::bus::embedded::SyncMode::Normal).unwrap();
        let tp = TopicPartition { topic: "t".into(), partition: 1 };
        let got = fetch_vec(&c, &tp, 0, 10);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].offset, got[0].timestamp_ms), (7, 5));
        assert_eq!(got[0].record.value, b"{}");
        assert_eq!(append(&c, "t", 2, vec![Record { key: None, ..rec("", "x") }], 1).unwrap(), vec![(1, 8)]);
        let gone: Option<i64> =
            c.query_row("SELECT 1 FROM sqlite_master WHERE name = 'records'", [], |r| r.get(0)).optional().unwrap();
        assert!(gone.is_none());
    }
}
