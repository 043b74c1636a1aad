//! Fault injection, for failure tests and game days: make a named point in
//! the pipeline fail with a classified error, a set number of times, for a
//! while, or always, without touching the real backend. Points are set in
//! code ([`set`], [`set_window`], [`set_spec`]) or, for whole processes,
//! with the environment variable `MODELBUS_FAULTS`, a comma-separated list
//! of `point=class[*count][@[delay+]length]`:
//!
//! - `features.lookup=transient` fails every check;
//! - `features.lookup=transient*3` fails the next three checks;
//! - `features.lookup=transient@20s` fails every check for 20 s counted from
//!   the first check of the point (not from process start), then none;
//! - `features.lookup=transient@5s+20s` lets checks pass for 5 s after the
//!   first one, fails every check for the 20 s after that, then none;
//! - `features.lookup=transient*3@20s` fails at most three checks, and only
//!   within the window (checks outside it do not use up the count).
//!
//! Classes are `transient`, `permanent` and `fatal`; durations are written
//! like config durations (`500ms`, `20s`, `1m 30s`) and measured on the
//! monotonic clock. A malformed item is refused with a message that names
//! it and says what is wrong; `modelbus run` refuses to start on one
//! ([`load_env`]).
//! Every check of a point is recorded with its time, so tests can assert
//! when attempts happened.
//!
//! Points: `features.lookup`, `features.key:<entity>` (a lookup that
//! includes that entity fails as a whole, as a poison key would), `model.infer` (each call of the model: a
//! batch, and when a batch fails, each of its rows run alone), `sink.emit`
//! (a whole batch), `sink.record` (each record of a batch in turn, so
//! `sink.record=permanent*1` refuses exactly one result), `bus.publish`,
//! `bus.poll`, `bus.maintain` (a consumer's heartbeat and rebalance),
//! `dead_letter.write` (a commit that carries dead letters).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Checks kept in the log at most; older ones are dropped, so a fault left
/// on in a long-running process does not grow memory without bound.
const LOG_CAP: usize = 10_000;

/// Whether any fault was ever set: the common case, none, costs one load
/// per check instead of a lock.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Whether [`load_env`] reads `MODELBUS_FAULTS` and returns its errors, so
/// they need not also be logged.
static REPORTED_BY_CALLER: AtomicBool = AtomicBool::new(false);

use crate::error::ErrorClass;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub class: ErrorClass,
    /// How many more checks fail; `None` = every one.
    pub remaining: Option<u32>,
}

/// When a fault fires, counted from the first check of its point after it
/// was set: from `delay` to `delay + length`, never after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub delay: Duration,
    pub length: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Armed {
    fault: Fault,
    window: Option<Window>,
    /// The first check of the point since the fault was set (kept only for
    /// a window, which is counted from it).
    first: Option<Instant>,
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Armed>,
    /// Every check of a point that has a fault set: (point, time, failed).
    log: VecDeque<(String, tokio::time::Instant, bool)>,
    /// The malformed items of `MODELBUS_FAULTS`, refused ([`load_env`]).
    env_errors: Vec<String>,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let mut st = State::default();
        if let Ok(spec) = std::env::var("MODELBUS_FAULTS") {
            for item in items(&spec) {
                match parse(item) {
                    Ok((point, fault, window)) => {
                        st.faults.insert(point, Armed { fault, window, first: None });
                        ARMED.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Unless [`load_env`] reads them and reports them itself.
                        if !REPORTED_BY_CALLER.load(Ordering::Relaxed) {
                            tracing::error!("MODELBUS_FAULTS: {e}; not set");
                        }
                        st.env_errors.push(e);
                    }
                }
            }
        }
        Mutex::new(st)
    })
}

