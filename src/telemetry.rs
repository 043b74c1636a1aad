//! Observability: metric names defined once, the worker's counters and
//! latency histogram, and tracing setup. The Prometheus endpoint reads these.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Metric names, in one place.
pub mod names {
    pub const EVENTS_RECEIVED: &str = "modelbus_events_received_total";
    pub const RESULTS_EMITTED: &str = "modelbus_results_emitted_total";
    pub const DEAD_LETTERS: &str = "modelbus_dead_letters_total";
    pub const RETRIES: &str = "modelbus_retries_total";
    pub const IN_FLIGHT: &str = "modelbus_in_flight_events";
    pub const END_TO_END_SECONDS: &str = "modelbus_end_to_end_latency_seconds";
    pub const BATCH_SIZE: &str = "modelbus_batch_size";
    pub const CONSUMER_LAG: &str = "modelbus_consumer_lag";
    pub const DUPLICATES: &str = "modelbus_duplicates_total";
    pub const BATCHES: &str = "modelbus_batches_total";
    pub const READY: &str = "modelbus_worker_ready";
    pub const PAUSES: &str = "modelbus_backpressure_pauses_total";
    pub const WITHOUT_TRACE: &str = "modelbus_events_without_trace_context_total";
    pub const WITHOUT_TIME: &str = "modelbus_events_without_time_total";
    pub const BREAKER_OPEN: &str = "modelbus_breaker_open";
    pub const BREAKER_OPENINGS: &str = "modelbus_breaker_openings_total";
    pub const BREAKER_OPEN_SECONDS: &str = "modelbus_breaker_open_seconds_total";
}

/// Counters of one worker, shared with whoever reports them.
#[derive(Debug)]
pub struct WorkerStats {
    pub received: AtomicU64,
    pub results: AtomicU64,
    pub retries: AtomicU64,
    /// Inputs acknowledged without a result because dedup had seen them.
    pub duplicates: AtomicU64,
    pub in_flight: AtomicU64,
    pub batches: AtomicU64,
    /// Times the worker paused its bus consumer at its in-flight limit.
    pub pauses: AtomicU64,
    /// Events that came without trace context (a trace was derived).
    pub without_trace: AtomicU64,
    /// Events that came without `time`: not in the latency histogram.
    pub without_time: AtomicU64,
    /// Retries by (stage, code).
    pub retried: Mutex<BTreeMap<(String, String), u64>>,
    /// (stage, code) → count.
    pub dead_letters: Mutex<BTreeMap<(String, String), u64>>,
    /// Event `time` to result accepted by every sink, microseconds.
    pub latency_us: Mutex<Histogram<u64>>,
    /// The group has assigned this worker its partitions.
    pub joined: AtomicBool,
    /// The bus answered the worker's last poll or group maintenance (false
    /// while transient bus errors last: the store busy, the broker away).
    pub bus_ok: AtomicBool,
    /// (topic, partition) → records not yet handled, where the bus reports it.
    pub lag: Mutex<BTreeMap<(String, u32), u64>>,
    /// Each dependency's circuit breaker (set when the worker starts).
    pub breakers: Mutex<Vec<(String, std::sync::Arc<crate::worker::breaker::BreakerStats>)>>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            received: AtomicU64::new(0),
            results: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            without_trace: AtomicU64::new(0),
            without_time: AtomicU64::new(0),
            retried: Mutex::new(BTreeMap::new()),
            dead_letters: Mutex::new(BTreeMap::new()),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")),
            joined: AtomicBool::new(false),
            bus_ok: AtomicBool::new(true),
            lag: Mutex::new(BTreeMap::new()),
            breakers: Mutex::new(Vec::new()),
        }
    }
}

impl WorkerStats {
    pub fn dead_lettered(&self, stage: &str, code: &str) {
        let mut m = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((stage.to_string(), code.to_string())).or_default() += 1;
    }

    pub fn retried(&self, stage: &str, code: &str) {
        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.retried.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((stage.to_string(), code.to_string())).or_default() += 1;
    }

    pub fn dead_letter_total(&self) -> u64 {
        self.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    /// Replaces the lag table: partitions no longer owned disappear from it.
    pub fn set_lag(&self, lag: Vec<(crate::bus::TopicPartition, u64)>) {
        let mut m = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        *m = lag.into_iter().map(|(tp, n)| ((tp.topic.to_string(), tp.partition), n)).collect();
    }

    /// Ready for traffic: joined its group, and its bus answers.
    pub fn ready(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.joined.load(Relaxed) && self.bus_ok.load(Relaxed)
    }

    pub fn record_latency_us(&self, us: u64) {
        let mut h = self.latency_us.lock().unwrap_or_else(|e| e.into_inner());
        let _ = h.record(us.max(1));
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
