//! Rows already read from a feature store, kept in memory so that a hot
//! entity costs a hash lookup instead of an SQL seek.
//!
//! Why: a feature lookup was about a tenth of a worker's CPU per event, and
//! a worker sees the same customers over and over. The cache never serves
//! stale rows: it is tagged with the store's `PRAGMA data_version`, which
//! changes whenever another connection (`modelbus features load`) commits,
//! and it is emptied when that happens. Entities the store lacks are
//! remembered too, so a stream of unknown keys does not query every batch.
//! It holds at most `cap` entities; when full it starts over, which keeps it
//! bounded without bookkeeping on every hit.

use std::collections::HashMap;

use super::Row;

/// foldhash, not the default SipHash: this is hashed once per event, and
/// SipHash was most of the lookup's cost. It is still seeded per process.
type Map = HashMap<String, Option<Row>, foldhash::fast::RandomState>;

pub struct RowCache {
    cap: usize,
    version: Option<i64>,
    rows: Map,
}

impl RowCache {
    /// A cache of at most `cap` entities; 0 turns it off.
    pub fn new(cap: usize) -> RowCache {
        RowCache { cap, version: None, rows: Map::default() }
    }

    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.rows.clear();
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
        if self.rows.len() >= self.cap {
            self.rows.clear();
        }
        self.rows.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Cell;

    #[test]
    fn a_new_data_version_empties_it() {
        let mut c = RowCache::new(10);
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
        let mut c = RowCache::new(2);
        c.sync(0);
        for k in ["a", "b", "c"] {
            c.insert(k.into(), None);
        }
        assert!(c.get("a").is_none() && c.get("c").is_some(), "full: started over");
        let mut off = RowCache::new(0);
        off.insert("a".into(), None);
        assert!(off.get("a").is_none());
    }
}
