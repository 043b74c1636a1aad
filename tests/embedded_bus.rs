//! The embedded bus: durable across kill -9, consumer groups with fenced
//! leases, per-key partitioning, retention that spares dead letters.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use modelbus::bus::embedded::EmbeddedBusConfig;
use modelbus::bus::{Bus, Commit, ReadFrom, TopicPartition};
use modelbus::config::BusConfig;

fn bus_config(dir: &std::path::Path, edit: impl FnOnce(&mut EmbeddedBusConfig)) -> modelbus::config::Config {
    let mut text = String::from("data_dir = \"data\"\n");
    text.push_str("[bus.embedded]\npartitions = 4\n");
    let mut c = modelbus::config::load_str(&text, dir).unwrap();
    let BusConfig::Embedded(embedded) = &mut c.bus else { panic!("the default bus is not the embedded one") };
    edit(embedded);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("modelbus.toml");
    std::fs::write(&cfg_path, "data_dir = \"data\"\n").unwrap();
    let lines: String = (0..400_000).map(|i| format!("record-{i:07}\n")).collect();
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, lines).unwrap();
    let mut child = Command::new(common::bin())
        .args(["publish", "--raw", "--lines", "--verbose", "--chunk", "500", "--topic", "t", "--key", "k", "--config"])
        .arg(&cfg_path)
        .arg("--file")
        .arg(&input)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0usize;
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(n) = line.trim().strip_prefix("acked ") {
            acked = n.parse().unwrap();
            if acked >= 20_000 {
                common::signal(&child, libc::SIGKILL);
                break;
            }
        }
        line.clear();
    }
    child.wait().unwrap();
    assert!((20_000..400_000).contains(&acked), "the kill must land mid-stream (acked {acked})");
    let config = bus_config(dir.path(), |_| {});
    let bus = Bus::open(&config).unwrap();
    let records = common::read_all(&bus, "t").await;
    assert!(records.len() >= acked, "lost acknowledged records: {} < {acked}", records.len());
    // One key → one partition, in publish order, no gaps.
    for (i, d) in records.iter().enumerate() {
        assert_eq!(d.record.value, format!("record-{i:07}").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_cannot_commit_after_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let config = bus_config(dir.path(), |b| {
        b.session_timeout = Duration::from_millis(400);
        b.heartbeat_interval = Duration::from_millis(50);
        b.partitions = 2;
    });
    let bus = Bus::open(&config).unwrap();
    let topics = vec!["t".to_string()];
    bus.publish("t", (0..10).map(|i| common::raw(format!("v{i}").as_bytes(), &format!("k{i}"))).collect())
        .await
        .unwrap();
    let mut a = bus.consumer("g", &topics).await.unwrap();
    assert_eq!(a.assignment().len(), 2, "alone, A owns every partition");
    let polled = a.poll(100, Duration::from_millis(100)).await.unwrap();
    assert_eq!(polled.deliveries.len(), 10);
    // A stalls (no heartbeats) past the session timeout; B takes over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut b = bus.consumer("g", &topics).await.unwrap();
    assert_eq!(b.assignment().len(), 2, "B takes over the stalled member's partitions");
    // A wakes up and tries to commit its stale progress: refused by generation.
    let offsets = a.assignment().into_iter().map(|tp| (tp, 5)).collect();
    let outcome = a.commit(Commit { offsets, ..Default::default() }).await.unwrap();
    assert_eq!(outcome.fenced.len(), 2, "both stale commits are fenced");
    // B sees nothing committed, so it re-reads everything.
    let polled = b.poll(100, Duration::from_millis(100)).await.unwrap();
    assert_eq!(polled.deliveries.len(), 10);
    // B's own commits go through.
    let offsets = b.assignment().into_iter().map(|tp| (tp, 1)).collect();
    assert!(b.commit(Commit { offsets, ..Default::default() }).await.unwrap().fenced.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_a_closed_one_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let config = bus_config(dir.path(), |b| {
        b.session_timeout = Duration::from_millis(600);
        b.heartbeat_interval = Duration::from_millis(50);
    });
    let bus = Bus::open(&config).unwrap();
    let topics = vec!["t".to_string()];
    let mut a = bus.consumer("g", &topics).await.unwrap();
    let mut b = bus.consumer("g", &topics).await.unwrap();
    let mut ok = false;
    for _ in 0..100 {
        // Leases are handed over by the next commit (here: an empty one).
        for c in [&mut a, &mut b] {
            c.maintain().await.unwrap();
            c.commit(Commit::default()).await.unwrap();
        }
        ok = a.assignment().len() == 2 && b.assignment().len() == 2;
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(ok, "4 partitions split 2/2: a={:?} b={:?}", a.assignment(), b.assignment());
    let mine: Vec<TopicPartition> = a.assignment();
    assert!(mine.iter().all(|tp| !b.assignment().contains(tp)), "no partition is owned twice");
    a.close().await.unwrap();
    let mut took_over = false;
    for _ in 0..100 {
        b.maintain().await.unwrap();
        if b.assignment().len() == 4 {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(took_over, "B owns all 4 partitions once A leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_records_but_spares_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let config = bus_config(dir.path(), |b| {
        b.retention_records = Some(5);
        b.partitions = 1;
        b.heartbeat_interval = Duration::from_millis(20);
    });
    let bus = Bus::open(&config).unwrap();
    bus.ensure_topic("t.dlq", false).await.unwrap();
    let recs = |n: usize| (0..n).map(|i| common::raw(format!("{i}").as_bytes(), "k")).collect::<Vec<_>>();
    bus.publish("t", recs(20)).await.unwrap();
    bus.publish("t.dlq", recs(20)).await.unwrap();
    // Retention runs with group maintenance.
    let mut c = bus.consumer("g", &["t".to_string()]).await.unwrap();
    let mut trimmed = false;
    for _ in 0..400 {
        c.maintain().await.unwrap();
        if bus.read("t", ReadFrom::Beginning, 100).await.unwrap().len() <= 5 {
            trimmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(trimmed, "retention keeps at most 5 records of `t`");
    assert_eq!(bus.read("t.dlq", ReadFrom::Beginning, 100).await.unwrap().len(), 20, "dead letters exempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_bus_reports_lag_per_owned_partition() {
    let c = common::claims(|t| t);
    let bus = modelbus::bus::Bus::open(&c.config).unwrap();
    let mut consumer = bus.consumer("lag-group", &["lagged".to_string()]).await.unwrap();
    let probe = consumer.lag_probe();
    let lag = |p: &modelbus::bus::LagProbe| {
        let p = p.clone();
        std::thread::spawn(move || p.read()).join().unwrap().unwrap().iter().map(|(_, n)| *n).sum::<u64>()
    };
    assert_eq!(lag(&probe), 0);
    let recs = (0..12).map(|i| common::raw(b"x", &format!("k{i}"))).collect();
    bus.publish("lagged", recs).await.unwrap();
    assert_eq!(lag(&probe), 12, "nothing committed: everything is lag");
    let polled = consumer.poll(100, std::time::Duration::from_secs(1)).await.unwrap();
    assert_eq!(polled.deliveries.len(), 12);
    let mut commit = modelbus::bus::Commit::default();
    for d in &polled.deliveries {
        let next = commit.offsets.iter().position(|(tp, _)| tp == &d.tp);
        match next {
            Some(i) => commit.offsets[i].1 = commit.offsets[i].1.max(d.offset + 1),
            None => commit.offsets.push((d.tp.clone(), d.offset + 1)),
        }
    }
    consumer.commit(commit).await.unwrap();
    assert_eq!(lag(&probe), 0, "all committed");
    consumer.close().await.unwrap();
    assert!(probe.read().is_none(), "a closed consumer's probe reports nothing");
}
