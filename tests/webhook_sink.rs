//! The webhook sink end to end: a worker process on the embedded bus posts
//! the claims example's results to a receiver in this test, which records
//! every request and answers a scripted status. Signatures are checked with
//! the reference Python library (`standardwebhooks`); retries keep
//! `webhook-id` and re-sign; a 400 dead-letters its input alone at stage
//! `emit`; a 410 disables the endpoint until restart.

mod common;

use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelbus::bus::Bus;
use modelbus::event::Event;
use modelbus::example::Generator;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// `whsec_` + base64 of a 24-byte key.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_ENV: &str = "MODELBUS_TEST_WEBHOOK_SECRET";

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
    fn id(&self) -> &str {
        self.header("webhook-id")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Decides the status of a request from its body and how many requests
/// with its `webhook-id` came before it.
type Script = Arc<dyn Fn(&Value, usize) -> u16 + Send + Sync>;

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
        format!("http://{}/hook", self.addr)
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
            let id = headers.iter().find(|(k, _)| k == "webhook-id").map(|(_, v)| v.clone()).unwrap_or_default();
            let before = seen.iter().filter(|r| r.id() == id).count();
            let status = script(&serde_json::from_str(&body).unwrap_or(Value::Null), before);
            seen.push(Request { headers, body, status });
            status
        };
        let answer = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        if wr.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The claims example with its sink replaced by a webhook to `url`, and
