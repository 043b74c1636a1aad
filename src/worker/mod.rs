//! The worker loop: receive → decode → validate → features → infer → emit →
//! acknowledge. It subscribes to one topic (and its group's replay topic),
//! runs one model and emits one result type to its sinks.
//!
//! One task owns the consumer and the in-flight table, so there is no lock
//! around delivery state. Batches form from events that may run now (see
//! [`inflight`]); inference runs on a blocking thread. After each batch the
//! loop commits what is fully handled, together with dead letters and the
//! attempt state of retrying events. Errors are decided by class alone:
//! transient → retry in place with backoff, permanent → dead-letter at once,
//! fatal → stop without committing.

pub mod breaker;
pub mod infer_cost;
pub mod inflight;
pub mod model_fit;
pub mod outcome;
pub mod plan;
pub mod stages;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use self::breaker::Breakers;
use self::inflight::{InFlight, SlotState};
use self::outcome::{Outcome, StageError};
use self::plan::Plan;
use crate::bus::{AttemptState, Bus, BusError, Consumer, TopicPartition};
use crate::config::{BatchConfig, RetryConfig};
use crate::dead_letter::{envelope, Failure, Origin};
use crate::error::{Classify, ErrorClass};
use crate::retry::{decide, random_jitter, Decision};
use crate::telemetry::WorkerStats;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker `{worker}`: {source}")]
    Bus { worker: String, source: BusError },
    #[error("worker `{worker}` stopped on a fatal error at stage {stage}: {reason}")]
    Fatal { worker: String, stage: &'static str, reason: String },
}

impl Classify for WorkerError {
    fn class(&self) -> ErrorClass {
        match self {
            WorkerError::Bus { source, .. } => source.class(),
            WorkerError::Fatal { .. } => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            WorkerError::Bus { source, .. } => source.code(),
            WorkerError::Fatal { .. } => "fatal",
        }
    }
}

pub struct Worker {
    pub plan: Arc<Plan>,
    pub bus: Arc<Bus>,
    pub topics: Vec<String>,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    pub stats: Arc<WorkerStats>,
    /// One per dependency; taken by [`Worker::run`].
    pub breakers: Breakers,
}

/// The attempt state after one more failure at `now_ms`. Stored attempt
/// state comes from the bus, where anyone with access to the topic can
/// write it: no arithmetic on it may overflow (the count saturates), and a
/// first failure in the future or before the epoch is taken as now.
fn next_attempt(prev: Option<AttemptState>, now_ms: i64) -> AttemptState {
    let prev = prev.unwrap_or(AttemptState { attempts: 0, first_failure_ms: now_ms, last_failure_ms: now_ms });
    let first_failure_ms = if (0..=now_ms).contains(&prev.first_failure_ms) { prev.first_failure_ms } else { now_ms };
    AttemptState { attempts: prev.attempts.saturating_add(1), first_failure_ms, last_failure_ms: now_ms }
}

/// How many times a draining worker tries its last commit (200 ms, then
/// doubling: about 6 s in all) before it leaves the rest for the next owner.
const FINAL_COMMIT_TRIES: u32 = 5;

/// Longest pause after consecutive transient bus errors in poll or group
/// maintenance (a store busy for seconds, a broker away).
const BUS_RETRY_MAX: Duration = Duration::from_secs(5);

/// How often consumer lag is read for `/metrics`.
const LAG_REFRESH: Duration = Duration::from_secs(2);

/// Reads lag off the worker's loop (it is a broker round trip per partition).
fn spawn_lag_refresh(probe: crate::bus::LagProbe, stats: Arc<WorkerStats>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let p = probe.clone();
            match tokio::task::spawn_blocking(move || p.read()).await {
                Ok(Some(lag)) => stats.set_lag(lag),
                // The consumer is closed: nothing left to watch.
                Ok(None) => return,
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(LAG_REFRESH) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    });
}

