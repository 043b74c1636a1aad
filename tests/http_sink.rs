//! The CloudEvents HTTP sink end to end: a worker process on the embedded
//! bus posts the claims example's results to a receiver in this test, in
//! each content mode of the CloudEvents HTTP binding (binary, structured,
//! batch), and every request is read back with the CloudEvents Python SDK
//! (`cloudevents` 2.2.0, `cloudevents.core.bindings.http`). Configured
//! headers (their values from the environment) arrive; a 500 is retried.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelbus::bus::Bus;
use modelbus::event::Event;
use modelbus::example::Generator;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const KEY_ENV: &str = "MODELBUS_TEST_HTTP_SINK_KEY";
const KEY: &str = "test-key-4f1c2a9e";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: String,
    /// The status it was answered with.
    status: u16,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
    }
    /// The ids of the events in it: `ce-id` (binary), the body's `id`
    /// (structured) or each element's (batch).
    fn ids(&self) -> Vec<String> {
        ids_of(&self.headers, &self.body)
    }
}

fn ids_of(headers: &[(String, String)], body: &str) -> Vec<String> {
    if let Some((_, id)) = headers.iter().find(|(k, _)| k == "ce-id") {
        return vec![id.clone()];
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(events)) => events.iter().map(|e| e["id"].as_str().unwrap_or("").to_string()).collect(),
        Ok(e) => vec![e["id"].as_str().unwrap_or("").to_string()],
        Err(_) => vec![],
    }
}

/// Decides the status of a request from how many requests with its
/// (first) event id came before it.
type Script = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    addr: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    async fn start(script: Script) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let r = Receiver { addr, seen: seen.clone() };
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                tokio::spawn(serve(conn, seen.clone(), script.clone()));
            }
        });
        r
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }
}

/// HTTP/1.1 by hand, keep-alive: each request's headers and body, answered
/// with the scripted status and no body.
async fn serve(conn: tokio::net::TcpStream, seen: Arc<Mutex<Vec<Request>>>, script: Script) {
    let (rd, mut wr) = conn.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if rd.read_exact(&mut body).await.is_err() {
            return;
        }
        let body = String::from_utf8(body).unwrap();
        let status = {
            let mut seen = seen.lock().unwrap();
            let first = ids_of(&headers, &body).into_iter().next().unwrap_or_default();
            let before = seen.iter().filter(|r| r.ids().first() == Some(&first)).count();
            let status = script(before);
            seen.push(Request { headers, body, status });
            status
        };
        let answer = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        if wr.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The claims example with its sink replaced by an HTTP sink to `url` in
/// `mode`, with `extra` config lines, and the retry settings `retry`.
fn deployment(url: &str, mode: &str, extra: &str, retry: &str) -> common::Claims {
    let sink = format!(
        "kind = \"http\"\nurl = \"{url}\"\nmode = \"{mode}\"\ntimeout = \"5s\"\nmax_concurrency = 4\n\
         allow_private = true\n{extra}"
    );
    let retry = retry.to_string();
    common::claims(move |t| {
        let t = t.replace("kind = \"topic\"\ntopic = \"risk-scored\"", &sink);
        let start = t.find("[workers.retry]").unwrap();
        let end = start + t[start..].find("\n\n").unwrap();
        format!("{}[workers.retry]\n{retry}{}", &t[..start], &t[end..])
    })
}

const FAST_RETRY: &str = "initial_delay = \"50ms\"\nmultiplier = 1.5\nmax_delay = \"200ms\"\nmax_attempts = 8\n\
                          max_horizon = \"1m\"";

fn spawn(c: &common::Claims) -> Child {
    let env = [(KEY_ENV, KEY), ("RUST_LOG", "info")];
    common::spawn_worker_with(&c.config_path, &c.dir.path().join("worker.log"), &env)
}

fn log(c: &common::Claims) -> String {
    std::fs::read_to_string(c.dir.path().join("worker.log")).unwrap_or_default()
}

async fn started(c: &common::Claims) {
    let ok = common::wait_for_log(&c.dir.path().join("worker.log"), "worker started", Duration::from_secs(60)).await;
    assert!(ok, "the worker starts: {}", log(c));
}

fn stop(mut w: Child) {
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success(), "the worker exits cleanly");
}

async fn publish(bus: &Bus, events: &[Event]) {
    bus.publish("claims", events.iter().map(Event::to_record).collect()).await.unwrap();
}

fn claims(n: usize, seed: u64) -> Vec<Event> {
    let mut g = Generator::new(seed, 0.0);
    (0..n).map(|_| g.claim(chrono::Utc::now())).collect()
}

/// Distinct event ids in requests answered 2xx.
fn accepted(r: &Receiver) -> HashSet<String> {
    r.requests().iter().filter(|q| (200..300).contains(&q.status)).flat_map(|q| q.ids()).collect()
}

/// Reads every request back with the CloudEvents Python SDK's HTTP binding
/// (`from_http` for binary and structured; each element of a batch as a
/// structured event) and returns what it decoded, one object per event:
/// `id`, `type`, `specversion`, `traceparent`, `causationid`, `data`.
/// Panics (the test fails) when Python or the SDK is missing.
fn read_with_python(dir: &Path, requests: &[Request]) -> Vec<Value> {
    let file = dir.join("requests.json");
    let list: Vec<Value> = requests
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> =
                r.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            serde_json::json!({ "headers": headers, "body": r.body })
        })
        .collect();
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let script = r#"
import json, sys
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

requests = json.load(open(sys.argv[1]))
assert requests, "no requests"
fmt = JSONFormat()
out = []

