//! Giving freed memory back to the OS once a burst is over.
//!
//! mimalloc (the `override` build, so it is every allocator in the process)
//! returns a page to the OS only after the thread that allocated from it
//! has collected it, which an idle thread does not do on its own. Once a
//! worker has been idle for half a second (a backlog drained), its thread
//! collects at once (`Worker::serve`).
//!
//! Records fetched on the blocking pool's threads stay with those threads
//! until they allocate again or exit; waking each pool thread to collect
//! was tried and started extra threads, whose stacks and heaps cost more
//! (about 4 MiB) than the collection gave back.

/// Frees what the calling thread and the shared arenas no longer use.
/// Call it when a worker goes idle; it is not meant for the hot path.
pub fn release_free() {
    // SAFETY: takes no pointers; mimalloc initialises itself before main.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
