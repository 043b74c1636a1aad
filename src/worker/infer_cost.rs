//! What one row of inference costs a worker, learned from the batches it
//! has run, and so whether the next batch runs on the worker's own thread
//! or on the blocking pool. Its own file: the plan holds one and the infer
//! stage reads and feeds it, so neither imports the other for it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A batch expected to take less than this runs on the worker's own thread.
/// Handing it to the blocking pool costs two thread switches and wake-ups,
/// which for a small model is more than the whole batch (the claims model:
/// about 80 µs for 256 rows). Longer batches go to the pool, so the runtime
/// (heartbeats, `/metrics`, other workers) is never held up for long.
pub(super) const INLINE_BUDGET_NS: u64 = 200_000;

/// What one row of inference costs, learned from the batches run so far.
#[derive(Debug)]
pub struct InferCost {
    /// Nanoseconds per row, smoothed; `u64::MAX` until a batch was timed.
    per_row_ns: AtomicU64,
}

impl Default for InferCost {
    fn default() -> InferCost {
        InferCost { per_row_ns: AtomicU64::new(u64::MAX) }
    }
}

impl InferCost {
    pub(super) fn inline(&self, rows: usize) -> bool {
        self.per_row_ns.load(Ordering::Relaxed).saturating_mul(rows as u64) <= INLINE_BUDGET_NS
    }

    pub(super) fn record(&self, rows: usize, took: std::time::Duration) {
        let now = (took.as_nanos() as u64 / rows.max(1) as u64).max(1);
        let old = self.per_row_ns.load(Ordering::Relaxed);
        // A moving average, so one slow batch (a page fault, a preemption)
        // does not move a model off the inline path, but a slower model does.
        let new = if old == u64::MAX { now } else { (old * 7 + now) / 8 };
        self.per_row_ns.store(new, Ordering::Relaxed);
    }
}
