//! Fault injection, for failure tests and game days: make a named point in
//! the pipeline fail with a classified error, a set number of times or
//! always, without touching the real backend. Points are set in code
//! ([`set`]) or, for whole processes, with the environment variable
//! `MODELBUS_FAULTS`, e.g. `features.lookup=transient*3` or
//! `features.lookup=transient` (always). Every check of a point is recorded
//! with its time, so tests can assert when attempts happened.
//!
//! Points: `features.lookup`, `sink.emit` (a whole batch), `sink.record`
//! (each record of a batch in turn, so `sink.record=permanent*1` refuses
//! exactly one result), `bus.publish`, `bus.poll`, `bus.maintain` (a
//! consumer's heartbeat and rebalance), `dead_letter.write` (a commit that
//! carries dead letters).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Checks kept in the log at most; older ones are dropped, so a fault left
/// on in a long-running process does not grow memory without bound.
const LOG_CAP: usize = 10_000;

/// Whether any fault was ever set: the common case, none, costs one load
/// per check instead of a lock.
static ARMED: AtomicBool = AtomicBool::new(false);

use crate::error::ErrorClass;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub class: ErrorClass,
    /// How many more checks fail; `None` = every one.
    pub remaining: Option<u32>,
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Fault>,
    /// Every check of a point that has a fault set: (point, time, failed).
    log: VecDeque<(String, tokio::time::Instant, bool)>,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let mut st = State::default();
        if let Ok(spec) = std::env::var("MODELBUS_FAULTS") {
            for (point, fault) in spec.split(',').filter_map(parse) {
                st.faults.insert(point, fault);
                ARMED.store(true, Ordering::Relaxed);
            }
        }
        Mutex::new(st)
    })
}

fn parse(item: &str) -> Option<(String, Fault)> {
    let (point, rest) = item.trim().split_once('=')?;
    let (class, times) = match rest.split_once('*') {
        Some((c, n)) => (c, Some(n.parse().ok()?)),
        None => (rest, None),
    };
    let class = match class {
        "transient" => ErrorClass::Transient,
        "permanent" => ErrorClass::Permanent,
        "fatal" => ErrorClass::Fatal,
        _ => return None,
    };
    Some((point.to_string(), Fault { class, remaining: times }))
}

pub fn set(point: &str, fault: Fault) {
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.faults.insert(point.to_string(), fault);
    ARMED.store(true, Ordering::Relaxed);
}

/// Whether `point` has a fault set (failing now or not).
pub fn armed(point: &str) -> bool {
    let st = state();
    ARMED.load(Ordering::Relaxed) && st.lock().unwrap_or_else(|e| e.into_inner()).faults.contains_key(point)
}

/// Removes every fault but keeps the log of checks.
pub fn clear_faults_only() {
    state().lock().unwrap_or_else(|e| e.into_inner()).faults.clear();
}

pub fn clear() {
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.faults.clear();
    st.log.clear();
}

/// When each check of `point` happened, and whether it failed.
pub fn log(point: &str) -> Vec<(tokio::time::Instant, bool)> {
    let st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.log.iter().filter(|(p, _, _)| p == point).map(|(_, t, f)| (*t, *f)).collect()
}

/// `Some(class)` when the point must fail now.
pub fn check(point: &str) -> Option<ErrorClass> {
    let st = state();
    if !ARMED.load(Ordering::Relaxed) {
        return None;
    }
    let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
    let fault = st.faults.get_mut(point)?;
    let fail = match &mut fault.remaining {
        None => true,
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
    };
    let class = fault.class;
    if st.log.len() >= LOG_CAP {
        st.log.pop_front();
    }
    st.log.push_back((point.to_string(), tokio::time::Instant::now(), fail));
    fail.then_some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            parse("features.lookup=transient*3"),
            Some(("features.lookup".into(), Fault { class: ErrorClass::Transient, remaining: Some(3) }))
        );
        assert_eq!(parse("sink.emit=permanent").unwrap().1.remaining, None);
        assert!(parse("x=sometimes").is_none());
    }

    #[test]
    fn the_log_is_bounded() {
        set("test.bounded", Fault { class: ErrorClass::Transient, remaining: None });
        for _ in 0..LOG_CAP + 50 {
            check("test.bounded");
        }
        assert!(state().lock().unwrap().log.len() <= LOG_CAP);
        assert!(armed("test.bounded") && !armed("test.never"));
    }
}
