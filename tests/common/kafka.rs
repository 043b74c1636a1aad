//! Kafka test helpers: the claims deployment pointed at the broker that
//! `.ci/run` starts (`MODELBUS_TEST_KAFKA`, default 127.0.0.1:9092), with
//! topic and group names unique to the test, since the broker is shared by
//! every test of the run.
//!
//! Accommodations for the test broker live here, never in product code:
//! - it joins groups in about session.timeout/2, so sessions are 6 s;
//! - its long-poll fetch does not return early, so fetch.wait.max.ms is 10;
//! - its high watermark is wrong, so reads go until an expected count.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use modelbus::bus::{Bus, Delivery, Follower, ReadFrom};

use super::Claims;

/// The broker address; panics (fails the test) when nothing listens there.
pub fn brokers() -> String {
    listening("MODELBUS_TEST_KAFKA", "127.0.0.1:9092", "the Kafka broker")
}

/// The `host:port` in env var `var` (or `default`); panics (fails the
/// test) when nothing listens there.
pub fn listening(var: &str, default: &str, what: &str) -> String {
    let addr = std::env::var(var).unwrap_or_else(|_| default.into());
    let sock: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{var}={addr} is not host:port: {e}"));
    if let Err(e) = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3)) {
        panic!("{what} at {addr} is unreachable ({e}); `.ci/run` starts it");
    }
    addr
}

/// Names unique to one test: `claims-<tag>`, `risk-scored-<tag>`, group `risk-<tag>`.
pub struct Names {
    pub input: String,
    pub results: String,
    pub dlq: String,
    pub group: String,
}

pub fn names(tag: &str) -> Names {
    let sfx = format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    Names {
        input: format!("claims-{sfx}"),
        results: format!("risk-scored-{sfx}"),
        dlq: format!("claims-{sfx}.dlq"),
        group: format!("risk-{sfx}"),
    }
}

/// Rewrites the claims example's config for Kafka and the given names.
/// `worker_extra` lands inside the `[[workers]]` table.
pub fn config_edit(n: &Names, worker_extra: &str) -> impl FnOnce(String) -> String {
    let (input, results, group) = (n.input.clone(), n.results.clone(), n.group.clone());
    let extra = worker_extra.to_string();
    let brokers = brokers();
    move |text: String| {
        let bus = format!(
            "[bus]\nkind = \"kafka\"\n\n[bus.kafka]\nbrokers = \"{brokers}\"\npartitions = 4\n\
             session_timeout = \"6s\"\n\n[bus.kafka.consumer_properties]\n\"fetch.wait.max.ms\" = \"10\"\n"
        );
        let out = text
            .replace("[bus]\nkind = \"embedded\"\n\n[bus.embedded]\npartitions = 4\n", &bus)
            .replace("topic = \"claims\"", &format!("topic = \"{input}\"\ngroup = \"{group}\"\n{extra}"))
            .replace("topic = \"risk-scored\"", &format!("topic = \"{results}\""));
        assert!(out.contains("kind = \"kafka\""), "the example config changed shape:\n{out}");
        out
    }
}

pub fn claims(n: &Names, worker_extra: &str) -> Claims {
    super::claims(config_edit(n, worker_extra))
}

/// Reads `topic` from the beginning until `want` records arrived or
/// `timeout` passed (never "to the end": the watermark is not trusted).
pub async fn read_n(bus: &Bus, topic: &str, want: usize, timeout: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut f = follow_when_ready(bus, topic, deadline).await;
    while out.len() < want && Instant::now() < deadline {
        out.extend(f.next_batch(want - out.len(), Duration::from_millis(200)).await.unwrap());
    }
    out
}

/// Keeps reading `topic` until the records' distinct values of `key`
/// cover `want` (duplicates allowed) or `timeout` passes.
pub async fn read_covering(
    bus: &Bus,
    topic: &str,
    want: &HashSet<String>,
    key: impl Fn(&Delivery) -> Option<String>,
    timeout: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + timeout;
    let mut f = follow_when_ready(bus, topic, deadline).await;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    while Instant::now() < deadline && !want.iter().all(|w| seen.contains(w)) {
        for d in f.next_batch(10_000, Duration::from_millis(200)).await.unwrap() {
            if let Some(k) = key(&d) {
                seen.insert(k);
            }
            out.push(d);
        }
    }
    out
}

/// A reader of `topic` from its beginning, waiting until the topic exists
/// (a worker or the first result creates it) or `deadline` passes.
pub async fn follow_when_ready(bus: &Bus, topic: &str, deadline: Instant) -> Follower {
    loop {
        match bus.follow(topic, ReadFrom::Beginning).await {
            Ok(f) => return f,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("cannot read {topic}: {e}"),
        }
    }
}

pub fn header(d: &Delivery, name: &str) -> Option<String> {
    d.record.header_str(name).map(str::to_string)
}
