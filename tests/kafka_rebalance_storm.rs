//! A rebalance storm on Kafka: one worker grows to four and shrinks back to
//! one while 50,000 paced events flow, once with eager and once with
//! cooperative assignment. Must hold: nothing lost; redeliveries bounded by
//! the in-flight limit times the membership changes; for every key, the
//! first occurrence of each result comes in input order. The figures
//! (events, results, redeliveries, membership changes) are printed.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka;
use modelbus::bus::Bus;
use modelbus::event::Event;
use modelbus::example::Generator;

const EVENTS: usize = 50_000;
const MAX_IN_FLIGHT: usize = 1024;

async fn storm(strategy: Option<&str>, tag: &str) {
    let n = kafka::names(tag);
    let c = common::claims(|t| {
        let t =
            kafka::config_edit(&n, "")(t).replace("max_in_flight = 4096", &format!("max_in_flight = {MAX_IN_FLIGHT}"));
        match strategy {
            Some(s) => t.replace(
                "[bus.kafka.consumer_properties]\n",
                &format!("[bus.kafka.consumer_properties]\n\"partition.assignment.strategy\" = \"{s}\"\n"),
            ),
            None => t,
        }
    });
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    bus.ensure_topic(&n.input, true).await.unwrap();

    let mut g = Generator::new(31, 0.0);
    let events: Vec<Event> = (0..EVENTS).map(|_| g.claim(chrono::Utc::now())).collect();
    let claim = |e: &Event| e.data["claim_id"].as_str().unwrap().to_string();
    let ids: HashSet<String> = events.iter().map(claim).collect();
    // Input order per record key.
    let mut order: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    let records: Vec<_> = events.iter().map(Event::to_record).collect();
    for (e, r) in events.iter().zip(&records) {
        order.entry(r.key.clone().unwrap_or_default()).or_default().push(claim(e));
    }

    let spawn = |i: usize| -> Child {
        common::spawn_worker_with(&c.config_path, &c.dir.path().join(format!("w{i}.log")), &[("RUST_LOG", "info")])
    };
    let mut workers = vec![spawn(0)];
    assert!(common::wait_for_log(&c.dir.path().join("w0.log"), "rebalance", Duration::from_secs(60)).await);

    let publisher = {
        let (bus, input) = (bus.clone(), n.input.clone());
        tokio::spawn(async move {
            // 50,000 over about 50 s, in chunks of 250.
            let start = Instant::now();
            for (i, chunk) in records.chunks(250).enumerate() {
                let due = start + Duration::from_millis(250 * i as u64);
                tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
                bus.publish(&input, chunk.to_vec()).await.unwrap();
            }
        })
    };
    // Grow to four, one every 6 s, then shrink back to one.
    let mut changes = 0;
    for i in 1..4 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        workers.push(spawn(i));
        changes += 1;
    }
    for _ in 1..4 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let w = workers.pop().unwrap();
        common::signal(&w, libc::SIGTERM);
        assert!({ w }.wait().unwrap().success(), "a leaving worker drains and exits cleanly");
        changes += 1;
    }
    publisher.await.unwrap();
    let claim_of = |d: &modelbus::bus::Delivery| {
        serde_json::from_slice::<serde_json::Value>(&d.record.value)
            .ok()
            .and_then(|v| v["claim_id"].as_str().map(str::to_string))
    };
    let results = kafka::read_covering(&bus, &n.results, &ids, claim_of, Duration::from_secs(300)).await;
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(3)).await;
    for w in workers {
        common::signal(&w, libc::SIGTERM);
        assert!({ w }.wait().unwrap().success());
    }

    let got: HashSet<String> = results.iter().filter_map(claim_of).collect();
    let lost = ids.difference(&got).count();
    let redelivered = results.len() - got.len();
    // First occurrences per key, in the order they were written (one key,
    // one partition, so the topic's order is the write order).
    let mut first: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for d in &results {
        if let Some(c) = claim_of(d) {
            if seen.insert(c.clone()) {
                first.entry(d.record.key.clone().unwrap_or_default()).or_default().push(c);
            }
        }
    }
    let out_of_order = order.iter().filter(|(k, want)| first.get(*k).is_some_and(|got| got != *want)).count();
    println!(
        "rebalance storm ({}): events {EVENTS}, results {} ({} distinct), lost {lost}, redeliveries {redelivered} \
         (bound {} = max_in_flight {MAX_IN_FLIGHT} x {changes} membership changes), keys out of order {out_of_order}, \
         dead letters {}",
        strategy.unwrap_or("eager, the default"),
        results.len(),
        got.len(),
        MAX_IN_FLIGHT * changes,
        dls.len()
    );
    assert_eq!(lost, 0, "nothing lost");
    assert!(redelivered <= MAX_IN_FLIGHT * changes, "redeliveries {redelivered} over the bound");
    assert_eq!(out_of_order, 0, "per key, first results in input order");
    assert!(dls.is_empty(), "no dead letters");
}

/// Both assignment strategies, one after the other: each storm runs five
/// worker processes, and two at once would starve a two-core machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_storms_eager_then_cooperative_lose_nothing_and_keep_key_order() {
    storm(None, "storm-eager").await;
    storm(Some("cooperative-sticky"), "storm-coop").await;
}
