//! Process-wide SQLite settings, applied once before the first connection
//! opens (SQLite refuses them after it has initialised).
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