/// The non-empty items of a comma-separated spec.
fn items(spec: &str) -> impl Iterator<Item = &str> {
    spec.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// One item, `point=class[*count][@[delay+]length]`. The error names the
/// item and says what is wrong with it.
fn parse(item: &str) -> Result<(String, Fault, Option<Window>), String> {
    const FORM: &str = "expected point=class[*count][@[delay+]length], e.g. features.lookup=transient*3@20s";
    let item = item.trim();
    let bad = |why: String| format!("fault `{item}`: {why}");
    let (point, rest) = item.split_once('=').ok_or_else(|| bad(FORM.into()))?;
    let point = point.trim();
    if point.is_empty() {
        return Err(bad(format!("no point named; {FORM}")));
    }
    let (rest, window) = match rest.split_once('@') {
        Some((r, w)) => (r, Some(parse_window(w.trim()).map_err(bad)?)),
        None => (rest, None),
    };
    let (class, times) = match rest.split_once('*') {
        Some((c, n)) => {
            let n = n.trim();
            let n = n.parse().map_err(|_| bad(format!("count `{n}` is not a whole number (0 to {})", u32::MAX)))?;
            (c, Some(n))
        }
        None => (rest, None),
    };
    let class = match class.trim() {
        "transient" => ErrorClass::Transient,
        "permanent" => ErrorClass::Permanent,
        "fatal" => ErrorClass::Fatal,
        other => return Err(bad(format!("unknown class `{other}` (transient, permanent or fatal); {FORM}"))),
    };
    Ok((point.to_string(), Fault { class, remaining: times }, window))
}

/// `length` or `delay+length`.
fn parse_window(s: &str) -> Result<Window, String> {
    let duration = |what: &str, d: &str| {
        let d = d.trim();
        humantime::parse_duration(d)
            .map_err(|e| format!("{what} `{d}` is not a duration like \"500ms\" or \"20s\" ({e})"))
    };
    let (delay, length) = match s.split_once('+') {
        Some((d, l)) => (duration("window delay", d)?, duration("window length", l)?),
        None => (Duration::ZERO, duration("window length", s)?),
    };
    if length.is_zero() {
        return Err("a window of length zero never fires".into());
    }
    Ok(Window { delay, length })
}

pub fn set(point: &str, fault: Fault) {
    arm(point, Armed { fault, window: None, first: None });
}

/// Sets a fault that fires only within `window`, counted from the next
/// check of `point`.
pub fn set_window(point: &str, fault: Fault, window: Window) {
    arm(point, Armed { fault, window: Some(window), first: None });
}

/// Sets every fault of a spec written as `MODELBUS_FAULTS` is, or, if any
/// item is malformed, none.
pub fn set_spec(spec: &str) -> Result<(), String> {
    let parsed = items(spec).map(parse).collect::<Result<Vec<_>, _>>()?;
    for (point, fault, window) in parsed {
        arm(&point, Armed { fault, window, first: None });
    }
    Ok(())
}

fn arm(point: &str, armed: Armed) {
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.faults.insert(point.to_string(), armed);
    ARMED.store(true, Ordering::Relaxed);
}

/// Reads `MODELBUS_FAULTS` now rather than at the first check, and says
/// which of its items were malformed (and so are not set), one per line.
pub fn load_env() -> Result<(), String> {
    REPORTED_BY_CALLER.store(true, Ordering::Relaxed);
    let st = state().lock().unwrap_or_else(|e| e.into_inner());
    if st.env_errors.is_empty() {
        Ok(())
    } else {
        Err(format!("MODELBUS_FAULTS: {}", st.env_errors.join("\nMODELBUS_FAULTS: ")))
    }
}

/// Whether any fault was ever set in this process: one relaxed load, for
/// points whose name must be built (per key) only when it can matter.
pub fn any_set() -> bool {
    ARMED.load(Ordering::Relaxed)
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
    let armed = st.faults.get_mut(point)?;
    let open = match armed.window {
        None => true,
        Some(w) => {
            let now = Instant::now();
            let since = now.duration_since(*armed.first.get_or_insert(now));
            since >= w.delay && since - w.delay < w.length
        }
    };
    // A check outside the window does not use up the count.
    let fail = open
        && match &mut armed.fault.remaining {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        };
    let class = armed.fault.class;
    if st.log.len() >= LOG_CAP {
        st.log.pop_front();
    }
    st.log.push_back((point.to_string(), tokio::time::Instant::now(), fail));
    fail.then_some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(delay_ms: u64, length_ms: u64) -> Option<Window> {
        Some(Window { delay: Duration::from_millis(delay_ms), length: Duration::from_millis(length_ms) })
    }

    #[test]
    fn parses_specs() {
        assert_eq!(
            parse("features.lookup=transient*3"),
            Ok(("features.lookup".into(), Fault { class: ErrorClass::Transient, remaining: Some(3) }, None))
        );
        assert_eq!(parse("sink.emit=permanent").unwrap().1.remaining, None);
        assert!(parse("x=sometimes").is_err());
    }

    #[test]
    fn parses_windows() {
        let (point, fault, w) = parse("features.lookup=transient@20s").unwrap();
        assert_eq!(point, "features.lookup");
        assert_eq!(fault, Fault { class: ErrorClass::Transient, remaining: None });
        assert_eq!(w, window(0, 20_000));
        assert_eq!(parse("model.infer=permanent@500ms").unwrap().2, window(0, 500));
        assert_eq!(parse("model.infer=permanent@5s+20s").unwrap().2, window(5_000, 20_000));
        assert_eq!(parse(" sink.emit = fatal * 2 @ 1m 30s ").unwrap().2, window(0, 90_000));
        let (_, fault, w) = parse("bus.poll=transient*3@100ms+1s").unwrap();
        assert_eq!(fault.remaining, Some(3));
        assert_eq!(w, window(100, 1_000));
    }

    #[test]
    fn refuses_malformed_specs_saying_why() {
        for (spec, says) in [
            ("features.lookup", "expected point=class"),
            ("=transient", "no point named"),
            ("features.lookup=sometimes@20s", "unknown class `sometimes`"),
            ("features.lookup=transient*x", "count `x`"),
            ("features.lookup=transient*-1", "count `-1`"),
            ("features.lookup=transient@", "window length ``"),
            ("features.lookup=transient@soon", "window length `soon`"),
            ("features.lookup=transient@20", "window length `20`"),
            ("features.lookup=transient@x+20s", "window delay `x`"),
            ("features.lookup=transient@5s+", "window length ``"),
            ("features.lookup=transient@0s", "length zero"),
            ("features.lookup=transient@20s*3", "window length `20s*3`"),
            ("features.lookup=transient@1s@2s", "window length `1s@2s`"),
        ] {
            let e = parse(spec).expect_err(spec);
            assert!(e.contains(spec.trim()) && e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn a_bad_item_sets_nothing_of_its_spec() {
        assert!(set_spec("test.spec.good=transient, test.spec.bad=transient@never").is_err());
        assert!(!armed("test.spec.good"));
        set_spec("test.spec.a=permanent*1@10s, ,test.spec.b=fatal").unwrap();
        assert_eq!(check("test.spec.a"), Some(ErrorClass::Permanent));
        assert_eq!(check("test.spec.a"), None);
        assert_eq!(check("test.spec.b"), Some(ErrorClass::Fatal));
    }

    #[test]
    fn a_window_opens_at_the_first_check_and_closes() {
        let fault = Fault { class: ErrorClass::Transient, remaining: None };
        set_window("test.window", fault, Window { delay: Duration::ZERO, length: Duration::from_millis(50) });
        // Not counted from when it was set.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(check("test.window"), Some(ErrorClass::Transient));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(check("test.window"), None);
        assert_eq!(check("test.window"), None);
        assert!(armed("test.window"));

        // Every check within the window fires.
        set_spec("test.window.long=fatal@60s").unwrap();
        for _ in 0..3 {
            assert_eq!(check("test.window.long"), Some(ErrorClass::Fatal));
        }
    }

    #[test]
    fn a_delayed_window_waits_then_fires_then_closes() {
        let fault = Fault { class: ErrorClass::Permanent, remaining: None };
        set_window(
            "test.delayed",
            fault,
            Window { delay: Duration::from_millis(100), length: Duration::from_secs(60) },
        );
        assert_eq!(check("test.delayed"), None);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(check("test.delayed"), Some(ErrorClass::Permanent));

        set_spec("test.delayed.closes=permanent@50ms+50ms").unwrap();
        assert_eq!(check("test.delayed.closes"), None);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(check("test.delayed.closes"), None);
    }

    #[test]
    fn a_count_and_a_window_both_limit() {
        set_spec("test.counted=transient*2@50ms+60s").unwrap();
        // Before the window: passes, and does not use up the count.
        assert_eq!(check("test.counted"), None);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(check("test.counted"), Some(ErrorClass::Transient));
        assert_eq!(check("test.counted"), Some(ErrorClass::Transient));
        assert_eq!(check("test.counted"), None);

        set_spec("test.counted.closes=transient*1000@50ms").unwrap();
        assert_eq!(check("test.counted.closes"), Some(ErrorClass::Transient));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(check("test.counted.closes"), None);
    }

    #[test]
    fn setting_again_restarts_the_window() {
        let w = Window { delay: Duration::ZERO, length: Duration::from_millis(50) };
        let fault = Fault { class: ErrorClass::Transient, remaining: None };
        set_window("test.reset", fault, w);
        assert!(check("test.reset").is_some());
        std::thread::sleep(Duration::from_millis(150));
        assert!(check("test.reset").is_none());
        set_window("test.reset", fault, w);
        assert!(check("test.reset").is_some());
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
