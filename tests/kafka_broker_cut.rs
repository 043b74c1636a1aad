//! A broker cut under load: a worker on Kafka loses its broker for 30 s
//! while paced events flow, and gets it back. The broker is a dedicated
//! tansu that `.ci/run` starts advertising a TCP proxy's address
//! (`MODELBUS_TEST_KAFKA_CUT`; the broker itself listens on
//! `MODELBUS_TEST_KAFKA_CUT_UPSTREAM`), so every client connection, the
//! first and the redirected ones, goes through the proxy this test runs and
//! cuts. Must hold: no process exits, nothing is lost, no healthy event is
//! dead-lettered. The time from restore to the first new result is printed.

mod common;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka;
use modelbus::bus::Bus;
use modelbus::event::Event;
use modelbus::example::Generator;

/// The proxy: socat forking a connection to the broker per client, in its
/// own process group so that a cut closes every open connection too.
fn proxy(listen: &str, upstream: &str) -> Child {
    let (host, port) = listen.rsplit_once(':').unwrap();
    Command::new("socat")
        .arg(format!("TCP-LISTEN:{port},bind={host},reuseaddr,fork"))
        .arg(format!("TCP:{upstream}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("socat is installed by .ci/run")
}

fn cut(p: Child) {
    // The whole group: the listener and every forked connection.
    unsafe { libc::kill(-(p.id() as i32), libc::SIGKILL) };
    let _ = { p }.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_broker_cut_under_load_loses_nothing_and_kills_nothing() {
    let upstream =
        kafka::listening("MODELBUS_TEST_KAFKA_CUT_UPSTREAM", "127.0.0.1:9097", "the broker behind the cut proxy");
    let endpoint = std::env::var("MODELBUS_TEST_KAFKA_CUT").unwrap_or_else(|_| "127.0.0.1:9098".into());
    let mut p = Some(proxy(&endpoint, &upstream));
    assert!(
        common::wait_until(Duration::from_secs(10), || async {
            std::net::TcpStream::connect(endpoint.as_str()).is_ok()
        })
        .await,
        "the proxy listens"
    );

    let n = kafka::names("cut");
    let c = common::claims(|t| {
        kafka::config_edit(&n, "")(t)
            .replace(&format!("brokers = \"{}\"", kafka::brokers()), &format!("brokers = \"{endpoint}\""))
            // A publish waits out the cut instead of failing (librdkafka retries).
            .replace("session_timeout = \"6s\"", "session_timeout = \"6s\"\nrequest_timeout = \"3m\"")
    });
    let bus = Arc::new(Bus::open(&c.config).unwrap());
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("worker.log");
    let mut worker = common::spawn_worker_with(&c.config_path, &log, &[("RUST_LOG", "info")]);
    assert!(common::wait_for_log(&log, "rebalance", Duration::from_secs(60)).await, "the worker joins");

    let total = 20_000;
    let mut g = Generator::new(21, 0.0);
    let events: Vec<Event> = (0..total).map(|_| g.claim(chrono::Utc::now())).collect();
    let ids: HashSet<String> = events.iter().map(|e| e.data["claim_id"].as_str().unwrap().to_string()).collect();
    let publisher = {
        let (bus, input) = (bus.clone(), n.input.clone());
        tokio::spawn(async move {
            // 20,000 over about 40 s, in chunks of 100.
            let start = Instant::now();
            for (i, chunk) in events.chunks(100).enumerate() {
                let due = start + Duration::from_millis(200 * i as u64);
                tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
                bus.publish(&input, chunk.iter().map(Event::to_record).collect()).await.unwrap();
            }
        })
    };
    // A client reading the results all along, noting when each arrived.
    let claim_of = |d: &modelbus::bus::Delivery| {
        serde_json::from_slice::<serde_json::Value>(&d.record.value)
            .ok()
            .and_then(|v| v["claim_id"].as_str().map(str::to_string))
    };
    let reader = {
        let (bus, topic, ids) = (bus.clone(), n.results.clone(), ids.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut f = kafka::follow_when_ready(&bus, &topic, deadline).await;
            let (mut seen, mut arrivals) = (HashSet::new(), Vec::new());
            while Instant::now() < deadline && seen.len() < ids.len() {
                match f.next_batch(10_000, Duration::from_millis(200)).await {
                    Ok(batch) => {
                        let now = Instant::now();
                        for d in batch {
                            if let Some(claim) = claim_of(&d) {
                                seen.insert(claim);
                            }
                            arrivals.push(now);
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            (seen, arrivals)
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    cut(p.take().unwrap());
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker lives through the cut");
    p = Some(proxy(&endpoint, &upstream));
    let restored = Instant::now();

    let (got, arrivals) = reader.await.unwrap();
    publisher.await.unwrap();
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(5)).await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still running");
    common::signal(&worker, libc::SIGTERM);
    assert!(worker.wait().unwrap().success(), "and stops cleanly");
    cut(p.take().unwrap());

    let before_cut = arrivals.iter().filter(|t| **t < cut_at).count();
    let first_after = arrivals.iter().find(|t| **t > restored).map(|t| *t - restored);
    let lost = ids.difference(&got).count();
    let wlog = std::fs::read_to_string(&log).unwrap();
    println!(
        "broker cut: events {total}, results read {} ({} distinct, {before_cut} before the cut), lost {lost}, \
         dead letters {}, cut {:?}, restore to the first new result {first_after:?}, to the last {:?}",
        arrivals.len(),
        got.len(),
        dls.len(),
        restored - cut_at,
        arrivals.last().map(|t| t.saturating_duration_since(restored)),
    );
    assert_eq!(lost, 0, "nothing lost");
    assert!(dls.is_empty(), "no healthy event dead-lettered: {:?}", dls.first().map(|d| &d.record.headers));
    assert!(!wlog.contains("worker stopped"), "{wlog}");
}
