//! Giving freed memory back to the OS once a burst is over.
//!
//! mimalloc (the `override` build, so it is every allocator in the process)
//! returns freed pages after a purge delay, but only when the thread that
//! owns them calls into it again. After a backlog drain the worker holds
//! about 11 MiB it no longer uses (`modelbus bench`: 28.6 MiB anonymous
//! when the drain ended, 17.2 MiB a paced run later), and that stayed the
//! resident peak until traffic picked up.

/// Frees what the calling thread's heap and the shared arenas no longer
/// use. Cheap to call when idle; not meant for the hot path.
pub fn release_free() {
    // SAFETY: takes no pointers; mimalloc is initialised before main runs.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
