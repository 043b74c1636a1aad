//! The SQLite file under the embedded bus: opening it (WAL, busy timeout),
//! its tables, and the in-process wake-up that lets a consumer see a record
//! published by the same process without polling. A record's headers are
//! stored in the form [`crate::event::Headers`] keeps them in memory.
//!
//! WAL with `synchronous=NORMAL` survives a process crash (`kill -9`): a
//! committed transaction is in the OS page cache and the WAL. `sync = "full"`
//! adds an fsync per commit for power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::{Connection, ErrorCode};
use tokio::sync::Notify;

use super::EmbeddedBusError;
use super::SyncMode;
use crate::bus::BusError;

pub const FILE_NAME: &str = "bus.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics(
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    retained INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS heads(
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY(topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs(
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, part INTEGER NOT NULL,
    UNIQUE(topic, part)
);
CREATE TABLE IF NOT EXISTS members(
    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat INTEGER NOT NULL, topics TEXT NOT NULL,
    PRIMARY KEY(grp, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    owner TEXT, generation INTEGER NOT NULL,
    PRIMARY KEY(grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY(grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    attempts INTEGER NOT NULL, first_failure INTEGER NOT NULL, last_failure INTEGER NOT NULL,
    PRIMARY KEY(grp, topic, part, off)
) WITHOUT ROWID;
";

pub fn open(dir: &Path, sync: SyncMode) -> Result<Connection, BusError> {
    // Owner-only, before SQLite creates the file (and its -wal, -shm) with the umask's mode.
    let path = crate::private_fs::prepare_db(dir, FILE_NAME)
        .map_err(|source| EmbeddedBusError::DataDir { path: dir.display().to_string(), source })?;
    let err = |source| store_err(&path, source);
    let mut conn = Connection::open(&path).map_err(err)?;
    conn.busy_handler(Some(crate::sqlite_config::short_waits)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    let sync = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(err)?;
    // A commit that crosses the auto-checkpoint threshold would checkpoint
    // (and fsync) inline, stalling that publish or commit for milliseconds.
    // Checkpoints run on a background thread instead (see `checkpointer`).
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(err)?;
    // A burst (a backlog published at once) grows the WAL to hundreds of MB
    // before checkpoints catch up, and SQLite reuses that file from its start
    // without shrinking it. Truncate it to 64 MiB once it restarts.
    conn.pragma_update(None, "journal_size_limit", 64i64 << 20).map_err(err)?;
    // A 1 MiB page cache per connection (SQLite's default is 2 MiB). A worker
    // appends at the right edge of each partition log and reads its input in
    // order, so this holds what it touches; the default one filled up and
    // added megabytes to a worker's resident memory.
    conn.pragma_update(None, "cache_size", -1024).map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    super::log::migrate_shared_table(&mut conn).map_err(err)?;
    // Each partition log has its own insert and fetch statements; keep them
    // all prepared (the default cache holds 16).
    conn.set_prepared_statement_cache_capacity(256);
    checkpointer(dir);
    Ok(conn)
}

/// One background thread per data directory and process that checkpoints
/// the WAL every 200 ms in PASSIVE mode (never blocking writers), so the WAL
/// stays small without any writer paying for it.
fn checkpointer(dir: &Path) {
    static STARTED: OnceLock<Mutex<std::collections::HashSet<PathBuf>>> = OnceLock::new();
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut started = STARTED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if !started.insert(key.clone()) {
        return;
    }
    let path = key.join(FILE_NAME);
    let _ = std::thread::Builder::new().name("modelbus-checkpoint".into()).spawn(move || {
        let Ok(conn) = Connection::open(&path) else { return };
        let _ = conn.busy_handler(Some(crate::sqlite_config::short_waits));
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

pub fn store_err(path: &Path, source: rusqlite::Error) -> BusError {
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => EmbeddedBusError::Busy(source).into(),
        _ => EmbeddedBusError::Store { path: path.display().to_string(), source }.into(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One wake-up per data directory, shared by every bus handle of this process.
pub fn notifier(dir: &Path) -> Arc<Notify> {
    static MAP: OnceLock<Mutex<HashMap<PathBuf, Arc<Notify>>>> = OnceLock::new();
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut map = MAP.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_default().clone()
}
