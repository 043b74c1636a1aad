//! Rows already read from a feature store, kept in memory so that a hot
//! entity costs a hash lookup instead of an SQL seek.
//!
//! Why: a feature lookup was about a tenth of a worker's CPU per event, and
//! a worker sees the same customers over and over. The cache never serves
//! stale rows: it is tagged with the store's `PRAGMA data_version`, which
//! changes whenever another connection (`modelbus features load`) commits,
//! and it is emptied when that happens. Entities the store lacks are
//! remembered too, so a stream of unknown keys does not query every batch.
//! It holds at most `cap` entities and about `max_bytes` of keys and rows;
//! when full it starts over, which keeps it bounded without bookkeeping on
//! every hit. (Keys come from events; the worker refuses keys over 256
//! bytes, and the byte bound holds whatever the keys and rows weigh.)

use std::collections::HashMap;

use super::Row;

/// foldhash, not the default SipHash: this is hashed once per event, and
/// SipHash was most of the lookup's cost. It is still seeded per process.
type Map = HashMap<String, Option<Row>, foldhash::fast::RandomState>;

pub struct RowCache {
    cap: usize,
    max_bytes: usize,
    /// What the entries weigh, as [`weight`] counts it.
    bytes: usize,
    version: Option<i64>,
    rows: Map,
}

/// About what one entry takes in memory: its key, its row's cells (and any
/// text in them), and the map's own slot and the row's allocation.
fn weight(key: &str, row: &Option<Row>) -> usize {
    let cells = row.as_ref().map_or(0, |r| {
        r.iter()
            .map(|c| std::mem::size_of::<super::Cell>() + if let super::Cell::Text(t) = c { t.len() } else { 0 })
            .sum()
    });
    key.len() + cells + 64
}

impl RowCache {
    /// A cache of at most `cap` entities and about `max_bytes`; a `cap` of
    /// 0 turns it off.
    pub fn new(cap: usize, max_bytes: usize) -> RowCache {
        RowCache { cap, max_bytes, bytes: 0, version: None, rows: Map::default() }
    }

    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
        self.version = None;
    }

    /// Forgets everything if the store changed since the rows were read.
    pub fn sync(&mut self, data_version: i64) {
        if self.version != Some(data_version) {
            self.clear();
            self.version = Some(data_version);
        }
    }

    /// `Some(row)` when known: the entity's features, or `None` if the
    /// store does not have it.
    pub fn get(&self, key: &str) -> Option<&Option<Row>> {
        self.rows.get(key)
    }

    pub fn insert(&mut self, key: String, row: Option<Row>) {
        if !self.enabled() {
            return;
        }
        let w = weight(&key, &row);
        if w > self.max_bytes {
            return;
        }
        if self.rows.len() >= self.cap || self.bytes + w > self.max_bytes {
            self.rows.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.rows.get(&key) {
            self.bytes = self.bytes.saturating_sub(weight(&key, old));
        }
        self.bytes += w;
        self.rows.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Cell;

    #[test]
    fn a_new_data_version_empties_it() {
        let mut c = RowCache::new(10, 1 << 20);
        c.sync(1);
        c.insert("a".into(), Some(Row::from(vec![Cell::Num(1.0)])));
        c.insert("b".into(), None);
        assert_eq!(c.get("a").cloned().flatten().as_deref(), Some(&[Cell::Num(1.0)][..]));
        assert_eq!(c.get("b"), Some(&None), "a missing entity is remembered");
        c.sync(1);
        assert!(c.get("a").is_some(), "same version keeps rows");
        c.sync(2);
        assert!(c.get("a").is_none() && c.get("b").is_none());
    }

    #[test]
    fn bounded_and_can_be_off() {
        let mut c = RowCache::new(2, 1 << 20);
        c.sync(0);
        for k in ["a", "b", "c"] {
            c.insert(k.into(), None);
        }
        assert!(c.get("a").is_none() && c.get("c").is_some(), "full: started over");
        let mut off = RowCache::new(0, 1 << 20);
        off.insert("a".into(), None);
        assert!(off.get("a").is_none());
    }

    #[test]
    fn bounded_by_bytes_whatever_the_keys_weigh() {
        let mut c = RowCache::new(1_000_000, 10_000);
        c.sync(0);
        for i in 0..1000 {
            c.insert(format!("{i:0>200}"), Some(Row::from(vec![Cell::Text("x".repeat(100))])));
            assert!(c.bytes <= 10_000, "{} bytes held", c.bytes);
        }
        assert!(!c.rows.is_empty());
        // An entry heavier than the whole budget is not kept at all.
        c.insert("k".repeat(20_000), None);
        assert!(c.get(&"k".repeat(20_000)).is_none() && c.bytes <= 10_000);
    }
}
