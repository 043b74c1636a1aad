//! SQLite settings shared by every store that uses it (the embedded bus,
//! the embedded feature store, dedup): the process-wide ones, applied once
//! before the first connection opens (SQLite refuses them after it has
//! initialised), and the busy handler every connection uses.
//!
//! Why: by default SQLite keeps memory statistics under a global mutex on
//! every allocation, and a worker allocates in SQLite for every fetched,
//! published and looked-up row; the mutex showed up in profiles. Nothing
//! here reads those statistics. (SQLite's `malloc` itself is mimalloc: the
//! binary overrides the C allocator, see `main.rs`.)

use std::ffi::c_int;
use std::sync::Once;

use rusqlite::ffi;

/// Applies the settings if SQLite has not initialised yet. Call it first
/// thing in `main`. Later calls, and a call after a connection was opened,
/// change nothing (SQLite keeps its defaults, which are only slower).
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before sqlite3_initialize (rusqlite
        // initialises on the first open), from one thread (inside a Once),
        // with the int argument SQLITE_CONFIG_MEMSTATUS documents.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was already initialised; keeping its memory statistics on");
        }
    });
}

/// SQLite's default busy handler sleeps 1, 2, 5, 10... ms between tries,
/// which turns brief write-lock contention between a publisher and a worker
/// into milliseconds of latency. Writers here hold the lock for well under a
/// millisecond, so retry every 50µs, for up to 10 s in all.
pub fn short_waits(attempt: i32) -> bool {
    const STEP: std::time::Duration = std::time::Duration::from_micros(50);
    if attempt >= 200_000 {
        return false;
    }
    std::thread::sleep(STEP);
    true
}
