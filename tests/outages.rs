//! Dependency outages under load: when the feature store or the sink fails
//! for every event, the worker's circuit breaker opens, consumption pauses,
//! and the backlog waits instead of turning into dead letters; nothing is
//! lost, across a `kill -9` too. A poison key fails alone and never opens
//! the breaker. Outages are scripted with `MODELBUS_FAULTS` time windows
//! in real worker processes on the embedded bus.
//!
//! Each test prints its figures (events, results, dead letters, breaker
//! openings, redeliveries) for the closing notes; they are not asserted
//! beyond what the issue requires.

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelbus::bus::Bus;
use modelbus::event::Event;
use modelbus::example::Generator;

/// `n` claims published in chunks over about `over`, while a worker runs.
async fn publish_paced(bus: Arc<Bus>, events: Vec<Event>, over: Duration) {
    let chunks = (over.as_millis() / 50).max(1) as usize;
    let per = events.len().div_ceil(chunks);
    let start = Instant::now();
    for (i, chunk) in events.chunks(per).enumerate() {
        let due = start + over.mul_f64(i as f64 / chunks as f64);
        tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
        bus.publish("claims", chunk.iter().map(Event::to_record).collect()).await.unwrap();
    }
}

fn claims(n: usize, seed: u64) -> Vec<Event> {
    let mut g = Generator::new(seed, 0.0);
    (0..n).map(|_| g.claim(chrono::Utc::now())).collect()
}

/// Distinct result ids on `risk-scored`, and all results (with repeats).
async fn results(bus: &Bus) -> (usize, usize) {
    let all = common::read_all(bus, "risk-scored").await;
    let ids: HashSet<String> = all.iter().filter_map(|d| d.record.header_str("ce_id").map(str::to_string)).collect();
    (ids.len(), all.len())
}

async fn wait_for_results(bus: &Bus, want: usize, timeout: Duration) -> bool {
    common::wait_until(timeout, || async move { results(bus).await.0 >= want }).await
}

