//! The crash ledger on Kafka: three worker processes in one group over
//! 20,000 events paced across more than a minute. One of them is killed
//! with SIGKILL after every N results and restarted, the kills spaced wider
//! than a rebalance. Every event must end with exactly one distinct result
//! id or one distinct dead-letter id; repeats are allowed only as the same
//! deterministic id, and repeats must actually have happened.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use common::kafka::{self, header};
use modelbus::bus::Bus;
use modelbus::example::{Generator, Kind};

const EVENTS: usize = 20_000;
/// 20,000 events at 270/s: about 74 s of input.
const RATE: usize = 270;
/// Kill one worker after every 5,000 results (~18 s apart, wider than a
/// 6 s session timeout plus the broker's ~3 s join).
const KILL_EVERY: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_with_kills_and_restarts_keep_the_ledger() {
    let n = kafka::names("ledger");
    let c = kafka::claims(&n, "commit_interval = \"200ms\"");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let mut spawned = 0;
    let mut spawn = |c: &common::Claims| {
        spawned += 1;
        common::spawn_worker(&c.config_path, &c.dir.path().join(format!("w{spawned}.log")))
    };
    let mut workers: Vec<Child> = (0..3).map(|_| spawn(&c)).collect();
    tokio::time::sleep(Duration::from_secs(8)).await; // let the group form

    // Publisher: paced, ~1% bad events so dead letters take part too.
    let publisher_bus = Bus::open(&c.config).unwrap();
    let input = n.input.clone();
    let publisher = tokio::spawn(async move {
        let mut g = Generator::new(77, 0.01);
        let mut ids: Vec<(String, Kind)> = Vec::with_capacity(EVENTS);
        let start = Instant::now();
        let tick = Duration::from_millis(50);
        let per_tick = RATE / 20;
        while ids.len() < EVENTS {
            let k = per_tick.min(EVENTS - ids.len());
            let batch: Vec<_> = (0..k)
                .map(|_| {
                    let (kind, rec) = g.next(chrono::Utc::now());
                    ids.push((rec.header_str("ce_id").unwrap_or_default().to_string(), kind));
                    rec
                })
                .collect();
            publisher_bus.publish(&input, batch).await.unwrap();
            let due = start + tick * (ids.len() / per_tick) as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        ids
    });

    // Watch results; kill and restart a worker after every KILL_EVERY.
    let mut follower = kafka::follow_when_ready(&bus, &n.results, Instant::now() + Duration::from_secs(120)).await;
    let mut seen = 0usize;
    let mut kills = 0;
    let mut victim = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !publisher.is_finished() && Instant::now() < deadline {
        seen += follower.next_batch(10_000, Duration::from_millis(200)).await.unwrap().len();
        if seen >= (kills + 1) * KILL_EVERY && kills < 3 {
            common::signal(&workers[victim], libc::SIGKILL);
            workers[victim].wait().unwrap();
            workers[victim] = spawn(&c);
            kills += 1;
            eprintln!("kill {kills}: worker {victim} after {seen} result records");
            victim = (victim + 1) % 3;
        }
    }
    let sent = publisher.await.unwrap();
    assert!(kills >= 3, "the kills landed mid-stream ({kills} after {seen} results)");

    // Ledger: read both topics until every event is accounted for.
    let ids: HashSet<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), EVENTS);
    let accounted = |results: &[modelbus::bus::Delivery], dls: &[modelbus::bus::Delivery]| -> HashSet<String> {
        results
            .iter()
            .filter_map(|d| header(d, "ce_causationid"))
            .chain(dls.iter().filter_map(|d| header(d, "ce_id")))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut results, mut dls) = (Vec::new(), Vec::new());
    let mut rf = kafka::follow_when_ready(&bus, &n.results, Instant::now() + Duration::from_secs(120)).await;
    let mut df = kafka::follow_when_ready(&bus, &n.dlq, Instant::now() + Duration::from_secs(120)).await;
    while Instant::now() < deadline && accounted(&results, &dls).len() < EVENTS {
        results.extend(rf.next_batch(20_000, Duration::from_millis(200)).await.unwrap());
        dls.extend(df.next_batch(20_000, Duration::from_millis(50)).await.unwrap());
    }
    for w in &workers {
        common::signal(w, libc::SIGTERM);
    }
    for w in &mut workers {
        w.wait().unwrap();
    }
    let mut result_ids: HashMap<String, HashSet<String>> = HashMap::new();
    for d in &results {
        let cause = header(d, "ce_causationid").expect("results carry ce_causationid");
        result_ids.entry(cause).or_default().insert(header(d, "ce_id").unwrap());
    }
    let mut dl_ids: HashMap<String, HashSet<String>> = HashMap::new();
    for d in &dls {
        let id = header(d, "ce_id").unwrap_or_default();
        dl_ids.entry(id).or_default().insert(header(d, "ce_dlid").expect("dead letters carry dlid"));
    }
    let mut missing = 0;
    for (id, kind) in &sent {
        let r = result_ids.get(id).map_or(0, HashSet::len);
        let d = dl_ids.get(id).map_or(0, HashSet::len);
        // Events without a readable id (bad ones) are checked by count below.
        if id.is_empty() {
            continue;
        }
        match kind {
            Kind::Good => assert!(r == 1 && d == 0, "good event {id}: {r} result ids, {d} dead-letter ids"),
            _ => assert!(r == 0 && d == 1, "bad event {id} ({kind:?}): {r} result ids, {d} dead-letter ids"),
        }
        if r + d == 0 {
            missing += 1;
        }
    }
    assert_eq!(missing, 0);
    let distinct =
        result_ids.values().map(HashSet::len).sum::<usize>() + dl_ids.values().map(HashSet::len).sum::<usize>();
    let records = results.len() + dls.len();
    eprintln!(
        "{EVENTS} events: {} result records, {} dead-letter records, {} repeats",
        results.len(),
        dls.len(),
        records - distinct
    );
    assert!(records > distinct, "the kills must cause observable redeliveries");
}
