//! The embedded feature store: one SQLite table per store (`fs_<name>`) in
//! `data_dir/features.sqlite`, an entity key column plus one column per
//! feature, loaded from CSV. A batch is one query (`IN rarray(?)`) for the
//! entities not already in the store's [`RowCache`].

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use rusqlite::{types::Value as SqlValue, Connection};

use super::cache::RowCache;
use super::{Cell, FeatureError, Row};

pub const FILE_NAME: &str = "features.sqlite";

/// The embedded store's own keys in `[feature_stores.<name>]`: none yet
/// (its table lives in `data_dir`), so any other key is refused.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedStoreConfig {}

pub struct EmbeddedStore {
    name: String,
    conn: Arc<Mutex<Connection>>,
    /// The SELECT for the prepared feature list.
    query: Arc<Mutex<Option<String>>>,
    cache: Arc<Mutex<RowCache>>,
}

fn open_conn(data_dir: &Path, store: &str) -> Result<Connection, FeatureError> {
    let err = |source| FeatureError::Store { store: store.to_string(), source };
    // Owner-only, before SQLite creates the file (and its -wal, -shm) with the umask's mode.
    let path = crate::private_fs::prepare_db(data_dir, FILE_NAME).map_err(|e| FeatureError::Csv {
        path: data_dir.display().to_string(),
        reason: format!("cannot create data directory or database file: {e}"),
    })?;
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_handler(Some(crate::sqlite_config::short_waits)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    rusqlite::vtab::array::load_module(&conn).map_err(err)?;
    Ok(conn)
}

fn table(store: &str) -> String {
    format!("\"fs_{store}\"")
}

fn columns(conn: &Connection, store: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("SELECT name FROM pragma_table_info('fs_{store}') ORDER BY cid"))?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

impl EmbeddedStore {
    /// `cache_entries` and `cache_bytes` bound the in-memory row cache
    /// (`cache_entries = 0`: none).
    pub fn open(
        name: &str,
        data_dir: &Path,
        cache_entries: usize,
        cache_bytes: usize,
    ) -> Result<EmbeddedStore, FeatureError> {
        Ok(EmbeddedStore {
            name: name.to_string(),
            conn: Arc::new(Mutex::new(open_conn(data_dir, name)?)),
            query: Arc::new(Mutex::new(None)),
            cache: Arc::new(Mutex::new(RowCache::new(cache_entries, cache_bytes))),
        })
    }

    pub async fn prepare(&self, features: &[String]) -> Result<(), FeatureError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let cols =
            columns(&conn, &self.name).map_err(|source| FeatureError::Store { store: self.name.clone(), source })?;
        if cols.is_empty() {
            return Err(FeatureError::NotLoaded(self.name.clone()));
        }
        for f in features {
            if !cols[1..].contains(f) {
                return Err(FeatureError::UnknownFeature {
                    store: self.name.clone(),
                    feature: f.clone(),
                    available: cols[1..].join(", "),
                });
            }
        }
        let select: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
        let sql = format!(
            "SELECT \"{}\", {} FROM {} WHERE \"{}\" IN rarray(?1)",
            cols[0],
            if select.is_empty() { "1".into() } else { select.join(", ") },
            table(&self.name),
            cols[0]
        );
        *self.query.lock().unwrap_or_else(|e| e.into_inner()) = Some(sql);
        // Cached rows hold the previous feature list's columns.
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    pub async fn lookup(&self, keys: Vec<String>) -> Result<Vec<Option<Row>>, FeatureError> {
        let sql = self
            .query
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FeatureError::NotLoaded(self.name.clone()))?;
        // A hot working set is all in the row cache: then no query runs and
        // the lookup stays on this thread, because handing it to the blocking
        // pool costs two thread switches per batch, more than the lookup.
        if let Some(rows) = self.all_cached(&keys)? {
            return Ok(rows);
        }
        let (conn, store, cache) = (self.conn.clone(), self.name.clone(), self.cache.clone());
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            let err = |source| store_err(&store, source);
            if cache.enabled() {
                cache.sync(data_version(&conn).map_err(err)?);
            }
            let mut out: Vec<Option<Row>> = vec![None; keys.len()];
            // Each distinct uncached key is asked for once; its row lands at
            // the batch position of its first occurrence, then repeats copy it.
            let mut first: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
            let mut missing = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                if let Some(row) = cache.get(k) {
                    out[i] = row.clone();
                    continue;
                }
                first.entry(k.as_str()).or_insert_with(|| {
                    missing.push(SqlValue::Text(k.clone()));
                    i
                });
            }
            if missing.is_empty() {
                return Ok(out);
            }
            let mut st = conn.prepare_cached(&sql).map_err(err)?;
            let ncols = st.column_count() - 1;
            let mut rows = st.query([Rc::new(missing)]).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let at = match r.get_ref(0).map_err(err)? {
                    rusqlite::types::ValueRef::Text(t) => {
                        std::str::from_utf8(t).ok().and_then(|k| first.get(k)).copied()
                    }
                    _ => None,
                };
                let Some(at) = at else { continue };
                let mut cells = Vec::with_capacity(ncols);
                for i in 1..=ncols {
                    cells.push(match r.get_ref(i).map_err(err)? {
                        rusqlite::types::ValueRef::Integer(v) => Cell::Num(v as f64),
                        rusqlite::types::ValueRef::Real(v) => Cell::Num(v),
                        rusqlite::types::ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        _ => Cell::Null,
                    });
                }
                out[at] = Some(Row::from(cells));
            }
            for (k, &at) in &first {
                cache.insert(k.to_string(), out[at].clone());
            }
            for (i, k) in keys.iter().enumerate() {
                match first.get(k.as_str()) {
                    Some(&at) if at != i => out[i] = out[at].clone(),
                    _ => {}
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| FeatureError::Task(e.to_string()))?
    }

    /// Every key's row when all of them are cached and the store has not
    /// changed since; `None` when any is not (or the store is busy).
    fn all_cached(&self, keys: &[String]) -> Result<Option<Vec<Option<Row>>>, FeatureError> {
        // Never wait here, on the runtime's thread: a busy store takes the slow path.
        let (Ok(conn), Ok(mut cache)) = (self.conn.try_lock(), self.cache.try_lock()) else { return Ok(None) };
        if !cache.enabled() {
            return Ok(None);
        }
        // Reads the WAL index in shared memory; it does not wait on writers.
        let version = data_version(&conn).map_err(|e| store_err(&self.name, e))?;
        cache.sync(version);
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match cache.get(k) {
                Some(row) => out.push(row.clone()),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

/// Changes whenever another connection commits to the store. Prepared once
/// per connection: it runs every batch, and parsing it was most of its cost.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))
}

fn store_err(store: &str, source: rusqlite::Error) -> FeatureError {
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            FeatureError::Busy { store: store.to_string(), source }
        }
        _ => FeatureError::Store { store: store.to_string(), source },
    }
}

