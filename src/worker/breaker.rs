//! Circuit breakers: one per dependency of a worker (its feature store, each
//! sink). When a dependency fails for every event, retrying each event
//! against it only turns the backlog into dead letters; so after
//! `failures` consecutive failed calls (a call is one batch lookup or one
//! emit) the breaker opens and the worker stops consuming. While open, one
//! probe call is let through at capped backoff; its success closes the
//! breaker and consumption resumes. Time spent open counts neither toward
//! an event's attempts nor toward its retry horizon (the worker does not
//! count failures it sees while a breaker is open, and moves each waiting
//! event's first failure forward by the time open when it closes). A
//! breaker open longer than `open_fatal_after` is fatal: the worker stops
//! without committing, for an orchestrator to restart it.
//!
//! The same idea as Kafka Connect's `errors.retry.timeout` and Dapr's
//! resiliency circuit breakers; a poison event (one that fails while
//! others succeed) does not count, because a call with any success is a
//! success: the feature stage bisects a failed lookup before it reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::outcome::StageError;
use super::stages::Calls;
use crate::config::BreakerConfig;
use crate::dead_letter::Stage;
use crate::error::ErrorClass;

/// A breaker's counters, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct BreakerStats {
    /// 1 while open.
    pub open: AtomicU64,
    pub openings: AtomicU64,
    /// Milliseconds spent open, closed spells only (the current one is added
    /// when it ends).
    pub open_ms: AtomicU64,
}

/// What a call's result did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    /// Closed after being open this long.
    Closed(Duration),
}

/// A worker's breakers: its feature store's and each sink's.
#[derive(Debug, Default)]
pub struct Breakers {
    pub store: Option<Breaker>,
    /// In the plan's sink order; named by `Sink::describe`.
    pub sinks: Vec<Breaker>,
}

impl Breakers {
    fn all(&self) -> impl Iterator<Item = &Breaker> {
        self.store.iter().chain(&self.sinks)
    }

    pub fn any_open(&self) -> bool {
        self.all().any(Breaker::is_open)
    }

    /// The earliest probe of an open breaker.
    pub fn next_probe(&self) -> Option<Instant> {
        self.all().filter_map(Breaker::next_probe).min()
    }

    /// An open breaker past its fatal bound, if any.
    pub fn past_fatal_bound(&self, now: Instant) -> Option<&Breaker> {
        self.all().find(|b| b.past_fatal_bound(now))
    }

    /// Counters for `/metrics`, by dependency.
    pub fn stats(&self) -> Vec<(String, Arc<BreakerStats>)> {
        self.all().map(|b| (b.name.clone(), b.stats.clone())).collect()
    }

    /// Records a batch's calls; `events` is how many events the batch had
    /// and `first` identifies its first (a breaker opens only on failures
    /// of more than one event: one event failing alone again and again is
    /// a poison event, not an outage). Returns the longest time a breaker
    /// that closed now had been open.
    pub fn record(&mut self, calls: &Calls, events: usize, first: u64, now: Instant) -> Option<Duration> {
        let mut closed = None;
        let pairs = self
            .store
            .iter_mut()
            .zip(calls.store)
            .chain(self.sinks.iter_mut().zip(calls.sinks.iter().copied()).filter_map(|(b, c)| c.map(|c| (b, c))));
        for (b, ok) in pairs {
            if let Transition::Closed(spell) = b.record(ok, events, first, now) {
                closed = closed.max(Some(spell));
            }
        }
        closed
    }

