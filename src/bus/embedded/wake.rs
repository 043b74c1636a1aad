//! How an idle consumer learns that another process wrote to the bus.
//!
//! Every commit on the bus, by any process on the host, appends to the
//! SQLite WAL file, so an inotify watch on that file (`IN_MODIFY`) is a
//! wake-up for "something was written". Without it an idle consumer could
//! only re-read the store every `poll_interval`: with tokio's millisecond
//! timer a 1 ms interval sleeps 1–2 ms, which was most of an event's
//! latency at low rates, and it re-read the store a thousand times a second
//! while idle. With the watch, `poll_interval` is only the fallback period.
//!
//! The kernel merges identical unread events, so a busy writer leaves at
//! most a few pending; they are drained before each look at the store, and
//! a write after that look makes the descriptor readable again. Where the
//! watch cannot be set up (inotify limits, no WAL file yet), consumers fall
//! back to polling every `poll_interval` (50 ms by default), with a warning
//! in the log.

use std::path::Path;
use std::time::Duration;

use inotify::{Inotify, WatchMask};
use tokio::io::unix::AsyncFd;
use tokio::sync::futures::Notified;

pub struct WalWatch {
    fd: AsyncFd<Inotify>,
    /// Events are only counted, never inspected; a small buffer drains the
    /// queue in a few reads.
    buf: [u8; 1024],
}

impl WalWatch {
    /// A watch on the WAL of the store at `db` (`<db>-wal`), or None (logged)
    /// when it cannot be set up.
    pub fn new(db: &Path) -> Option<WalWatch> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let setup = || -> std::io::Result<WalWatch> {
            let inotify = Inotify::init()?;
            inotify.watches().add(&wal, WatchMask::MODIFY)?;
            // SAFETY: `Inotify` owns its descriptor and closes it only when
            // dropped, which is when the `AsyncFd` holding it is dropped.
            let fd = unsafe { AsyncFd::register(inotify)? };
            Ok(WalWatch { fd, buf: [0; 1024] })
        };
        match setup() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(wal = %Path::new(&wal).display(), error = %e,
                    "no inotify watch on the bus's WAL; idle consumers poll instead");
                None
            }
        }
    }

    /// Forgets the writes seen so far (call before looking at the store).
    pub fn clear(&mut self) {
        while self.fd.get_mut().read_events(&mut self.buf).is_ok() {}
    }

    /// Returns once a write happened after the last [`WalWatch::clear`].
    pub async fn changed(&mut self) {
        loop {
            let Ok(mut ready) = self.fd.readable_mut().await else {
                // The reactor is gone (shutdown): let the caller's timeout decide.
                return std::future::pending().await;
            };
            let buf = &mut self.buf;
            match ready.try_io(|fd| fd.get_mut().read_events(buf).map(|e| e.count())) {
                Ok(Ok(_)) => return,
                // Not a would-block: the watch is broken; the caller's timeout polls.
                Ok(Err(_)) => return std::future::pending().await,
                // A stale readiness (the queue was drained by `clear`): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Waits up to `nap` for a write: by this process (`notified`) or, with a
/// watch, by any process.
pub async fn nap(nap: Duration, notified: Notified<'_>, wal: Option<&mut WalWatch>) {
    match wal {
        Some(w) => {
            let either = async {
                tokio::select! {
                    _ = notified => {}
                    _ = w.changed() => {}
                }
            };
            let _ = tokio::time::timeout(nap, either).await;
        }
        None => {
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_by_another_connection_wakes_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let c = super::super::store::open(dir.path(), crate::bus::embedded::SyncMode::Normal).unwrap();
        let mut w = WalWatch::new(&dir.path().join(super::super::store::FILE_NAME)).expect("inotify watch");
        w.clear();
        let quiet = tokio::time::timeout(Duration::from_millis(100), w.changed()).await;
        assert!(quiet.is_err(), "no write, no wake-up");
        let other = super::super::store::open(dir.path(), crate::bus::embedded::SyncMode::Normal).unwrap();
        other.execute("INSERT INTO topics(name, partitions) VALUES ('t', 1)", []).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed()).await.expect("the write wakes the watch");
        drop(c);
    }
}
