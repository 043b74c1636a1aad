//! Giving freed memory back to the OS once a burst is over.
//!
//! mimalloc (the `override` build, so it is every allocator in the process)
//! returns a page to the OS only after the thread that allocated from it
//! has collected it, which an idle thread does not do on its own. Once a
//! worker has been idle for half a second (a backlog drained), its thread
//! collects at once (`Worker::serve`).
//!
//! Records fetched on the blocking pool's threads stay with those threads
//! until they allocate again or exit (after 10 s idle). While an idle
//! consumer re-read the store every millisecond, that traffic made the pool
//! threads purge by the way; since it sleeps until a write arrives, the
//! worker collects on the pool's threads itself, one call after another.
//! Sequential calls always find an idle thread, so none is started (waking
//! them all at once was tried, and started extra threads whose stacks and
//! heaps cost about 4 MiB more than the collection gave back).

/// Threads for blocking work (SQLite, inference, Kafka commits), the
/// runtime's `max_blocking_threads`. Blocking work is sequential per worker
/// loop; with tokio's default of 512, hand-off races kept about ten threads
/// alive, each with its own allocator heap and stack (2-5 MiB of resident
/// memory). `MODELBUS_BLOCKING_THREADS` overrides it.
pub fn blocking_threads() -> usize {
    const BLOCKING_THREADS: usize = 4;
    std::env::var("MODELBUS_BLOCKING_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(BLOCKING_THREADS)
}

/// [`release_free`] on the calling thread, then on the blocking pool's
/// threads: one call per thread, each awaited before the next, so every
/// call finds an idle thread (the pool wakes its idle threads in turn).
pub async fn release_free_with_pool() {
    release_free();
    for _ in 0..blocking_threads() {
        let _ = tokio::task::spawn_blocking(release_free).await;
    }
}

/// Frees what the calling thread and the shared arenas no longer use.
/// Call it when a worker goes idle; it is not meant for the hot path.
pub fn release_free() {
    // SAFETY: takes no pointers; mimalloc initialises itself before main.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