    /// Whether `err` is a transient failure of a dependency whose breaker
    /// is open: such a failure is the outage, not the event's, and does
    /// not count against it.
    pub fn excuses(&self, err: &StageError) -> bool {
        if err.class != ErrorClass::Transient {
            return false;
        }
        match (err.stage, &err.sink) {
            (Stage::Features, _) => self.store.as_ref().is_some_and(Breaker::is_open),
            (Stage::Emit, Some(sink)) => self.sinks.iter().any(|b| b.is_open() && &b.name == sink),
            _ => false,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    /// The dependency, as logs and metrics name it (`feature_store:customers`).
    pub name: String,
    cfg: BreakerConfig,
    consecutive: u32,
    /// The first event of the current run of failures, and whether the run
    /// has seen another.
    streak: Option<(u64, bool)>,
    open: Option<Open>,
    pub stats: Arc<BreakerStats>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    since: Instant,
    next_probe: Instant,
    probes: u32,
}

impl Breaker {
    pub fn new(name: String, cfg: BreakerConfig) -> Breaker {
        Breaker { name, cfg, consecutive: 0, streak: None, open: None, stats: Arc::default() }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// When the next probe may run (`None`: closed).
    pub fn next_probe(&self) -> Option<Instant> {
        self.open.map(|o| o.next_probe)
    }

    /// How long it has been open, if it is.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        self.open.map(|o| now.saturating_duration_since(o.since))
    }

    /// Whether it has been open longer than its fatal bound.
    pub fn past_fatal_bound(&self, now: Instant) -> bool {
        matches!((self.cfg.open_fatal_after, self.open_for(now)), (Some(bound), Some(open)) if open > bound)
    }

    /// Records one call to the dependency, made for `events` events the
    /// first of which `first` identifies.
    pub fn record(&mut self, ok: bool, events: usize, first: u64, now: Instant) -> Transition {
        if ok {
            self.consecutive = 0;
            self.streak = None;
            return match self.open.take() {
                Some(o) => {
                    let spell = now.saturating_duration_since(o.since);
                    self.stats.open.store(0, Ordering::Relaxed);
                    self.stats.open_ms.fetch_add(spell.as_millis() as u64, Ordering::Relaxed);
                    tracing::info!(dependency = %self.name, open_for = ?spell, "circuit breaker closed");
                    Transition::Closed(spell)
                }
                None => Transition::None,
            };
        }
        self.consecutive = self.consecutive.saturating_add(1);
        let varied = match self.streak {
            None => events > 1,
            Some((f, varied)) => varied || events > 1 || f != first,
        };
        self.streak = Some((self.streak.map_or(first, |s| s.0), varied));
        match self.open {
            Some(mut o) => {
                // A failed probe: wait longer before the next.
                o.probes = o.probes.saturating_add(1);
                o.next_probe = now + self.probe_delay(o.probes);
                self.open = Some(o);
                Transition::None
            }
            None if self.cfg.failures > 0 && self.consecutive >= self.cfg.failures && varied => {
                self.open = Some(Open { since: now, next_probe: now + self.probe_delay(0), probes: 0 });
                self.stats.open.store(1, Ordering::Relaxed);
                self.stats.openings.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(dependency = %self.name, failures = self.consecutive,
                    "circuit breaker opened: consumption paused until a probe succeeds");
                Transition::Opened
            }
            None => Transition::None,
        }
    }

    fn probe_delay(&self, probes: u32) -> Duration {
        let d = self.cfg.probe_initial.saturating_mul(2u32.saturating_pow(probes.min(20)));
        d.min(self.cfg.probe_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            probe_initial: Duration::from_millis(100),
            probe_max: Duration::from_millis(350),
            open_fatal_after: Some(Duration::from_secs(10)),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new("store".into(), cfg());
        assert_eq!(b.record(false, 2, 1, t), Transition::None);
        assert_eq!(b.record(false, 2, 1, t), Transition::None);
        assert_eq!(b.record(true, 2, 1, t), Transition::None, "a success in between: not consecutive");
        assert_eq!(b.record(false, 2, 1, t), Transition::None);
        assert_eq!(b.record(false, 2, 1, t), Transition::None);
        assert_eq!(b.record(false, 2, 1, t), Transition::Opened);
        assert!(b.is_open());
        assert_eq!(b.stats.openings.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn probes_back_off_to_a_cap_and_a_success_closes() {
        let t = Instant::now();
        let mut b = Breaker::new("sink".into(), cfg());
        for _ in 0..3 {
            b.record(false, 2, 1, t);
        }
        assert_eq!(b.next_probe(), Some(t + Duration::from_millis(100)));
        b.record(false, 2, 1, t);
        assert_eq!(b.next_probe(), Some(t + Duration::from_millis(200)));
        b.record(false, 2, 1, t);
        assert_eq!(b.next_probe(), Some(t + Duration::from_millis(350)), "capped");
        let later = t + Duration::from_secs(2);
        assert!(!b.past_fatal_bound(later));
        assert!(b.past_fatal_bound(t + Duration::from_secs(11)));
        assert_eq!(b.record(true, 2, 1, later), Transition::Closed(Duration::from_secs(2)));
        assert!(!b.is_open());
        assert_eq!(b.stats.open_ms.load(Ordering::Relaxed), 2000);
        assert_eq!(b.stats.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn one_event_failing_alone_again_and_again_is_poison_not_an_outage() {
        let t = Instant::now();
        let mut b = Breaker::new("store".into(), cfg());
        for _ in 0..10 {
            assert_eq!(b.record(false, 1, 42, t), Transition::None);
        }
        assert!(!b.is_open());
        assert_eq!(b.record(false, 1, 43, t), Transition::Opened, "a second event failing too: an outage");
    }

    #[test]
    fn zero_failures_never_opens() {
        let t = Instant::now();
        let mut b = Breaker::new("x".into(), BreakerConfig { failures: 0, ..cfg() });
        for _ in 0..100 {
            assert_eq!(b.record(false, 2, 1, t), Transition::None);
        }
    }
}
