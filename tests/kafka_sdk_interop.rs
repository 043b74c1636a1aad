//! Events from the official Python CloudEvents SDK (2.x), as a new user's
//! producer sends them: binary and structured mode (with the content types
//! the SDK really writes, `application/json` and none included), with and
//! without `time`, trace context and a record key. Every one is scored; a
//! keyed event's result keeps its key; an event without trace context gets
//! a trace derived from its identity; both kinds are counted in /metrics.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kafka::{self, header};
use modelbus::bus::Bus;
use modelbus::event::TraceParent;

fn sdk_events(brokers: &str, topic: &str, rounds: u32) -> Vec<serde_json::Value> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: `.ci/run` creates the venv", python.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ce_sdk.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--brokers", brokers, "--topic", topic, "--count", &rounds.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "ce_sdk.py failed");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_the_python_cloudevents_sdk_are_scored_in_every_form() {
    let n = kafka::names("sdk");
    let c = kafka::claims(&n, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let text = std::fs::read_to_string(&c.config_path).unwrap();
    std::fs::write(&c.config_path, format!("{text}\n[http]\nlisten = \"{addr}\"\n")).unwrap();
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let sent = sdk_events(&kafka::brokers(), &n.input, 2);
    assert_eq!(sent.len(), 64, "4 modes x time x trace x key, twice");
    let log = c.dir.path().join("w.log");
    let mut w = common::spawn_worker(&c.config_path, &log);

    let by_id: HashMap<String, &serde_json::Value> =
        sent.iter().map(|e| (e["id"].as_str().unwrap().to_string(), e)).collect();
    let ids: HashSet<String> = by_id.keys().cloned().collect();
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    let results = kafka::read_covering(&bus, &n.results, &ids, cause, Duration::from_secs(90)).await;
    let body = http_get(&addr, "/metrics").await;
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success());
    let dead = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(2)).await;
    assert!(
        dead.is_empty(),
        "nothing is dead-lettered: {:?}",
        dead.first().map(|d| d
            .record
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>())
    );

    let mut seen = HashSet::new();
    for r in &results {
        let id = cause(r).unwrap();
        let e = by_id.get(&id).unwrap_or_else(|| panic!("a result for an unknown event {id}"));
        seen.insert(id.clone());
        let tp: TraceParent = header(r, "ce_traceparent").unwrap().parse().unwrap();
        let want_trace = match e["traceparent"].as_str() {
            Some(t) => t.parse::<TraceParent>().unwrap().trace_id,
            // No trace context: a trace derived from (source, id), the same on every redelivery.
            None => TraceParent::derived(e["source"].as_str().unwrap(), &id).trace_id,
        };
        assert_eq!(tp.trace_id, want_trace, "{e}");
        match e["key"].as_str() {
            // The record key is the partition key: the result keeps it.
            Some(k) => assert_eq!(r.record.key.as_deref(), Some(k.as_bytes()), "{e}"),
            None => assert_eq!(r.record.key.as_deref(), Some(id.as_bytes()), "no key, no subject: keyed by id: {e}"),
        }
    }
    assert_eq!(seen, ids, "every event, in every form, was scored");
    assert_eq!(metric(&body, modelbus::telemetry::names::WITHOUT_TRACE), 32, "{body}");
    assert_eq!(metric(&body, modelbus::telemetry::names::WITHOUT_TIME), 32, "{body}");
}