/// A metric's value for one dependency, from `/metrics`.
async fn breaker_metric(addr: &str, name: &str, dependency: &str) -> Option<f64> {
    let (_, body) = common::http_get(addr, "/metrics").await;
    let prefix = format!("{name}{{worker=\"claims-risk\",dependency=\"{dependency}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

fn spawn(c: &common::Claims, log: &str, faults: &str) -> Child {
    let env = [("MODELBUS_FAULTS", faults), ("RUST_LOG", "info")];
    common::spawn_worker_with(&c.config_path, &c.dir.path().join(log), &env)
}

fn stop(mut w: Child) {
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success(), "the worker exits cleanly");
}

/// Small batches, so that each lookup is a call and a 20 s outage sees many.
fn small_batches(t: String) -> String {
    t.replace("max_wait = \"0ms\"", "max_wait = \"5ms\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_store_outage_pauses_consumption_and_dead_letters_nothing() {
    let c = common::claims(small_batches);
    let addr = common::with_http(&c.config_path);
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    let w = spawn(&c, "worker.log", "features.lookup=transient@20s");
    assert!(common::wait_for_log(&c.dir.path().join("worker.log"), "serving /metrics", Duration::from_secs(60)).await);

    let n = 5000;
    let started = Instant::now();
    publish_paced(bus.clone(), claims(n, 7), Duration::from_secs(25)).await;
    assert!(wait_for_results(&bus, n, Duration::from_secs(120)).await, "every event gets its result");
    let took = started.elapsed();
    let dep = "feature_store:customers";
    let openings = breaker_metric(&addr, "modelbus_breaker_openings_total", dep).await;
    let open = breaker_metric(&addr, "modelbus_breaker_open", dep).await;
    let open_s = breaker_metric(&addr, "modelbus_breaker_open_seconds_total", dep).await;
    stop(w);
    let dls = common::count(&bus, "claims.dlq").await;
    let (distinct, all) = results(&bus).await;
    println!(
        "feature-store outage: events {n}, results {distinct} distinct / {all} written, dead letters {dls}, \
         breaker openings {openings:?}, open {open_s:?} s, all results after {took:?}"
    );
    assert_eq!(dls, 0, "an outage dead-letters nothing");
    assert_eq!(distinct, n, "nothing lost");
    assert_eq!(openings, Some(1.0), "the breaker opened once");
    assert_eq!(open, Some(0.0), "and closed");
    let log = std::fs::read_to_string(c.dir.path().join("worker.log")).unwrap();
    assert_eq!(log.matches("circuit breaker opened").count(), 1, "{log}");
    assert_eq!(log.matches("circuit breaker closed").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_with_a_kill_loses_nothing() {
    let c = common::claims(small_batches);
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    let first = spawn(&c, "first.log", "sink.emit=transient@20s");
    assert!(common::wait_for_log(&c.dir.path().join("first.log"), "worker started", Duration::from_secs(60)).await);

    let n = 3000;
    let publisher = tokio::spawn(publish_paced(bus.clone(), claims(n, 11), Duration::from_secs(15)));
    // Into the outage, with the breaker open: kill -9.
    assert!(
        common::wait_for_log(&c.dir.path().join("first.log"), "circuit breaker opened", Duration::from_secs(60)).await,
        "the breaker opens"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    common::signal(&first, libc::SIGKILL);
    let _ = { first }.wait();
    let before = results(&bus).await;
    // The sink is still down for a while after the restart.
    let second = spawn(&c, "second.log", "sink.emit=transient@8s");
    publisher.await.unwrap();
    assert!(wait_for_results(&bus, n, Duration::from_secs(120)).await, "every event gets its result after the restart");
    stop(second);
    let dls = common::count(&bus, "claims.dlq").await;
    let (distinct, all) = results(&bus).await;
    println!(
        "sink outage with kill -9: events {n}, results before the kill {}, after: {distinct} distinct / {all} \
         written ({} redelivered results), dead letters {dls}",
        before.0,
        all - distinct
    );
    assert_eq!(distinct, n, "nothing lost");
    assert_eq!(dls, 0, "an outage dead-letters nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_key_is_dead_lettered_alone_and_never_opens_the_breaker() {
    let c = common::claims(|t| small_batches(t).replace("max_wait = \"5ms\"", "max_wait = \"50ms\""));
    let addr = common::with_http(&c.config_path);
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    let events = claims(2000, 13);
    // A customer with one event: its retries run alone, as a poison key's do.
    let customer = |e: &Event| e.data["customer_id"].as_str().unwrap().to_string();
    let poison = events
        .iter()
        .skip(10)
        .map(customer)
        .find(|c| events.iter().filter(|e| customer(e) == *c).count() == 1)
        .expect("some customer has one event");
    let poisoned = 1;
    let w = spawn(&c, "worker.log", &format!("features.key:{poison}=transient"));
    assert!(common::wait_for_log(&c.dir.path().join("worker.log"), "serving /metrics", Duration::from_secs(60)).await);
    publish_paced(bus.clone(), events, Duration::from_secs(4)).await;
    let n = 2000 - poisoned;
    assert!(wait_for_results(&bus, n, Duration::from_secs(60)).await, "every other event gets its result");
    let done = common::wait_until(Duration::from_secs(60), || {
        let bus = bus.clone();
        async move { common::count(&bus, "claims.dlq").await >= poisoned as u64 }
    })
    .await;
    let openings = breaker_metric(&addr, "modelbus_breaker_openings_total", "feature_store:customers").await;
    stop(w);
    let dls = common::dead_letters(&bus, "claims.dlq").await;
    let (distinct, _) = results(&bus).await;
    println!(
        "poison key: events 2000, with the poison key {poisoned}, results {distinct}, dead letters {}, breaker openings {openings:?}",
        dls.len()
    );
    assert!(done, "the poison key's events are dead-lettered");
    assert_eq!(dls.len(), poisoned, "only the poison key's events");
    assert!(dls.iter().all(|d| d.attr("dlcode").ends_with("retries_exhausted")), "after their attempts");
    assert!(dls.iter().all(|d| d.attr("dlattempts") == "5"), "all five");
    assert_eq!(distinct, n, "the other events of its batches get their results");
    assert_eq!(openings, Some(0.0), "the breaker never opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_open_longer_than_its_bound_stops_the_worker_without_committing() {
    let c = common::claims(|t| {
        small_batches(t).replace(
            "[feature_stores.customers]\nkind = \"embedded\"",
            "[feature_stores.customers]\nkind = \"embedded\"\nbreaker = { failures = 3, open_fatal_after = \"2s\" }",
        )
    });
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    bus.publish("claims", claims(200, 17).iter().map(Event::to_record).collect()).await.unwrap();
    let mut w = spawn(&c, "worker.log", "features.lookup=transient");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = w.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(c.dir.path().join("worker.log")).unwrap();
    let Some(status) = status else {
        common::signal(&w, libc::SIGKILL);
        panic!("the worker did not stop:\n{log}");
    };
    println!("open_fatal_after 2s: the worker stopped {:?} after start", started.elapsed());
    assert!(!status.success(), "a fatal stop is a failure exit:\n{log}");
    assert!(log.contains("open_fatal_after"), "the reason is logged:\n{log}");
    assert_eq!(common::count(&bus, "claims.dlq").await, 0, "nothing dead-lettered");
    assert_eq!(common::count(&bus, "risk-scored").await, 0);
    // Nothing committed: a new worker without the fault scores all 200.
    let w2 = spawn(&c, "second.log", "");
    assert!(wait_for_results(&bus, 200, Duration::from_secs(60)).await, "every event is still there to score");
    stop(w2);
}
