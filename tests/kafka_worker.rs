//! The claims worker on a real Kafka-protocol broker: interop with a
//! third-party client in both content modes, graceful shutdown, replay from
//! the Kafka dead-letter topic, retries that survive a rebalance, topics
//! refused when they may not be created, the HTTP endpoint, backpressure
//! (pause and resume at the in-flight limit), and cooperative rebalancing.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{self, header};
use modelbus::bus::Bus;
use modelbus::event::{Event, TraceParent};
use modelbus::example::Generator;

fn python() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: `.ci/run` creates the venv", p.display());
    p
}

/// Runs `tests/interop/ce_client.py` and returns its stdout JSON lines.
fn ce_client(args: &[&str]) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ce_client.py");
    let out = Command::new(python()).arg(script).args(args).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "ce_client {args:?} failed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn trace_id(traceparent: &str) -> String {
    traceparent.parse::<TraceParent>().unwrap_or_else(|e| panic!("bad traceparent {traceparent}: {e}")).trace_id_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_client_is_scored_in_binary_and_structured_mode() {
    let n = kafka::names("interop");
    let c = kafka::claims(&n, "");
    let log = c.dir.path().join("w.log");
    let mut w = common::spawn_worker(&c.config_path, &log);
    assert!(common::wait_for_log(&log, "worker started", Duration::from_secs(60)).await, "worker did not start");
    let brokers = kafka::brokers();
    let mut sent =
        ce_client(&["produce", "--brokers", &brokers, "--topic", &n.input, "--mode", "binary", "--count", "20"]);
    sent.extend(ce_client(&[
        "produce",
        "--brokers",
        &brokers,
        "--topic",
        &n.input,
        "--mode",
        "structured",
        "--count",
        "10",
        "--seed",
        "7",
    ]));
    let by_id: HashMap<String, &serde_json::Value> =
        sent.iter().map(|e| (e["id"].as_str().unwrap().to_string(), e)).collect();
    assert_eq!(by_id.len(), 30);

    let results =
        ce_client(&["consume", "--brokers", &brokers, "--topic", &n.results, "--count", "30", "--timeout", "120"]);
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success());
    let mut causes = HashSet::new();
    for r in &results {
        let h = &r["headers"];
        let cause = h["ce_causationid"].as_str().unwrap_or_else(|| panic!("no ce_causationid: {r}"));
        let input = by_id.get(cause).unwrap_or_else(|| panic!("result for an unknown event {cause}"));
        causes.insert(cause.to_string());
        assert!(h["ce_id"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        assert_eq!(h["ce_type"], "RiskScored", "{r}");
        assert_eq!(h["ce_specversion"], "1.0", "{r}");
        assert!(chrono::DateTime::parse_from_rfc3339(h["ce_time"].as_str().unwrap()).is_ok(), "{r}");
        assert_eq!(h["ce_modelversion"], "risk-gb-1", "{r}");
        let tp = h["ce_traceparent"].as_str().unwrap();
        assert_eq!(trace_id(tp), trace_id(input["traceparent"].as_str().unwrap()), "same trace id: {r}");
        assert_ne!(tp, input["traceparent"].as_str().unwrap(), "a new span id");
        assert_eq!(h["content-type"], "application/json", "{r}");
        let value: serde_json::Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        let score = value["risk_score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{value}");
    }
    assert_eq!(causes.len(), 30, "every event, binary and structured, was scored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_a_restart_does_not_reprocess() {
    let n = kafka::names("drain");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("w1.log");
    let mut w = common::spawn_worker(&c.config_path, &log);
    assert!(common::wait_for_log(&log, "rebalance", Duration::from_secs(60)).await, "worker did not join");

    let mut g = Generator::new(31, 0.0);
    let mut ids = Vec::new();
    let mut stopped = false;
    for round in 0..30 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                let e = g.claim(chrono::Utc::now());
                ids.push(e.id.clone());
                e.to_record()
            })
            .collect();
        bus.publish(&n.input, batch).await.unwrap();
        if round == 12 {
            // Under load: events are arriving and in flight when SIGTERM lands.
            common::signal(&w, libc::SIGTERM);
            stopped = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped);
    assert!(w.wait().unwrap().success(), "the worker exits cleanly after SIGTERM");
    let l1 = std::fs::read_to_string(&log).unwrap();
    assert!(l1.contains("worker drained and stopped"), "{l1}");

    let mut w2 = common::spawn_worker(&c.config_path, &c.dir.path().join("w2.log"));
    let want: HashSet<String> = ids.iter().cloned().collect();
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    let results = kafka::read_covering(&bus, &n.results, &want, cause, Duration::from_secs(120)).await;
    // Anything late would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::signal(&w2, libc::SIGTERM);
    assert!(w2.wait().unwrap().success());
    let results = kafka::read_n(&bus, &n.results, results.len() + 1, Duration::from_secs(5)).await;
    let covered: HashSet<String> = results.iter().filter_map(cause).collect();
    assert_eq!(covered, want, "every event has a result");
    assert_eq!(
        results.len(),
        ids.len(),
        "a drained worker committed everything it emitted: the restart repeated nothing"
    );
}