/// the retry settings `retry` (`initial_delay = ...` lines).
fn deployment(url: &str, retry: &str) -> common::Claims {
    let sink = format!(
        "kind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"{SECRET_ENV}\"\ntimeout = \"5s\"\n\
         max_concurrency = 4\nallow_private = true"
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
    let env = [(SECRET_ENV, SECRET), ("RUST_LOG", "info")];
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

/// Distinct `webhook-id`s answered 2xx.
fn accepted(r: &Receiver) -> std::collections::HashSet<String> {
    r.requests().iter().filter(|q| (200..300).contains(&q.status)).map(|q| q.id().to_string()).collect()
}

/// Checks in Python with the reference library (`standardwebhooks`): every request verifies; tampered, wrongly keyed and
/// stale ones do not. Panics (the test fails) when Python is missing.
fn verify_with_python(dir: &Path, requests: &[Request]) {
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
from datetime import datetime, timedelta, timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

secret, path = sys.argv[1], sys.argv[2]
requests = json.load(open(path))
assert requests, "no requests"
wh = Webhook(secret)
wrong = Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")

def refused(hook, body, headers):
    try:
        hook.verify(body, headers)
    except WebhookVerificationError:
        return True
    return False

for r in requests:
    h, body = r["headers"], r["body"]
    data = wh.verify(body, h)
    assert data["id"] == h["webhook-id"], (data, h)
    assert refused(wh, body.replace("RiskScored", "RiskScorex"), h), "a tampered body verified"
    assert refused(wrong, body, h), "a wrong secret verified"
    old = datetime.now(tz=timezone.utc) - timedelta(hours=1)
    stale = dict(h)
    stale["webhook-timestamp"] = str(int(old.timestamp()))
    stale["webhook-signature"] = wh.sign(h["webhook-id"], old, body)
    assert refused(wh, body, stale), "an hour-old timestamp verified"
print(f"verified {len(requests)}")
"#;
    // The checkout's venv (scripts/test.sh installs requirements-dev.txt
    // there); no fallback: without it this test fails.
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", script, SECRET])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (the standardwebhooks check needs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python verification failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), format!("verified {}", requests.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_verifies_with_the_standard_webhooks_library() {
    let rx = Receiver::start(Arc::new(|_, _| 200)).await;
    let c = deployment(&rx.url(), FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    let events = claims(20, 3);
    publish(&bus, &events).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 20 }).await, "{}", log(&c));
    stop(w);

    let requests = rx.requests();
    assert_eq!(requests.len(), 20, "one request per result");
    for r in &requests {
        assert_eq!(r.header("content-type"), "application/json");
        let body = r.json();
        assert_eq!(body["type"], "RiskScored");
        assert_eq!(body["id"], r.id());
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["source"].as_str().map(str::is_empty), Some(false));
        assert_eq!(body["traceparent"].as_str().map(|t| t.starts_with("00-")), Some(true));
        assert_eq!(body["worker"], "claims-risk");
        assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok(), "{body}");
        assert!(body["data"]["risk_score"].is_number(), "{body}");
        let causation = body["causationid"].as_str().unwrap();
        assert!(events.iter().any(|e| e.id == causation), "{body}");
        assert!(r.header("webhook-signature").starts_with("v1,"));
    }
    verify_with_python(c.dir.path(), &requests);
    assert_eq!(common::count(&bus, "claims.dlq").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_the_same_id_and_fresh_signatures() {
    // 500 twice, then 200. Retries a second apart, so each attempt's
    // timestamp (whole seconds) differs from the last.
    let rx = Receiver::start(Arc::new(|_, before| if before < 2 { 500 } else { 200 })).await;
    let retry = "initial_delay = \"1100ms\"\nmultiplier = 1.0\nmax_delay = \"1100ms\"\nmax_attempts = 5\n\
                 max_horizon = \"1m\"";
    let c = deployment(&rx.url(), retry);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(3, 5)).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 3 }).await, "{}", log(&c));
    stop(w);

    let requests = rx.requests();
    assert_eq!(requests.len(), 9, "three attempts per result: {requests:?}");
    for id in accepted(&rx) {
        let attempts: Vec<&Request> = requests.iter().filter(|r| r.id() == id).collect();
        assert_eq!(attempts.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200]);
        // Each attempt recomputes the result: the same result (id, data),
        // stamped with the attempt's batch time.
        let without_time = |r: &Request| {
            let mut v = r.json();
            let o = v.as_object_mut().unwrap();
            assert_eq!(o.remove("time"), o.remove("timestamp"));
            v
        };
        assert!(attempts.iter().all(|r| without_time(r) == without_time(attempts[0])), "the same result every time");
        let stamps: Vec<i64> = attempts.iter().map(|r| r.header("webhook-timestamp").parse().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[1] > w[0]), "a new timestamp per attempt: {stamps:?}");
        let sigs: std::collections::HashSet<&str> = attempts.iter().map(|r| r.header("webhook-signature")).collect();
        assert_eq!(sigs.len(), 3, "a new signature per attempt");
    }
    verify_with_python(c.dir.path(), &requests);
    assert_eq!(common::count(&bus, "claims.dlq").await, 0, "no dead letter: {}", log(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_dead_letters_its_input_alone_at_emit() {
    let events = claims(5, 9);
    let refused = events[2].data["claim_id"].clone();
    let script_refused = refused.clone();
    let rx =
        Receiver::start(Arc::new(move |body, _| if body["data"]["claim_id"] == script_refused { 400 } else { 200 }))
            .await;
    let c = deployment(&rx.url(), FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &events).await;
    let done = common::wait_until(Duration::from_secs(60), || async {
        accepted(&rx).len() >= 4 && common::count(&bus, "claims.dlq").await >= 1
    })
    .await;
    assert!(done, "{}", log(&c));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(w);

    let requests = rx.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 400).count(), 1, "a 400 is not retried");
    assert_eq!(accepted(&rx).len(), 4);
    let dls = common::dead_letters(&bus, "claims.dlq").await;
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    assert_eq!(dl.attr("dlstage"), "emit");
    assert_eq!(dl.attr("dlclass"), "permanent");
    assert_eq!(dl.attr("dlcode"), "webhook_status");
    assert!(dl.attr("dlreason").contains("400"), "{:?}", dl.attrs);
    assert_eq!(dl.attr("dlsink"), format!("webhook:{}", rx.url()));
    assert_eq!(dl.attr("dlattempts"), "1");
    let original = Event::from_record(&dl.record).unwrap();
    assert_eq!(original.id, events[2].id);
    assert_eq!(original.data["claim_id"], refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_until_restart() {
    let rx = Receiver::start(Arc::new(|_, _| 410)).await;
    let c = deployment(&rx.url(), FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(1, 13)).await;
    assert!(
        common::wait_until(Duration::from_secs(60), || async { common::count(&bus, "claims.dlq").await >= 1 }).await
    );
    publish(&bus, &claims(4, 17)).await;
    assert!(
        common::wait_until(Duration::from_secs(60), || async { common::count(&bus, "claims.dlq").await >= 5 }).await
    );
    stop(w);

    assert_eq!(rx.requests().len(), 1, "no request after the 410");
    let dls = common::dead_letters(&bus, "claims.dlq").await;
    assert_eq!(dls.len(), 5);
    assert!(dls.iter().all(|d| d.attr("dlstage") == "emit" && d.attr("dlclass") == "permanent"));
    let codes: Vec<&str> = dls.iter().map(|d| d.attr("dlcode")).collect();
    assert_eq!(codes.iter().filter(|c| **c == "webhook_status").count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == "webhook_gone").count(), 4, "{codes:?}");
    assert_eq!(log(&c).matches("webhook endpoint answered 410 Gone").count(), 1, "logged once: {}", log(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_stops_start_up_naming_the_variable() {
    let rx = Receiver::start(Arc::new(|_, _| 200)).await;
    let c = deployment(&rx.url(), FAST_RETRY);
    let mut w = common::spawn_worker_with(&c.config_path, &c.dir.path().join("worker.log"), &[]);
    let status = w.wait().unwrap();
    assert!(!status.success());
    assert!(log(&c).contains(SECRET_ENV), "{}", log(&c));
    assert!(rx.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_name_is_refused_without_allow_private() {
    let rx = Receiver::start(Arc::new(|_, _| 200)).await;
    let port = rx.addr.rsplit(':').next().unwrap().to_string();
    let c = deployment(&format!("http://localhost:{port}/hook"), FAST_RETRY);
    let text =
        std::fs::read_to_string(&c.config_path).unwrap().replace("allow_private = true", "allow_private = false");
    std::fs::write(&c.config_path, text).unwrap();
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(2, 19)).await;
    assert!(
        common::wait_until(Duration::from_secs(60), || async { common::count(&bus, "claims.dlq").await >= 2 }).await
    );
    stop(w);
    assert!(rx.requests().is_empty(), "no request reaches a loopback address");
    let dls = common::dead_letters(&bus, "claims.dlq").await;
    assert!(dls.iter().all(|d| d.attr("dlcode") == "webhook_blocked_address"), "{:?}", dls[0].attrs);
    assert!(dls[0].attr("dlreason").contains("127.0.0.1") || dls[0].attr("dlreason").contains("::1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_outage_opens_the_breaker_and_dead_letters_nothing() {
    // 503 to everything for 3 s: longer than the retries of FAST_RETRY
    // (about 1.2 s), so without the breaker the results would dead-letter.
    let start = std::time::Instant::now();
    let rx =
        Receiver::start(Arc::new(move |_, _| if start.elapsed() < Duration::from_secs(3) { 503 } else { 200 })).await;
    let c = deployment(&rx.url(), FAST_RETRY);
    let bus = Bus::open(&c.config).unwrap();
    let w = spawn(&c);
    started(&c).await;
    publish(&bus, &claims(10, 23)).await;
    assert!(common::wait_until(Duration::from_secs(60), || async { accepted(&rx).len() >= 10 }).await, "{}", log(&c));
    stop(w);
    assert_eq!(common::count(&bus, "claims.dlq").await, 0, "an outage dead-letters nothing: {}", log(&c));
    assert!(log(&c).contains("circuit breaker opened"), "{}", log(&c));
    assert!(rx.requests().iter().any(|r| r.status == 503));
}