/// How long a worker must have had nothing to do before it returns freed
/// memory (not at every pause between events of a slow stream).
const IDLE_RELEASE: Duration = Duration::from_millis(500);

/// How long an idle loop sleeps at most, so heartbeats stay on time.
const IDLE_WAIT: Duration = Duration::from_millis(50);

impl Worker {
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let mut breakers = std::mem::take(&mut self.breakers);
        *self.stats.breakers.lock().unwrap_or_else(|e| e.into_inner()) = breakers.stats();
        let berr = |source| WorkerError::Bus { worker: self.plan.worker.clone(), source };
        self.bus.ensure_topic(&self.plan.dead_letter_topic, false).await.map_err(berr)?;
        let mut consumer = self.bus.consumer(&self.plan.group, &self.topics).await.map_err(berr)?;
        tracing::info!(worker = %self.plan.worker, group = %self.plan.group, member = consumer.member_id(),
            topics = ?self.topics, "worker started");
        spawn_lag_refresh(consumer.lag_probe(), self.stats.clone(), shutdown.clone());
        let mut inflight = InFlight::default();
        let result = self.serve(&mut consumer, &mut inflight, &mut breakers, &shutdown).await;
        if result.is_ok() {
            // Drain: what is fully handled is committed; anything polled but
            // not started is left for the next owner. A commit that fails
            // transiently is tried again a few times: until it is written,
            // nothing may move past its dead letters.
            for attempt in 0..FINAL_COMMIT_TRIES {
                self.commit(&mut consumer, &mut inflight).await?;
                if !inflight.has_carry() {
                    break;
                }
                if attempt + 1 == FINAL_COMMIT_TRIES {
                    tracing::error!(worker = %self.plan.worker,
                        "final commit failed; its events will be redelivered to the next owner");
                } else {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
            consumer.close().await.map_err(berr)?;
            tracing::info!(worker = %self.plan.worker, "worker drained and stopped");
        }
        result
    }

    async fn serve(
        &self,
        consumer: &mut Consumer,
        inflight: &mut InFlight,
        breakers: &mut Breakers,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        let berr = |source| WorkerError::Bus { worker: self.plan.worker.clone(), source };
        let max = self.batch.max_size;
        let mut last_commit = Instant::now();
        let mut paused = false;
        let (mut last_busy, mut idle_collected) = (Instant::now(), true);
        // Consecutive transient bus errors, for the pause before the next try.
        let mut bus_errors = 0u32;
        while !shutdown.is_cancelled() {
            if last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                self.commit(consumer, inflight).await?;
            }
            let reb = match consumer.maintain().await {
                Ok(reb) => {
                    self.stats.bus_ok.store(true, Ordering::Relaxed);
                    reb
                }
                Err(e) => {
                    self.bus_error(e, "group maintenance", &mut bus_errors, shutdown).await?;
                    continue;
                }
            };
            for tp in &reb.revoked {
                inflight.drop_partition(tp);
            }
            self.stats.joined.store(consumer.joined(), Ordering::Relaxed);
            // Full of events that are only waiting for their commit: commit
            // now, which frees their room, instead of idling until the
            // interval or pausing (each halved throughput under a backlog).
            // Pausing is for real backpressure: librdkafka drops its
            // prefetched records on pause and fetches them again on resume.
            if inflight.len() >= self.max_in_flight && inflight.committable() {
                self.commit(consumer, inflight).await?;
                last_commit = Instant::now();
            }
            // A dependency is down: nothing runs but its probe, and nothing
            // more is fetched. Open too long is fatal, without a commit.
            let held = breakers.any_open();
            if held {
                if let Some(b) = breakers.past_fatal_bound(Instant::now()) {
                    return Err(WorkerError::Fatal {
                        worker: self.plan.worker.clone(),
                        stage: "breaker",
                        reason: format!("`{}` has been unavailable longer than its breaker's open_fatal_after", b.name),
                    });
                }
            }
            // While a breaker is open nothing more is fetched, unless no
            // event in flight could serve as the probe (a rebalance took
            // them all, or they ended): then one is fetched, or the breaker
            // could never close.
            let probe_ready = held && inflight.ready(1, Instant::now()).0 > 0;
            // Still full: stop fetching at the bus instead of buffering (backpressure).
            let full = inflight.len() >= self.max_in_flight || probe_ready;
            if full && !paused && !held {
                self.stats.pauses.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(worker = %self.plan.worker, in_flight = inflight.len(), "in-flight limit reached: bus paused");
            }
            paused = full;
            consumer.set_paused(full).map_err(berr)?;
            if held {
                let now = Instant::now();
                let due = breakers.next_probe().is_none_or(|t| t <= now);
                if !(due && probe_ready) {
                    // A poll keeps the member in its group (Kafka expects
                    // one within max.poll.interval.ms); paused, it returns
                    // nothing new. It is also the nap until the probe.
                    let nap = breakers.next_probe().map_or(IDLE_WAIT, |t| t.saturating_duration_since(now));
                    let nap = if due { IDLE_WAIT } else { nap.clamp(Duration::from_millis(1), IDLE_WAIT) };
                    let polled = tokio::select! {
                        p = consumer.poll(max, nap) => p,
                        _ = shutdown.cancelled() => return Ok(()),
                    };
                    match polled {
                        Ok(p) => {
                            let arrived = Instant::now();
                            self.stats.received.fetch_add(p.deliveries.len() as u64, Ordering::Relaxed);
                            for d in p.deliveries {
                                inflight.add(d, arrived);
                            }
                        }
                        Err(e) => self.bus_error(e, "poll", &mut bus_errors, shutdown).await?,
                    }
                    continue;
                }
                // The probe: one batch, as any other. A call with any
                // success closes the breaker.
            }
            // Fill: poll while the batch is not full and its max wait has not
            // passed; never beyond the in-flight bound (that is the backpressure).
            loop {
                if held {
                    break;
                }
                let now = Instant::now();
                let space = self.max_in_flight.saturating_sub(inflight.len());
                if space == 0 {
                    break;
                }
                let (ready, oldest) = inflight.ready(max, now);
                if ready >= max {
                    break;
                }
                let wait = match oldest {
                    Some(t) => (t + self.batch.max_wait).saturating_duration_since(now),
                    None => inflight.next_due().map_or(IDLE_WAIT, |d| d.saturating_duration_since(now)).min(IDLE_WAIT),
                };
                let polled = tokio::select! {
                    p = consumer.poll(space.min(max * 4), wait) => p,
                    _ = shutdown.cancelled() => return Ok(()),
                };
                let polled = match polled {
                    Ok(p) => {
                        bus_errors = 0;
                        p
                    }
                    Err(e) => {
                        self.bus_error(e, "poll", &mut bus_errors, shutdown).await?;
                        break;
                    }
                };
                let got = polled.deliveries.len();
                // One clock read for the whole poll: its records arrived together.
                let arrived = Instant::now();
                if got > 0 {
                    (last_busy, idle_collected) = (arrived, false);
                } else if !idle_collected && inflight.is_empty() && last_busy.elapsed() >= IDLE_RELEASE {
                    // A burst is over: hand what it freed back to the OS.
                    idle_collected = true;
                    inflight.shrink();
                    crate::memory::release_free_with_pool().await;
                }
                for d in polled.deliveries {
                    inflight.add(d, arrived);
                }
                self.stats.received.fetch_add(got as u64, Ordering::Relaxed);
                if got == 0 {
                    break;
                }
            }
            self.stats.in_flight.store(inflight.len() as u64, Ordering::Relaxed);
            let selected = inflight.select(max, Instant::now());
            if selected.is_empty() {
                if inflight.len() >= self.max_in_flight {
                    // Full even after the commit above and nothing runnable:
                    // wait for a retry to come due.
                    let nap = inflight.next_due().map_or(IDLE_WAIT, |d| d.saturating_duration_since(Instant::now()));
                    tokio::select! {
                        _ = tokio::time::sleep(nap.min(IDLE_WAIT)) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
                continue;
            }
            self.run_selected(inflight, &selected, breakers).await?;
            consumer.stage(|| inflight.safe_watermarks());
        }
        Ok(())
    }

    /// A bus error in poll or group maintenance: a transient one (the
    /// embedded store busy, a broker away) pauses with capped backoff and
    /// the loop goes on, keeping its in-flight work; any other stops the
    /// worker.
    async fn bus_error(
        &self,
        e: BusError,
        during: &str,
        consecutive: &mut u32,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        if e.class() != ErrorClass::Transient {
            return Err(WorkerError::Bus { worker: self.plan.worker.clone(), source: e });
        }
        *consecutive = consecutive.saturating_add(1);
        // Not ready while the bus does not answer: an orchestrator stops
        // sending traffic or scaling on this member until it does.
        self.stats.bus_ok.store(false, Ordering::Relaxed);
        let pause = (Duration::from_millis(50) * 2u32.saturating_pow((*consecutive - 1).min(10))).min(BUS_RETRY_MAX);
        tracing::warn!(worker = %self.plan.worker, error = %e, during, consecutive = *consecutive, ?pause,
            "transient bus error; retrying");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => {}
        }
        Ok(())
    }

    /// Commits what is fully handled, with dead letters and attempt state.
    async fn commit(&self, consumer: &mut Consumer, inflight: &mut InFlight) -> Result<(), WorkerError> {
        let commit = inflight.take_commit();
        let retry = commit.clone();
        match consumer.commit(commit).await {
            Ok(outcome) => {
                for tp in &outcome.fenced {
                    tracing::warn!(worker = %self.plan.worker, partition = ?tp,
                        "commit refused: partition now owned by another member; dropping its in-flight events");
                    inflight.drop_partition(tp);
                }
            }
            Err(e) if e.class() == ErrorClass::Transient => {
                tracing::warn!(worker = %self.plan.worker, error = %e, "commit failed; will retry");
                inflight.restore(retry);
            }
            Err(e) => return Err(WorkerError::Bus { worker: self.plan.worker.clone(), source: e }),
        }
        Ok(())
    }

    /// Runs one batch and records each event's outcome in its slot.
    async fn run_selected(
        &self,
        inflight: &mut InFlight,
        selected: &[(TopicPartition, u64)],
        breakers: &mut Breakers,
    ) -> Result<(), WorkerError> {
        // Borrowed, not cloned: the table is not touched until the batch is done.
        let refs: Vec<_> =
            selected.iter().filter_map(|(tp, off)| inflight.get(tp, *off).map(|s| &s.delivery.record)).collect();
        let (outcomes, calls) = stages::run_batch(&self.plan, refs, &self.stats).await;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let first = selected.first().map_or(0, |(tp, off)| u64::from(tp.partition) << 48 ^ off);
        if let Some(spell) = breakers.record(&calls, selected.len(), first, Instant::now()) {
            // Time open counts toward no event's retry horizon.
            inflight.forgive(spell);
        }
        for ((tp, off), outcome) in selected.iter().zip(outcomes) {
            let Some(slot) = inflight.get_mut(tp, *off) else { continue };
            match outcome {
                Outcome::Emitted { latency_us } => {
                    slot.state = SlotState::Done { dead_letter: None };
                    self.stats.results.fetch_add(1, Ordering::Relaxed);
                    if let Some(us) = latency_us {
                        self.stats.record_latency_us(us);
                    }
                }
                Outcome::Duplicate => {
                    slot.state = SlotState::Done { dead_letter: None };
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Failed(err) if err.class == ErrorClass::Fatal => {
                    return Err(WorkerError::Fatal {
                        worker: self.plan.worker.clone(),
                        stage: err.stage.as_str(),
                        reason: err.reason,
                    });
                }
                // The dependency is down, not the event: it waits for the
                // breaker to close without counting an attempt.
                Outcome::Failed(err) if breakers.excuses(&err) => slot.state = SlotState::Waiting { due: None },
                Outcome::Failed(err) => self.fail(slot, err),
            }
        }
        Ok(())
    }

    /// A permanent error dead-letters at once; a transient one is retried
    /// in place until the policy gives up, then dead-lettered once.
    fn fail(&self, slot: &mut inflight::Slot, err: StageError) {
        let now_ms = Utc::now().timestamp_millis();
        let state = next_attempt(slot.attempts, now_ms);
        slot.attempts = Some(state);
        let mut code = err.code.clone();
        if err.class == ErrorClass::Transient {
            let since = Duration::from_millis(now_ms.saturating_sub(state.first_failure_ms).max(0) as u64);
            match decide(&self.retry, state.attempts, since, random_jitter()) {
                Decision::RetryAfter(delay) => {
                    slot.attempts_dirty = true;
                    slot.state = SlotState::Waiting { due: Some(Instant::now() + delay) };
                    self.stats.retried(err.stage.as_str(), &err.code);
                    tracing::debug!(worker = %self.plan.worker, offset = slot.delivery.offset,
                        attempts = state.attempts, ?delay, code = %err.code, "transient failure; retrying");
                    return;
                }
                Decision::Exhausted(why) => code = format!("{}:{why}", err.code),
            }
        }
        let ms = |m: i64| Utc.timestamp_millis_opt(m).single().unwrap_or_else(Utc::now);
        let failure = Failure {
            stage: err.stage,
            class: err.class,
            code: code.clone(),
            reason: err.reason,
            attempts: state.attempts,
            first_failure: ms(state.first_failure_ms),
            last_failure: ms(state.last_failure_ms),
            sink: err.sink,
        };
        let origin = Origin {
            worker: &self.plan.worker,
            group: &self.plan.group,
            model: &self.plan.model.name,
            model_version: &self.plan.model.version,
            tp: &slot.delivery.tp,
            offset: slot.delivery.offset,
        };
        let record = envelope(&slot.delivery.record, &failure, &origin, self.bus.max_record_bytes());
        self.stats.dead_lettered(err.stage.as_str(), &code);
        slot.state = SlotState::Done { dead_letter: Some((self.plan.dead_letter_topic.clone(), record)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_stored_attempt_state_neither_overflows_nor_resets() {
        let now = 1_700_000_000_000;
        let a = next_attempt(None, now);
        assert_eq!((a.attempts, a.first_failure_ms), (1, now));
        let forged = AttemptState { attempts: u32::MAX, first_failure_ms: i64::MIN, last_failure_ms: i64::MAX };
        let b = next_attempt(Some(forged), now);
        assert_eq!(b.attempts, u32::MAX, "saturates: a wrap to 0 would retry for ever");
        assert_eq!((b.first_failure_ms, b.last_failure_ms), (now, now));
        let future = AttemptState { attempts: 2, first_failure_ms: i64::MAX, last_failure_ms: 0 };
        assert_eq!(next_attempt(Some(future), now).first_failure_ms, now);
        let past = AttemptState { attempts: 2, first_failure_ms: now - 5000, last_failure_ms: 0 };
        assert_eq!(next_attempt(Some(past), now).first_failure_ms, now - 5000, "a sane first failure is kept");
        // The retry decision on the extremes does not panic.
        let cfg = RetryConfig {
            max_horizon: crate::config::MAX_DURATION,
            max_delay: crate::config::MAX_DURATION,
            ..Default::default()
        };
        let _ = decide(&cfg, u32::MAX - 1, Duration::MAX, 1.0);
        let _ =
            crate::retry::backoff(&RetryConfig { multiplier: 1000.0, initial_delay: Duration::ZERO, ..cfg }, 64, 1.0);
    }
}