/// `k` new claims as records, their ids added to `ids`.
fn claims_recorded(g: &mut Generator, ids: &mut HashSet<String>, k: usize) -> Vec<modelbus::event::Record> {
    (0..k)
        .map(|_| {
            let e = g.claim(chrono::Utc::now());
            ids.insert(e.id.clone());
            e.to_record()
        })
        .collect()
}

/// Waits until every id in `ids` has a result, gives repeats time to
/// arrive, stops the workers with SIGTERM, and checks the ledger: every
/// event has a result and none has two (`no_repeats` says why none should).
async fn stop_and_check_ledger<const N: usize>(
    bus: &Bus,
    results: &str,
    workers: [std::process::Child; N],
    ids: &HashSet<String>,
    no_repeats: &str,
) {
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    kafka::read_covering(bus, results, ids, cause, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // any repeat would arrive by now
    for w in &workers {
        common::signal(w, libc::SIGTERM);
    }
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let got = kafka::read_n(bus, results, ids.len() + 1, Duration::from_secs(5)).await;
    let covered: HashSet<String> = got.iter().filter_map(cause).collect();
    assert_eq!(&covered, ids, "every event has a result");
    assert_eq!(got.len(), ids.len(), "{no_repeats}");
}

/// Replaces the config's `[workers.retry]` table with `retry`.
fn set_retry(config_path: &Path, retry: &str) {
    let text = std::fs::read_to_string(config_path).unwrap();
    let start = text.find("[workers.retry]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    std::fs::write(config_path, format!("{}{}{}", &text[..start], retry, &text[end..])).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_once_after_max_attempts_across_a_rebalance() {
    let n = kafka::names("poison");
    let retry = "[workers.retry]\ninitial_delay = \"2s\"\nmultiplier = 1.0\nmax_delay = \"2s\"\nmax_attempts = 4\nmax_horizon = \"2m\"";
    let c = kafka::claims(&n, "");
    set_retry(&c.config_path, retry);
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();

    let spawn = |name: &str| {
        let log = c.dir.path().join(name);
        // The feature store is down for good: every attempt fails transiently.
        let env = [("RUST_LOG", "info,modelbus::worker=debug"), ("MODELBUS_FAULTS", "features.lookup=transient")];
        let child = common::spawn_worker_with(&c.config_path, &log, &env);
        (child, log)
    };
    let (a, log_a) = spawn("a.log");
    assert!(common::wait_for_log(&log_a, "rebalance", Duration::from_secs(60)).await);
    let e = Generator::new(5, 0.0).claim(chrono::Utc::now());
    bus.publish(&n.input, vec![e.to_record()]).await.unwrap();

    // Two attempts on A, and their state committed, then A dies mid-retry.
    assert!(common::wait_for_log(&log_a, "attempts=2", Duration::from_secs(60)).await, "A retried twice");
    tokio::time::sleep(Duration::from_millis(400)).await;
    common::signal(&a, libc::SIGKILL);
    let (mut b, log_b) = spawn("b.log");

    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(120)).await;
    assert_eq!(dls.len(), 1, "dead-lettered after the rebalance");
    // Nothing more arrives: exactly once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let dls = kafka::read_n(&bus, &n.dlq, 2, Duration::from_secs(3)).await;
    common::signal(&b, libc::SIGTERM);
    assert!(b.wait().unwrap().success());
    assert_eq!(dls.len(), 1, "exactly one dead letter");
    let dl = &dls[0];
    assert_eq!(header(dl, "ce_dlattempts").as_deref(), Some("4"), "the count survived the rebalance");
    assert_eq!(header(dl, "ce_id").as_deref(), Some(e.id.as_str()), "the original id is unchanged");
    assert_eq!(header(dl, "ce_dlstage").as_deref(), Some("features"));
    let lb = std::fs::read_to_string(&log_b).unwrap();
    let la = std::fs::read_to_string(&log_a).unwrap();
    assert!(!lb.contains("attempts=1 "), "B resumed the count instead of restarting it:\n{lb}");
    assert!(lb.contains("attempts=3"), "B made the third attempt:\n{lb}");
    assert!(!la.contains("attempts=3"), "A died before its third attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_kafka_dead_letter_topic_yields_exactly_one_result() {
    let n = kafka::names("replay");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let mut e = Generator::new(9, 0.0).claim(chrono::Utc::now());
    e.data["customer_id"] = serde_json::json!("C77777");
    e.subject = Some("C77777".into());
    let mut w = common::spawn_worker(&c.config_path, &c.dir.path().join("w.log"));
    bus.publish(&n.input, vec![e.to_record()]).await.unwrap();
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(90)).await;
    assert_eq!(dls.len(), 1, "the unknown customer is dead-lettered on Kafka");
    assert_eq!(header(&dls[0], "ce_dlcode").as_deref(), Some("unknown_entity"));

    let list = run_cli(&["dlq", "list"], &c.config_path);
    let dlid = header(&dls[0], "ce_dlid").unwrap();
    assert!(list.contains(&dlid) && list.contains("unknown_entity"), "dlq list reads Kafka: {list}");
    let show = run_cli(&["dlq", "show", &dlid], &c.config_path);
    assert!(show.contains(&e.id), "dlq show reads Kafka: {show}");

    // Fix the cause, then replay.
    common::signal(&w, libc::SIGTERM);
    w.wait().unwrap();
    let csv = c.dir.path().join("features/customers.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("C77777,12,0,40,900.0,1,0,700,0.1\n");
    std::fs::write(&csv, text).unwrap();
    run_cli(&["features", "load", "customers", csv.to_str().unwrap()], &c.config_path);
    let mut w = common::spawn_worker(&c.config_path, &c.dir.path().join("w2.log"));
    let out = run_cli(&["dlq", "replay"], &c.config_path);
    assert!(out.contains("1 replayed"), "{out}");
    let results = kafka::read_n(&bus, &n.results, 1, Duration::from_secs(90)).await;
    assert_eq!(results.len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = run_cli(&["dlq", "replay"], &c.config_path);
    assert!(again.contains("0 replayed"), "nothing is replayed twice: {again}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::signal(&w, libc::SIGTERM);
    w.wait().unwrap();
    let results = kafka::read_n(&bus, &n.results, 2, Duration::from_secs(3)).await;
    assert_eq!(results.len(), 1, "exactly one result");
    let r = Event::from_record(&results[0].record).unwrap();
    assert_eq!(r.extensions["causationid"], e.id);
    assert_eq!(r.traceparent.trace_id, e.traceparent.trace_id, "the trace links failure and replay");
}

fn run_cli(args: &[&str], config: &Path) -> String {
    let out = Command::new(common::bin()).args(args).arg("--config").arg(config).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_refused_by_name_when_creation_is_off() {
    let n = kafka::names("nocreate");
    let c = kafka::claims(&n, "");
    let text = std::fs::read_to_string(&c.config_path).unwrap();
    std::fs::write(
        &c.config_path,
        text.replace("partitions = 4\nsession_timeout", "partitions = 4\ncreate_topics = false\nsession_timeout"),
    )
    .unwrap();
    let out = Command::new(common::bin()).args(["run", "--config"]).arg(&c.config_path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&n.dlq) || err.contains(&n.input), "names the missing topic: {err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoint_serves_health_readiness_and_metrics_with_lag() {
    let n = kafka::names("metrics");
    let c = kafka::claims(&n, "");
    let addr = common::with_http(&c.config_path);
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("w.log");
    let mut w = common::spawn_worker(&c.config_path, &log);
    assert!(
        common::wait_for_log(&log, "serving /metrics", Duration::from_secs(60)).await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (status, _) = common::http_get(&addr, "/healthz").await;
    assert_eq!(status, 200);
    let mut ready = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if common::http_get(&addr, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "ready once the group is joined");
    let mut g = Generator::new(3, 0.0);
    let mut bad = g.claim(chrono::Utc::now()).to_record();
    bad.value = b"{not json".to_vec();
    let mut batch: Vec<_> = (0..50).map(|_| g.claim(chrono::Utc::now()).to_record()).collect();
    batch.push(bad);
    bus.publish(&n.input, batch).await.unwrap();
    let results = kafka::read_n(&bus, &n.results, 50, Duration::from_secs(60)).await;
    assert_eq!(results.len(), 50);
    // Lag is refreshed every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = common::http_get(&addr, "/metrics").await;
    common::signal(&w, libc::SIGTERM);
    w.wait().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("modelbus_results_emitted_total{worker=\"claims-risk\"} 50"), "{body}");
    assert!(
        body.contains(
            "modelbus_dead_letters_total{worker=\"claims-risk\",stage=\"decode\",reason=\"malformed_json\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains(&format!("modelbus_consumer_lag{{worker=\"claims-risk\",topic=\"{}\",partition=", n.input)),
        "{body}"
    );
    assert!(body.contains("modelbus_in_flight_events{worker=\"claims-risk\"}"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_tail_work_against_kafka() {
    let n = kafka::names("cli");
    let c = kafka::claims(&n, "");
    let event = r#"{"type":"ClaimCreated","source":"/cli-test","subject":"C00042","data":{"claim_id":"CL-1","customer_id":"C00042","amount":120.5,"claim_type_code":1,"days_since_policy_start":300,"incident_hour":9}}"#;
    let file = c.dir.path().join("one.json");
    std::fs::write(&file, event).unwrap();
    run_cli(&["publish", "--file", file.to_str().unwrap()], &c.config_path);
    // An invalid event is refused before it reaches Kafka.
    let bad = c.dir.path().join("bad.json");
    std::fs::write(&bad, event.replace("120.5", "-3")).unwrap();
    let refused = Command::new(common::bin())
        .args(["publish", "--file", bad.to_str().unwrap(), "--config"])
        .arg(&c.config_path)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "an invalid event is refused");
    let out = run_cli(&["tail", &n.input, "--from-beginning", "--count", "1", "--idle-timeout", "20s"], &c.config_path);
    let line: serde_json::Value =
        serde_json::from_str(out.lines().next().unwrap_or_else(|| panic!("tail printed nothing"))).unwrap();
    assert_eq!(line["source"], "/cli-test", "{line}");
    assert_eq!(line["data"]["customer_id"], "C00042", "{line}");
    assert!(line["traceparent"].as_str().is_some_and(|t| t.starts_with("00-")), "generated at publish: {line}");
    let got = kafka::read_n(&Bus::open(&c.config).unwrap(), &n.input, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "only the valid event was published");
    assert_eq!(header(&got[0], "ce_type").as_deref(), Some("ClaimCreated"), "binary mode: attributes are ce_ headers");
    assert_eq!(got[0].record.key.as_deref(), Some(&b"C00042"[..]), "the key is the partition key (the subject)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_commits_what_was_handled_since_the_last_commit() {
    let n = kafka::names("revoke");
    // No periodic commit within the test: only the revocation can commit.
    let c = kafka::claims(&n, "commit_interval = \"10m\"");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log_a = c.dir.path().join("a.log");
    let a = common::spawn_worker(&c.config_path, &log_a);
    assert!(common::wait_for_log(&log_a, "rebalance", Duration::from_secs(60)).await);
    let mut g = Generator::new(41, 0.0);
    let mut ids = HashSet::new();
    let mut publish = |k: usize| claims_recorded(&mut g, &mut ids, k);
    bus.publish(&n.input, publish(400)).await.unwrap();
    assert_eq!(kafka::read_n(&bus, &n.results, 400, Duration::from_secs(60)).await.len(), 400);

    // B joins: A's partitions are revoked, and A commits what it handled.
    let log_b = c.dir.path().join("b.log");
    let b = common::spawn_worker(&c.config_path, &log_b);
    assert!(
        common::wait_for_log(&log_a, "committed pending offsets on revocation", Duration::from_secs(60)).await,
        "{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    assert!(common::wait_for_log(&log_b, "rebalance", Duration::from_secs(60)).await);
    bus.publish(&n.input, publish(100)).await.unwrap();
    assert_eq!(ids.len(), 500);
    stop_and_check_ledger(&bus, &n.results, [a, b], &ids, "nothing A handled before the rebalance was processed again")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_in_flight_limit_the_worker_pauses_the_bus_and_resumes_losing_and_repeating_nothing() {
    let n = kafka::names("pause");
    let c = kafka::claims(&n, "");
    // At most 16 events in flight, in batches of 8; retries every 500 ms.
    set_retry(
        &c.config_path,
        "[workers.retry]\ninitial_delay = \"500ms\"\nmultiplier = 1.0\nmax_delay = \"500ms\"\nmax_attempts = 6\nmax_horizon = \"2m\"",
    );
    let text = std::fs::read_to_string(&c.config_path)
        .unwrap()
        .replace("max_in_flight = 4096", "max_in_flight = 16")
        .replace("max_size = 256", "max_size = 8");
    assert!(text.contains("max_in_flight = 16") && text.contains("max_size = 8"), "{text}");
    std::fs::write(&c.config_path, text).unwrap();
    let addr = common::with_http(&c.config_path);

    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let mut g = Generator::new(11, 0.0);
    let events: Vec<Event> = (0..300).map(|_| g.claim(chrono::Utc::now())).collect();
    bus.publish(&n.input, events.iter().map(Event::to_record).collect()).await.unwrap();

    // The first three feature lookups fail: the first two batches wait for
    // their retries, which fills the in-flight table with nothing to commit.
    let log = c.dir.path().join("w.log");
    let env = [("RUST_LOG", "info,modelbus::worker=debug"), ("MODELBUS_FAULTS", "features.lookup=transient*3")];
    let mut w = common::spawn_worker_with(&c.config_path, &log, &env);
    let want: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
    let results =
        kafka::read_covering(&bus, &n.results, &want, |d| header(d, "ce_causationid"), Duration::from_secs(120)).await;
    let (status, body) = common::http_get(&addr, "/metrics").await;
    // Anything repeated after a resume would arrive now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = kafka::read_n(&bus, &n.results, results.len() + 1, Duration::from_secs(3)).await;
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();

    let mut per_cause: HashMap<String, usize> = HashMap::new();
    for d in &all {
        *per_cause.entry(header(d, "ce_causationid").unwrap()).or_default() += 1;
    }
    assert_eq!(per_cause.len(), 300, "every event has a result:\n{text}");
    assert!(per_cause.values().all(|&k| k == 1), "no event was processed twice");
    assert_eq!(status, 200);
    let pauses: u64 = body
        .lines()
        .find(|l| l.starts_with("modelbus_backpressure_pauses_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pause counter in /metrics:\n{body}"));
    assert!(pauses >= 1, "the worker paused at its limit:\n{body}\n{text}");
    assert!(text.contains("in-flight limit reached: bus paused"), "{text}");
    assert!(body.contains("modelbus_retries_total{worker=\"claims-risk\",stage=\"features\""), "{body}");
}

/// How many partitions the `field=[...]` list of one `rebalance` log line names.
fn partitions_in(line: &str, field: &str) -> usize {
    line.split(&format!("{field}=["))
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map_or(0, |r| r.matches("partition:").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cooperative_rebalancing_a_joining_worker_takes_only_its_share_and_nothing_is_lost_or_repeated() {
    let n = kafka::names("coop");
    let c = kafka::claims(&n, "");
    let text = std::fs::read_to_string(&c.config_path).unwrap().replacen(
        "\"fetch.wait.max.ms\" = \"10\"",
        "\"fetch.wait.max.ms\" = \"10\"\n\"partition.assignment.strategy\" = \"cooperative-sticky\"",
        1,
    );
    assert!(text.contains("cooperative-sticky"), "{text}");
    std::fs::write(&c.config_path, text).unwrap();
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let mut g = Generator::new(43, 0.0);
    let mut ids = HashSet::new();
    let mut publish = |k: usize| claims_recorded(&mut g, &mut ids, k);
    let log_a = c.dir.path().join("a.log");
    let a = common::spawn_worker(&c.config_path, &log_a);
    assert!(common::wait_for_log(&log_a, "rebalance", Duration::from_secs(60)).await);
    bus.publish(&n.input, publish(400)).await.unwrap();
    assert_eq!(kafka::read_n(&bus, &n.results, 400, Duration::from_secs(60)).await.len(), 400);

    // B joins. Cooperatively, A gives up only the partitions B gets (half of
    // them: the input's and the replay topic's); eagerly it would give up
    // all of them and take its half back.
    let a_text = std::fs::read_to_string(&log_a).unwrap_or_default();
    let owned = a_text.lines().find(|l| l.contains("rebalance")).map_or(0, |l| partitions_in(l, "assigned"));
    assert_eq!(owned, 8, "A alone owns the 4 input and 4 replay partitions:\n{a_text}");
    let log_b = c.dir.path().join("b.log");
    let b = common::spawn_worker(&c.config_path, &log_b);
    let revoked_line = || {
        std::fs::read_to_string(&log_a)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("rebalance") && partitions_in(l, "revoked") > 0)
            .map(str::to_string)
    };
    assert!(
        common::wait_until(Duration::from_secs(60), || async { revoked_line().is_some() }).await,
        "A never gave up a partition:\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    assert!(common::wait_for_log(&log_b, "rebalance", Duration::from_secs(60)).await);
    let line = revoked_line().unwrap();
    assert_eq!(
        partitions_in(&line, "revoked"),
        4,
        "A gave up only B's half of its 8 partitions: {line}\nA:\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );

    // Both keep working: every later event is scored once, on either member.
    bus.publish(&n.input, publish(400)).await.unwrap();
    assert_eq!(ids.len(), 800);
    stop_and_check_ledger(
        &bus,
        &n.results,
        [a, b],
        &ids,
        "nothing was processed twice across the cooperative rebalance",
    )
    .await;
    let b_text = std::fs::read_to_string(&log_b).unwrap_or_default();
    assert!(b_text.contains("partition:"), "B was assigned partitions:\n{b_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_benchmark_reports_modelbus_the_client_floor_and_python() {
    // Only that the three runs complete and report; speed is for the closing
    // note, not for an assertion on a shared machine. CPU time is read in
    // 10 ms ticks, so the measured stretch needs tens of thousands of events.
    // Two rounds: the second runs on the same backlog in groups of its own.
    let out = Command::new(common::bin())
        .args(["bench", "--kafka", &kafka::brokers(), "--events", "30000", "--rounds", "2", "--python"])
        .arg(python())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ORT_DYLIB_PATH", std::env::var("ORT_DYLIB_PATH").unwrap_or_default())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --kafka failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let number_after = |label: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no `{label}` row:\n{text}"));
        line[label.len()..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no CPU figure in `{line}`"))
    };
    for row in
        ["modelbus on Kafka (one core)", "Kafka client alone (no processing)", "Python: confluent-kafka + onnxruntime"]
    {
        let cpu = number_after(row);
        assert!(cpu.is_finite() && cpu > 0.0, "`{row}` reports {cpu} µs/event:\n{text}");
    }
    assert!(text.contains("of Python's CPU per event"), "{text}");
    for round in ["round 1: modelbus", "round 2: modelbus", "medians of 2 rounds"] {
        assert!(text.contains(round), "no `{round}`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paced_kafka_benchmark_reports_latency_of_both_workers() {
    // Only that both workers answer every event and the figures are
    // reported; the figures themselves are for the README and closing notes.
    let out = Command::new(common::bin())
        .args([
            "bench",
            "--kafka",
            &kafka::brokers(),
            "--paced",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--fetch-wait-ms",
            "10",
        ])
        .arg("--python")
        .arg(python())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --kafka --paced failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in ["modelbus on Kafka", "Python: confluent-kafka + onnxruntime"] {
        let line = text.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no `{row}` row:\n{text}"));
        let nums: Vec<f64> = line[row.len()..].split_whitespace().filter_map(|v| v.parse().ok()).collect();
        assert!(nums.len() == 4 && nums[0] > 0.0 && nums[0] <= nums[1] && nums[3] == 600.0, "`{line}`:\n{text}");
    }
    assert!(text.contains("ratios modelbus/Python: p50"), "{text}");
}
