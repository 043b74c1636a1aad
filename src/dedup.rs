//! Optional input dedup: a window of (`source`, `id`) pairs per consumer
//! group, in `data_dir/dedup.sqlite`. An id is recorded only after its
//! result has been emitted, so an event that failed (and may be replayed) is
//! never swallowed; an event seen again within the window is acknowledged
//! without a second result.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, types::Value as SqlValue, Connection};

use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
#[error("dedup store {path}: {source}")]
pub struct DedupError {
    path: String,
    source: rusqlite::Error,
}

impl Classify for DedupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
    fn code(&self) -> &'static str {
        "dedup_store"
    }
}

pub struct Dedup {
    conn: Arc<Mutex<Connection>>,
    /// Expired pairs are deleted every so many writes, not on each.
    writes: std::sync::atomic::AtomicU64,
    group: String,
    window: Duration,
    path: String,
}

impl Dedup {
    pub fn open(data_dir: &Path, group: &str, window: Duration) -> Result<Dedup, DedupError> {
        let path = data_dir.join("dedup.sqlite");
        let err = |source| DedupError { path: path.display().to_string(), source };
        // Owner-only, before SQLite creates the file (and its -wal, -shm) with
        // the umask's mode. A failure shows when SQLite cannot open the file.
        let _ = crate::private_fs::prepare_db(data_dir, "dedup.sqlite");
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_handler(Some(crate::sqlite_config::short_waits)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        rusqlite::vtab::array::load_module(&conn).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS seen(grp TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL,
             PRIMARY KEY(grp, key)) WITHOUT ROWID;",
        )
        .map_err(err)?;
        Ok(Dedup {
            conn: Arc::new(Mutex::new(conn)),
            writes: Default::default(),
            group: group.into(),
            window,
            path: path.display().to_string(),
        })
    }

    fn key(source: &str, id: &str) -> String {
        format!("{}\u{1f}{id}", source.len()) + source
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DedupError> {
        let (conn, group, path) = (self.conn.clone(), self.group.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&c, &group).map_err(|source| DedupError { path, source })
        })
        .await
        .unwrap_or_else(|e| {
            Err(DedupError { path: self.path.clone(), source: rusqlite::Error::InvalidParameterName(e.to_string()) })
        })
    }

    /// Which of these (source, id) pairs had a result emitted within the window.
    pub async fn seen(&self, ids: Vec<(String, String)>) -> Result<Vec<bool>, DedupError> {
        let since = now_ms() - self.window.as_millis() as i64;
        let keys: Vec<String> = ids.iter().map(|(s, i)| Self::key(s, i)).collect();
        self.with(move |c, group| {
            let param: Rc<Vec<SqlValue>> = Rc::new(keys.iter().map(|k| SqlValue::Text(k.clone())).collect());
            let mut st = c.prepare_cached("SELECT key FROM seen WHERE grp = ?1 AND at >= ?2 AND key IN rarray(?3)")?;
            let found: std::collections::HashSet<String> =
                st.query_map(params![group, since, param], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(keys.iter().map(|k| found.contains(k)).collect())
        })
        .await
    }

    /// Records pairs whose results were emitted; forgets expired ones.
    pub async fn record(&self, ids: Vec<(String, String)>) -> Result<(), DedupError> {
        let now = now_ms();
        let expire = now - self.window.as_millis() as i64;
        let keys: Vec<String> = ids.iter().map(|(s, i)| Self::key(s, i)).collect();
        let sweep = self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(256);
        self.with(move |c, group| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            let res = (|| {
                let mut st = c.prepare_cached(
                    "INSERT INTO seen(grp, key, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(grp, key) DO UPDATE SET at = excluded.at",
                )?;
                for k in &keys {
                    st.execute(params![group, k, now])?;
                }
                if sweep {
                    c.execute("DELETE FROM seen WHERE grp = ?1 AND at < ?2", params![group, expire])?;
                }
                Ok(())
            })();
            c.execute_batch(if res.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            res
        })
        .await
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
