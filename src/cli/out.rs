//! Standard output for command results, and what a closed pipe means.
//!
//! `modelbus dlq list | head -1` closes the pipe after one line. A Unix tool
//! then stops quietly and its pipeline succeeds. Rust ignores SIGPIPE, so a
//! write to the closed pipe fails with `BrokenPipe` (and `println!` panics on
//! it). Commands write through [`Out`], which marks that failure as
//! [`StdoutClosed`]; `main` turns it into a quiet exit with status 0.
//!
//! Why not restore SIGPIPE's default action instead: the process would die of
//! the signal, which a shell reports as status 141, a failure under `set -o
//! pipefail`; and the disposition is process-wide, so a write by a library to
//! a socket its peer closed (librdkafka, an HTTP sink) would kill a worker too.
//! Only a write to standard output means "the reader is gone".

use std::io::{self, BufWriter, Stdout, Write};

/// The reader of standard output has gone: the command's output is no longer
/// wanted, which is not a failure.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct StdoutClosed;

/// Buffered standard output whose write errors say when the reader has gone.
/// Call [`Write::flush`] at the end of each unit of output (a batch, the
/// command): that is where a closed pipe is noticed.
pub struct Out(BufWriter<Stdout>);

impl Out {
    pub fn new() -> Out {
        Out(BufWriter::new(io::stdout()))
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

fn mark_closed(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe => io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed),
        _ => e,
    }
}

/// Whether `e` is (or was caused by) a write to a standard output whose
/// reader has gone. A `BrokenPipe` from anywhere else (a socket) is a real
/// failure, so only [`Out`]'s marked errors count.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<StdoutClosed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Whether standard output is a pipe (or socket, or terminal) whose other end
/// has gone, found without writing. `tail` waiting for new records would only
/// notice at its next write, which may never come (`tail t | head -1` on a
/// quiet topic). Linux reports POLLERR on the write end of a pipe with no
/// reader, as GNU `tail -f` relies on; a file or /dev/null reports neither.
pub fn reader_gone() -> bool {
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
    // SAFETY: one valid pollfd for the length given; a timeout of 0 never waits.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_counts_as_closed() {
        let marked = anyhow::Error::from(mark_closed(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_closed(&marked));
        assert!(is_closed(&marked.context("writing a line")));
        let socket = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed(&socket), "a broken socket is a failure");
        assert!(!is_closed(&anyhow::Error::from(mark_closed(io::Error::from(io::ErrorKind::Other)))));
    }
}