/// Replaces store `name` with the rows of a CSV file whose first column is
/// the entity key. Numbers are stored as numbers, empty cells as NULL.
pub fn load_csv(data_dir: &Path, name: &str, csv_path: &Path) -> Result<usize, FeatureError> {
    let bad = |reason: String| FeatureError::Csv { path: csv_path.display().to_string(), reason };
    let mut rdr = csv::Reader::from_path(csv_path).map_err(|e| bad(e.to_string()))?;
    let headers: Vec<String> = rdr.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
    if headers.len() < 2 {
        return Err(bad("needs an entity key column and at least one feature column".into()));
    }
    for h in &headers {
        if !crate::config::is_identifier(h) {
            return Err(bad(format!("column `{h}` is not a valid feature name (letters, digits, `_`)")));
        }
    }
    let mut conn = open_conn(data_dir, name)?;
    let err = |source| FeatureError::Store { store: name.to_string(), source };
    let tx = conn.transaction().map_err(err)?;
    let cols: Vec<String> = headers.iter().map(|h| format!("\"{h}\"")).collect();
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({key} TEXT PRIMARY KEY, {rest}) WITHOUT ROWID;",
        t = table(name),
        key = cols[0],
        rest = cols[1..].join(", ")
    ))
    .map_err(err)?;
    let placeholders = vec!["?"; cols.len()].join(", ");
    let mut n = 0;
    {
        let mut ins =
            tx.prepare(&format!("INSERT OR REPLACE INTO {} VALUES ({placeholders})", table(name))).map_err(err)?;
        for (line, row) in rdr.records().enumerate() {
            let row = row.map_err(|e| bad(e.to_string()))?;
            if row.len() != headers.len() {
                return Err(bad(format!("row {} has {} fields, expected {}", line + 2, row.len(), headers.len())));
            }
            let vals: Vec<SqlValue> = row
                .iter()
                .enumerate()
                .map(|(i, v)| match (i, v.parse::<f64>()) {
                    (0, _) => SqlValue::Text(v.to_string()),
                    (_, _) if v.is_empty() => SqlValue::Null,
                    (_, Ok(f)) => SqlValue::Real(f),
                    (_, Err(_)) => SqlValue::Text(v.to_string()),
                })
                .collect();
            ins.execute(rusqlite::params_from_iter(vals)).map_err(err)?;
            n += 1;
        }
    }
    tx.commit().map_err(err)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_csv(dir: &Path, rows: &str) -> std::path::PathBuf {
        let p = dir.join("f.csv");
        std::fs::write(&p, format!("id,score,tier\n{rows}")).unwrap();
        p
    }

    #[tokio::test]
    async fn cached_rows_follow_a_reload_and_repeats_share_one_row() {
        let dir = tempfile::tempdir().unwrap();
        load_csv(dir.path(), "s", &write_csv(dir.path(), "a,1,gold\nb,2,\n")).unwrap();
        let store = EmbeddedStore::open("s", dir.path(), 100, 1 << 20).unwrap();
        store.prepare(&["score".into(), "tier".into()]).await.unwrap();
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();

        let got = store.lookup(keys(&["a", "zz", "a", "b"])).await.unwrap();
        assert_eq!(got[0].as_deref(), Some(&[Cell::Num(1.0), Cell::Text("gold".into())][..]));
        assert_eq!(got[1], None, "unknown entity");
        assert_eq!(got[2], got[0], "a repeated key gets the same row");
        assert_eq!(got[3].as_deref(), Some(&[Cell::Num(2.0), Cell::Null][..]));
        // Served from the cache now; still the same answers.
        assert_eq!(store.lookup(keys(&["b", "a", "zz"])).await.unwrap(), vec![got[3].clone(), got[0].clone(), None]);

        // Another connection replaces the data (as `modelbus features load`
        // does): the cache must not serve the old rows, nor the old miss.
        load_csv(dir.path(), "s", &write_csv(dir.path(), "a,10,silver\nzz,3,bronze\n")).unwrap();
        let got = store.lookup(keys(&["a", "zz", "b"])).await.unwrap();
        assert_eq!(got[0].as_deref(), Some(&[Cell::Num(10.0), Cell::Text("silver".into())][..]));
        assert_eq!(got[1].as_deref(), Some(&[Cell::Num(3.0), Cell::Text("bronze".into())][..]));
        assert_eq!(got[2], None, "b was removed by the reload");
    }

    #[tokio::test]
    async fn without_a_cache_every_lookup_reads_the_store() {
        let dir = tempfile::tempdir().unwrap();
        load_csv(dir.path(), "s", &write_csv(dir.path(), "a,1,x\n")).unwrap();
        let store = EmbeddedStore::open("s", dir.path(), 0, 1 << 20).unwrap();
        store.prepare(&["score".into()]).await.unwrap();
        assert_eq!(store.lookup(vec!["a".into()]).await.unwrap()[0].as_deref(), Some(&[Cell::Num(1.0)][..]));
        load_csv(dir.path(), "s", &write_csv(dir.path(), "a,5,x\n")).unwrap();
        assert_eq!(store.lookup(vec!["a".into()]).await.unwrap()[0].as_deref(), Some(&[Cell::Num(5.0)][..]));
    }
}
