//! Failure handling across processes: a `kill -9` in the middle of a retry
//! sequence resumes the attempt count; a `kill -9` during 10,000 events
//! leaves every input with exactly one distinct result or dead-letter id;
//! dedup turns a republished batch into no new results; replay after a fix
//! yields exactly one result with the original trace, guarded against loops.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use modelbus::bus::Bus;
use modelbus::event::{Event, Record};
use modelbus::example::{Generator, Kind};

fn quick_group(t: String) -> String {
    t.replace(
        "[bus.embedded]\npartitions = 4",
        "[bus.embedded]\npartitions = 4\nsession_timeout = \"1s\"\nheartbeat_interval = \"100ms\"",
    )
}

fn attempts_in_store(dir: &std::path::Path) -> Option<u32> {
    let c = rusqlite::Connection::open(dir.join("data/bus.sqlite")).ok()?;
    c.query_row("SELECT max(attempts) FROM attempts", [], |r| r.get::<_, Option<u32>>(0)).ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_retries_resumes_the_attempt_count() {
    let c = common::claims(|t| {
        quick_group(t)
            .replace("initial_delay = \"100ms\"", "initial_delay = \"300ms\"")
            .replace("multiplier = 2.0", "multiplier = 1.0")
            .replace("max_attempts = 5", "max_attempts = 8")
    });
    let bus = Bus::open(&c.config).unwrap();
    let e = Generator::new(5, 0.0).claim(chrono::Utc::now());
    bus.publish("claims", vec![e.to_record()]).await.unwrap();
    let spawn = |log: &str| {
        common::spawn_worker_with(
            &c.config_path,
            &c.dir.path().join(log),
            &[("MODELBUS_FAULTS", "features.lookup=transient")],
        )
    };
    let mut first = spawn("first.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while attempts_in_store(c.dir.path()).unwrap_or(0) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = attempts_in_store(c.dir.path()).unwrap_or(0);
    assert!((3..8).contains(&before), "kill lands mid-sequence (attempts persisted: {before})");
    common::signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    let killed_at = chrono::Utc::now();
    let mut second = spawn("second.log");
    let bus2 = &bus;
    let done =
        common::wait_until(Duration::from_secs(60), || async move { common::count(bus2, "claims.dlq").await >= 1 })
            .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::signal(&second, libc::SIGTERM);
    second.wait().unwrap();
    assert!(done, "dead-lettered after the restart");
    let dls = common::dead_letters(&bus, "claims.dlq").await;
    assert_eq!(dls.len(), 1, "exactly one dead letter");
    assert_eq!(dls[0].attr("dlattempts"), "8", "the count continued across the crash");
    let first_failure = chrono::DateTime::parse_from_rfc3339(dls[0].attr("dlfirstfailure")).unwrap();
    assert!(first_failure < killed_at, "first failure is the one before the crash");
}

/// The group's committed position on `claims`, summed over partitions.
fn committed(dir: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(dir.join("data/bus.sqlite")).unwrap();
    c.query_row("SELECT coalesce(sum(next_offset), 0) FROM offsets WHERE topic = 'claims'", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_ledger_over_10000_events() {
    let c = common::claims(|t| {
        quick_group(t).replace("max_in_flight = 4096", "max_in_flight = 4096\ncommit_interval = \"1s\"")
    });
    let bus = Bus::open(&c.config).unwrap();
    let mut worker = common::spawn_worker(&c.config_path, &c.dir.path().join("w1.log"));
    let mut g = Generator::new(77, 0.02);
    let mut inputs: Vec<(String, Kind)> = Vec::new();
    let mut killed = false;
    let total = 10_000;
    while inputs.len() < total {
        let now = chrono::Utc::now();
        let batch: Vec<Record> = (0..50)
            .map(|_| {
                let (kind, r) = g.next(now);
                inputs.push((r.header_str("ce_id").unwrap().to_string(), kind));
                r
            })
            .collect();
        bus.publish("claims", batch).await.unwrap();
        // Kill only while the worker holds handled-but-uncommitted events, so
        // that redeliveries are certain (a commit could only slip in within
        // the next millisecond of a 1 s interval).
        let handled = common::count(&bus, "risk-scored").await + common::count(&bus, "claims.dlq").await;
        if !killed && handled >= 3000 && handled > committed(c.dir.path()) + 50 {
            common::signal(&worker, libc::SIGKILL);
            worker.wait().unwrap();
            killed = true;
            worker = common::spawn_worker(&c.config_path, &c.dir.path().join("w2.log"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed, "the kill landed mid-stream");
    // Wait until every input is accounted for (by cause id / dlq origin).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (results, dls) = loop {
        let results: Vec<(String, String)> = common::read_all(&bus, "risk-scored")
            .await
            .iter()
            .map(|d| {
                let e = Event::from_record(&d.record).unwrap();
                (e.extensions["causationid"].clone(), e.id)
            })
            .collect();
        let dls: Vec<(String, String)> = common::dead_letters(&bus, "claims.dlq")
            .await
            .iter()
            .map(|d| (d.original().header_str("ce_id").unwrap_or("").to_string(), d.id().to_string()))
            .collect();
        let handled: HashSet<&str> = results.iter().chain(dls.iter()).map(|(c, _)| c.as_str()).collect();
        if inputs.iter().all(|(id, _)| handled.contains(id.as_str())) || Instant::now() > deadline {
            break (results, dls);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    common::signal(&worker, libc::SIGTERM);
    worker.wait().unwrap();
    let mut ids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (cause, id) in results.iter().chain(dls.iter()) {
        ids.entry(cause.as_str()).or_default().insert(id.as_str());
    }
    for (id, kind) in &inputs {
        let set = ids.get(id.as_str()).unwrap_or_else(|| panic!("{kind:?} event {id} was lost"));
        assert_eq!(set.len(), 1, "{kind:?} event {id} has {} distinct ids", set.len());
    }
    let repeats = results.len() + dls.len() - inputs.len();
    assert!(repeats > 0, "redeliveries after the kill must be observed");
    eprintln!("{total} events: {} results, {} dead letters, {repeats} repeats (same ids)", results.len(), dls.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dedup_publishing_1000_events_twice_yields_1000_results() {
    let c = common::claims(|t| t.replace("max_in_flight = 4096", "max_in_flight = 4096\ndedup_window = \"1h\""));
    let bus = Bus::open(&c.config).unwrap();
    let mut worker = common::spawn_worker(&c.config_path, &c.dir.path().join("w.log"));
    let mut g = Generator::new(8, 0.0);
    let now = chrono::Utc::now();
    let batch: Vec<Record> = (0..1000).map(|_| g.claim(now).to_record()).collect();
    bus.publish("claims", batch.clone()).await.unwrap();
    let b = &bus;
    assert!(
        common::wait_until(Duration::from_secs(60), || async move { common::count(b, "risk-scored").await >= 1000 })
            .await
    );
    bus.publish("claims", batch).await.unwrap();
    // The second copy is consumed (the group's offsets pass it) without results.
    let db = c.dir.path().join("data/bus.sqlite");
    let db = &db;
    let consumed = common::wait_until(Duration::from_secs(60), || async move {
        let c = rusqlite::Connection::open(db).unwrap();
        let n: i64 = c
            .query_row("SELECT coalesce(sum(next_offset),0) FROM offsets WHERE topic = 'claims'", [], |r| r.get(0))
            .unwrap();
        n >= 2000
    })
    .await;
    common::signal(&worker, libc::SIGTERM);
    worker.wait().unwrap();
    assert!(consumed, "the duplicates were consumed");
    assert_eq!(common::count(&bus, "risk-scored").await, 1000);
}

fn run_cli(args: &[&str], config: &std::path::Path) -> String {
    let out = Command::new(common::bin()).args(args).arg("--config").arg(config).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_fix_yields_one_result_with_the_original_trace() {
    let c = common::claims(|t| t.replace("max_in_flight = 4096", "max_in_flight = 4096\nmax_replays = 2"));
    let bus = Bus::open(&c.config).unwrap();
    let mut worker = common::spawn_worker(&c.config_path, &c.dir.path().join("w.log"));
    let mut e = Generator::new(9, 0.0).claim(chrono::Utc::now());
    e.data["customer_id"] = serde_json::json!("C77777");
    bus.publish("claims", vec![e.to_record()]).await.unwrap();
    let b = &bus;
    assert!(
        common::wait_until(Duration::from_secs(60), || async move { common::count(b, "claims.dlq").await >= 1 }).await
    );

    // Not fixed yet: replaying fails again, and the loop guard stops the third try.
    let dry = run_cli(&["dlq", "replay", "--dry-run"], &c.config_path);
    assert!(dry.contains("would replay"), "{dry}");
    assert_eq!(common::count(&bus, "claims-risk.replay").await, 0, "--dry-run changes nothing");
    for round in 1..=2u64 {
        let out = run_cli(&["dlq", "replay"], &c.config_path);
        assert!(out.contains("1 replayed"), "{out}");
        assert!(
            common::wait_until(Duration::from_secs(60), || async move { common::count(b, "claims.dlq").await > round })
                .await
        );
        let again = run_cli(&["dlq", "replay", "--stage", "decode"], &c.config_path);
        assert!(again.contains("0 replayed"), "filters apply: {again}");
    }
    let guard = run_cli(&["dlq", "replay"], &c.config_path);
    assert!(guard.contains("1 refused"), "loop guard: {guard}");

    // Fix the cause: the customer now exists. Replaying the newest dead
    // letter needs a fresh guard, so allow one more on the command line.
    let csv = c.dir.path().join("features/customers.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("C77777,12,0,40,900.0,1,0,700,0.1\n");
    std::fs::write(&csv, text).unwrap();
    common::signal(&worker, libc::SIGTERM);
    worker.wait().unwrap();
    run_cli(&["features", "load", "customers", csv.to_str().unwrap()], &c.config_path);
    let mut worker = common::spawn_worker(&c.config_path, &c.dir.path().join("w2.log"));
    let out = run_cli(&["dlq", "replay", "--max-replays", "3"], &c.config_path);
    assert!(out.contains("1 replayed"), "{out}");
    assert!(
        common::wait_until(Duration::from_secs(60), || async move { common::count(b, "risk-scored").await >= 1 }).await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::signal(&worker, libc::SIGTERM);
    worker.wait().unwrap();
    let results = common::read_all(&bus, "risk-scored").await;
    assert_eq!(results.len(), 1, "exactly one result");
    let r = Event::from_record(&results[0].record).unwrap();
    assert_eq!(r.extensions["causationid"], e.id);
    assert_eq!(r.traceparent.trace_id, e.traceparent.trace_id, "the trace links failure and replay");
    let again = run_cli(&["dlq", "replay", "--max-replays", "3"], &c.config_path);
    assert!(again.contains("0 replayed"), "nothing is replayed twice: {again}");
}
