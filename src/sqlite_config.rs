//! Process-wide SQLite settings, applied once before the first connection
//! opens (SQLite refuses them after it has initialised).
//!
//! Why: the bundled SQLite allocates through glibc malloc and, by default,
//! keeps memory statistics under a global mutex on every allocation. Under a
//! worker's load (every fetched, published and looked-up row allocates) that
//! showed up as mutex time in profiles, and glibc kept a malloc arena per
//! blocking thread, several MiB of resident memory. Routing SQLite through
//! mimalloc (the global allocator, thread-local and lock-free on the fast
//! path) and turning the statistics off removes both.

use std::ffi::{c_int, c_void};
use std::sync::Once;

use rusqlite::ffi;

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    libmimalloc_sys::mi_malloc(n.max(0) as usize)
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    libmimalloc_sys::mi_free(p)
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    libmimalloc_sys::mi_realloc(p, n.max(0) as usize)
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SQLite only asks about its own allocations, which are below 2 GiB.
    libmimalloc_sys::mi_usable_size(p).min(c_int::MAX as usize) as c_int
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    libmimalloc_sys::mi_good_size(n.max(0) as usize).min(c_int::MAX as usize) as c_int
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// The methods hold a null app-data pointer and plain functions.
struct Methods(ffi::sqlite3_mem_methods);
// SAFETY: never mutated; the only pointer in it is null.
unsafe impl Sync for Methods {}

static MIMALLOC_METHODS: Methods = Methods(ffi::sqlite3_mem_methods {
    xMalloc: Some(x_malloc),
    xFree: Some(x_free),
    xRealloc: Some(x_realloc),
    xSize: Some(x_size),
    xRoundup: Some(x_roundup),
    xInit: Some(x_init),
    xShutdown: Some(x_shutdown),
    pAppData: std::ptr::null_mut(),
});

/// Applies the settings if SQLite has not initialised yet. Call it first
/// thing in `main`. Later calls, and a call after a connection was opened,
/// change nothing (SQLite keeps its defaults, which are only slower).
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before sqlite3_initialize (rusqlite
        // initialises on the first open), from one thread (inside a Once), with
        // the argument types each option documents. SQLite copies the methods.
        unsafe {
            let rc = ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
            let rc2 = ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &MIMALLOC_METHODS.0 as *const ffi::sqlite3_mem_methods);
            if rc != ffi::SQLITE_OK || rc2 != ffi::SQLITE_OK {
                tracing::debug!(rc, rc2, "SQLite was already initialised; keeping its default allocator");
            }
        }
    });
}