def emit(e):
    out.append({
        "id": e.get_id(),
        "type": e.get_type(),
        "specversion": e.get_specversion(),
        "source": e.get_source(),
        "time": e.get_time().isoformat() if e.get_time() else None,
        "traceparent": e.get_extension("traceparent"),
        "causationid": e.get_extension("causationid"),
        "datacontenttype": e.get_datacontenttype(),
        "data": e.get_data(),
    })

for r in requests:
    h, body = r["headers"], r["body"].encode()
    ct = h.get("content-type", "")
    if ct.startswith("application/cloudevents-batch+json"):
        events = json.loads(body)
        assert isinstance(events, list) and events, "a batch is a non-empty JSON array"
        for ev in events:
            msg = HTTPMessage(headers={"content-type": "application/cloudevents+json; charset=utf-8"},
                              body=json.dumps(ev).encode())
            emit(from_http(msg, fmt))
    else:
        emit(from_http(HTTPMessage(headers=h, body=body), fmt))
print(json.dumps(out))
"#;
    // The checkout's venv (scripts/test.sh installs requirements-dev.txt
    // there); no fallback: without it this test fails.
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (the CloudEvents SDK check needs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python decoding failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("python output is not JSON ({e}): {stdout}"))
}

/// Runs 20 claims through a worker whose sink is `mode`, and checks every
/// request with the Python SDK: the ids it reads are the results' ids (one
/// event per result, each caused by an input), with `traceparent` carried.
async fn mode_round_trip(mode: &str) -> Vec<Request> {
    let rx = Receiver::start(Arc::new(|_| 200)).await;
    let c = deployment(&rx.url(), mode, "", FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    let events = claims(20, 3);
    publish(&bus, &events).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 20 }).await, "{}", log(&c));
    stop(w);

    let requests = rx.requests();
    let decoded = read_with_python(c.dir.path(), &requests);
    assert_eq!(decoded.len(), 20, "one event per result: {decoded:?}");
    let ids: Vec<String> = requests.iter().flat_map(Request::ids).collect();
    let sdk_ids: Vec<&str> = decoded.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(sdk_ids, ids, "the SDK reads the results' ids");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20, "20 distinct results");
    let inputs: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    for e in &decoded {
        assert_eq!(e["type"], "RiskScored", "{e}");
        assert_eq!(e["specversion"], "1.0", "{e}");
        assert_eq!(e["source"].as_str().map(str::is_empty), Some(false), "{e}");
        assert!(e["time"].is_string(), "{e}");
        assert_eq!(e["traceparent"].as_str().map(|t| t.starts_with("00-")), Some(true), "traceparent carried: {e}");
        assert!(inputs.contains(e["causationid"].as_str().unwrap()), "caused by an input: {e}");
        assert!(e["data"]["risk_score"].is_number(), "{e}");
    }
    assert_eq!(common::count(&bus, "claims.dlq").await, 0);
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_reads_back_with_the_cloudevents_sdk() {
    let requests = mode_round_trip("binary").await;
    assert_eq!(requests.len(), 20, "one request per result");
    for r in &requests {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("ce-specversion"), "1.0");
        assert!(r.header("ce-traceparent").starts_with("00-"), "{r:?}");
        assert_eq!(r.header("ce-worker"), "claims-risk");
        let data: Value = serde_json::from_str(&r.body).unwrap();
        assert!(data["risk_score"].is_number(), "the body is the data: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_reads_back_with_the_cloudevents_sdk() {
    let requests = mode_round_trip("structured").await;
    assert_eq!(requests.len(), 20, "one request per result");
    for r in &requests {
        assert_eq!(r.header("content-type"), "application/cloudevents+json; charset=utf-8");
        assert_eq!(r.header("ce-id"), "", "no ce- headers in structured mode");
        let e: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(e["worker"], "claims-risk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_reads_back_with_the_cloudevents_sdk() {
    let requests = mode_round_trip("batch").await;
    assert!(requests.len() < 20, "results batched: {} requests", requests.len());
    for r in &requests {
        assert_eq!(r.header("content-type"), "application/cloudevents-batch+json; charset=utf-8");
        assert!(serde_json::from_str::<Value>(&r.body).unwrap().is_array());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_header_arrives_with_its_value_from_the_environment() {
    // The test loads the config too (to open the bus), so it needs the variable.
    std::env::set_var(KEY_ENV, KEY);
    let rx = Receiver::start(Arc::new(|_| 200)).await;
    let extra = format!("headers = {{ \"aeg-sas-key\" = \"${{{KEY_ENV}}}\" }}");
    let c = deployment(&rx.url(), "structured", &extra, FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(3, 7)).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 3 }).await, "{}", log(&c));
    stop(w);
    let requests = rx.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.header("aeg-sas-key") == KEY), "{requests:?}");
    assert!(!log(&c).contains(KEY), "the header's value is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_and_then_accepted_with_no_dead_letter() {
    let rx = Receiver::start(Arc::new(|before| if before < 1 { 500 } else { 200 })).await;
    let c = deployment(&rx.url(), "binary", "", FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(3, 5)).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 3 }).await, "{}", log(&c));
    stop(w);

    let requests = rx.requests();
    for id in accepted(&rx) {
        let statuses: Vec<u16> = requests.iter().filter(|r| r.ids().first() == Some(&id)).map(|r| r.status).collect();
        assert_eq!(statuses, [500, 200], "{id}: {requests:?}");
    }
    read_with_python(c.dir.path(), &requests);
    assert_eq!(common::count(&bus, "claims.dlq").await, 0, "no dead letter: {}", log(&c));
}
