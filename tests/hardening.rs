//! Hostile input and limits on the embedded bus: a result refused alone,
//! transient bus errors in poll and group maintenance ridden out, entity
//! keys and payload limits, dead-letter tools that stream, replay only to
//! the config's own groups, and out-of-range values refused.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use modelbus::app::App;
use modelbus::bus::TopicPartition;
use modelbus::dead_letter::{envelope, Failure, Origin, Stage};
use modelbus::error::ErrorClass;
use modelbus::event::Record;
use modelbus::example::Generator;
use modelbus::faults::{self, Fault};
use tokio_util::sync::CancellationToken;

/// Fault points are process-wide: tests that set them, or run a worker
/// that checks them, take turns.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Running = (App, CancellationToken, tokio::task::JoinHandle<Result<(), modelbus::app::AppError>>);

async fn start(config: modelbus::config::Config) -> Running {
    let app = App::load(config).await.unwrap();
    let workers = app.workers().await.unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(App::run(workers, token.clone()));
    (app, token, handle)
}

fn claims(n: usize, seed: u64) -> Vec<modelbus::event::Event> {
    let mut g = Generator::new(seed, 0.0);
    (0..n).map(|_| g.claim(chrono::Utc::now())).collect()
}

async fn wait_count(bus: &std::sync::Arc<modelbus::bus::Bus>, topic: &str, want: u64) -> bool {
    let bus = bus.clone();
    let topic = topic.to_string();
    common::wait_until(Duration::from_secs(30), || {
        let (bus, topic) = (bus.clone(), topic.clone());
        async move { common::count(&bus, &topic).await >= want }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_result_is_dead_lettered_alone_and_the_rest_are_written_once() {
    let _g = FAULTS.lock().await;
    faults::clear();
    let c = common::claims(|t| t);
    let (app, token, h) = start(c.config.clone()).await;
    // The sink refuses the first result it is handed, permanently; the
    // rest of that batch must be written, once each.
    faults::set("sink.record", Fault { class: ErrorClass::Permanent, remaining: Some(1) });
    let events = claims(60, 11);
    app.bus.publish("claims", events.iter().map(|e| e.to_record()).collect()).await.unwrap();
    assert!(wait_count(&app.bus, "risk-scored", 59).await && wait_count(&app.bus, "claims.dlq", 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel();
    h.await.unwrap().unwrap();
    faults::clear();

    let results = common::read_all(&app.bus, "risk-scored").await;
    let causes: Vec<String> =
        results.iter().map(|d| d.record.header_str("ce_causationid").unwrap().to_string()).collect();
    let distinct: HashSet<&String> = causes.iter().collect();
    assert_eq!((results.len(), distinct.len()), (59, 59), "each other result written exactly once");
    let dls = common::dead_letters(&app.bus, "claims.dlq").await;
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    assert_eq!((dl.attr("dlstage"), dl.attr("dlclass"), dl.attr("dlsink")), ("emit", "permanent", "topic:risk-scored"));
    let refused = dl.original().header_str("ce_id").unwrap().to_string();
    assert!(!distinct.contains(&refused), "the refused event has no result");
    let all: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(all.len(), 60);
    assert!(causes.iter().chain([&refused]).all(|id| all.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_bus_errors_in_poll_and_group_maintenance_do_not_stop_the_worker() {
    let _g = FAULTS.lock().await;
    faults::clear();
    let c = common::claims(|t| t);
    let (app, token, h) = start(c.config.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The embedded store answers `Busy` (transient) for a while: the worker
    // must wait it out, keeping its place, not stop.
    faults::set("bus.maintain", Fault { class: ErrorClass::Transient, remaining: Some(4) });
    faults::set("bus.poll", Fault { class: ErrorClass::Transient, remaining: Some(4) });
    let events = claims(20, 12);
    let (first, second) = events.split_at(10);
    app.bus.publish("claims", first.iter().map(|e| e.to_record()).collect()).await.unwrap();
    let failed = |p: &str| faults::log(p).iter().filter(|(_, f)| *f).count();
    let met = common::wait_until(Duration::from_secs(30), || async {
        failed("bus.maintain") == 4 && failed("bus.poll") == 4
    })
    .await;
    assert!(met, "every injected error was met: {:?} {:?}", faults::log("bus.maintain"), faults::log("bus.poll"));
    app.bus.publish("claims", second.iter().map(|e| e.to_record()).collect()).await.unwrap();
    assert!(wait_count(&app.bus, "risk-scored", 20).await, "the worker went on after the errors");
    assert!(!h.is_finished(), "the worker is still running");
    token.cancel();
    h.await.unwrap().unwrap();
    faults::clear();
    assert_eq!(common::count(&app.bus, "claims.dlq").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_key_over_the_limit_is_a_permanent_decode_error() {
    let _g = FAULTS.lock().await;
    // Keyed by claim id (a string of any length in the schema).
    let c = common::claims(|t| t.replace("entity_key = \"data.customer_id\"", "entity_key = \"data.claim_id\""));
    let (app, token, h) = start(c.config.clone()).await;
    let mut e = claims(1, 13).remove(0);
    e.data["claim_id"] = serde_json::Value::String("x".repeat(300));
    app.bus.publish("claims", vec![e.to_record()]).await.unwrap();
    assert!(wait_count(&app.bus, "claims.dlq", 1).await);
    token.cancel();
    h.await.unwrap().unwrap();
    let dls = common::dead_letters(&app.bus, "claims.dlq").await;
    assert_eq!((dls[0].attr("dlstage"), dls[0].attr("dlcode")), ("decode", "entity_key_too_long"));
}

/// A dead letter of `value`, as a worker of `group` would write it.
fn dead_letter(value: Vec<u8>, group: &str, offset: u64) -> Record {
    let now = chrono::Utc::now();
    let f = Failure {
        stage: Stage::Decode,
        class: ErrorClass::Permanent,
        code: "malformed_json".into(),
        reason: "test".into(),
        attempts: 1,
        first_failure: now,
        last_failure: now,
        sink: None,
    };
    let tp = TopicPartition { topic: "claims".into(), partition: 0 };
    let o = Origin { worker: "claims-risk", group, model: "risk", model_version: "v", tp: &tp, offset };
    envelope(&Record { key: Some(b"k".to_vec()), headers: Default::default(), value }, &f, &o, 64 << 20)
}

/// Runs `modelbus` with `args`; returns (success, stdout, stderr, peak RSS in KiB).
fn run_measured(args: &[&str]) -> (bool, String, String, i64) {
    let child = common::modelbus().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as i32;
    let out = std::thread::spawn(move || {
        let mut child = child;
        let (mut o, mut e) = (String::new(), String::new());
        use std::io::Read;
        child.stdout.take().unwrap().read_to_string(&mut o).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        std::mem::forget(child); // reaped by wait4 below
        (o, e)
    })
    .join()
    .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, out.0, out.1, usage.ru_maxrss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_tools_stream_a_large_topic() {
    let c = common::claims(|t| t);
    let bus = modelbus::bus::Bus::open(&c.config).unwrap();
    // 160 dead letters of 1 MiB each: 160 MiB that no tool may hold at once.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    for chunk in 0..16u64 {
        let recs = (0..10).map(|i| dead_letter(big.clone(), "claims-risk", chunk * 10 + i)).collect();
        bus.publish("claims.dlq", recs).await.unwrap();
    }
    let id = modelbus::dead_letter::dlid(&TopicPartition { topic: "claims".into(), partition: 0 }, 159, "claims-risk");
    let cfg = c.config_path.to_str().unwrap();
    for args in [
        vec!["dlq", "list", "--config", cfg],
        vec!["dlq", "show", &id, "--config", cfg],
        vec!["dlq", "replay", "--dry-run", "--config", cfg],
    ] {
        let (ok, out, err, rss_kib) = run_measured(&args);
        assert!(ok, "{args:?} failed: {err}");
        assert!(rss_kib < 120 * 1024, "{args:?} peaked at {} MiB: it held the topic in memory", rss_kib / 1024);
        match args[1] {
            "list" => assert!(out.contains("160 dead letter(s)"), "{out}"),
            "show" => assert!(out.contains(&id), "{out}"),
            _ => assert!(out.contains("160 replayed"), "{out}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_goes_only_to_groups_the_config_defines() {
    let c = common::claims(|t| t);
    let bus = modelbus::bus::Bus::open(&c.config).unwrap();
    let ev = claims(2, 14);
    // One dead letter of the config's own group, and one forged to steer
    // a replay into another group's replay topic.
    let ours = dead_letter(modelbus::event::Event::to_record(&ev[0]).value, "claims-risk", 1);
    let forged = dead_letter(modelbus::event::Event::to_record(&ev[1]).value, "intruder", 2);
    bus.publish("claims.dlq", vec![ours, forged]).await.unwrap();
    let out = common::modelbus().args(["dlq", "replay", "--config"]).arg(&c.config_path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 replayed") && text.contains("refused") && text.contains("`intruder`"), "{text}");
    assert_eq!(common::count(&bus, "claims-risk.replay").await, 1);
    assert_eq!(common::count(&bus, "intruder.replay").await, 0, "nothing reached the other group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_refuses_an_out_of_range_rate_and_a_truncated_dead_letter() {
    let c = common::claims(|t| t);
    let bus = modelbus::bus::Bus::open(&c.config).unwrap();
    let mut cut = dead_letter(vec![b'x'; 5000], "claims-risk", 3);
    cut = envelope(
        &modelbus::dead_letter::DeadLetter::from_record(cut, 0, 0).unwrap().original(),
        &Failure {
            stage: Stage::Validate,
            class: ErrorClass::Permanent,
            code: "payload_too_large".into(),
            reason: "big".into(),
            attempts: 1,
            first_failure: chrono::Utc::now(),
            last_failure: chrono::Utc::now(),
            sink: None,
        },
        &Origin {
            worker: "claims-risk",
            group: "claims-risk",
            model: "risk",
            model_version: "v",
            tp: &TopicPartition { topic: "claims".into(), partition: 0 },
            offset: 3,
        },
        3000,
    );
    assert!(modelbus::dead_letter::DeadLetter::from_record(cut.clone(), 0, 0).unwrap().truncated());
    bus.publish("claims.dlq", vec![cut]).await.unwrap();
    for rate in ["1e-20", "0", "NaN", "inf", "1e9"] {
        let out = common::modelbus()
            .args(["dlq", "replay", "--rate", rate, "--config"])
            .arg(&c.config_path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--rate") && !err.contains("panicked"), "--rate {rate}: {err}");
    }
    let out = common::modelbus().args(["dlq", "replay", "--config"]).arg(&c.config_path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 replayed") && text.contains("cut to fit"), "{text}");
    assert_eq!(common::count(&bus, "claims-risk.replay").await, 0);
}

#[test]
fn out_of_range_durations_and_limits_are_refused_with_their_paths() {
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims/modelbus.toml")).unwrap();
    let text = base
        .replace("partitions = 4", "partitions = 4\npoll_interval = \"0s\"\nsession_timeout = \"1000000000years\"")
        .replace(
            "max_in_flight = 4096",
            "max_in_flight = 4096\ncommit_interval = \"0s\"\nmax_payload_bytes = 100000000",
        )
        .replace("multiplier = 2.0", "multiplier = 1e300");
    let errs =
        modelbus::config::load_str(&text, Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims").as_path())
            .expect_err("refused");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "bus.embedded.poll_interval",
        "bus.embedded.session_timeout",
        "workers[0].commit_interval",
        "workers[0].max_payload_bytes",
        "workers[0].retry.multiplier",
    ] {
        assert!(paths.contains(&want), "{want} not reported: {errs:?}");
    }
    // On Kafka, an explicit payload limit that leaves no room for the dead
    // letter's attributes under message.max.bytes is refused; the default fits.
    let kafka = base.replace("[bus]\nkind = \"embedded\"", "[bus]\nkind = \"kafka\"");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims");
    let cfg = modelbus::config::load_str(&kafka, &dir).unwrap();
    let limit = cfg.workers[0].max_payload_bytes(&cfg.bus);
    assert!(limit + modelbus::dead_letter::MAX_HEADER_BYTES < 1_000_000 && limit > 900_000, "{limit}");
    let errs = modelbus::config::load_str(
        &kafka.replace("max_in_flight = 4096", "max_in_flight = 4096\nmax_payload_bytes = 1000000"),
        &dir,
    )
    .expect_err("refused");
    assert_eq!(errs[0].path, "workers[0].max_payload_bytes", "{errs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_drops_while_the_bus_does_not_answer() {
    let _g = FAULTS.lock().await;
    faults::clear();
    let c = common::claims(|t| t);
    let app = App::load(c.config.clone()).await.unwrap();
    let workers = app.workers().await.unwrap();
    let stats = workers[0].stats.clone();
    let token = CancellationToken::new();
    let h = tokio::spawn(App::run(workers, token.clone()));
    let ready = |want: bool| {
        let stats = stats.clone();
        common::wait_until(Duration::from_secs(30), move || {
            let stats = stats.clone();
            async move { stats.ready() == want }
        })
    };
    assert!(ready(true).await, "ready once joined");
    // The store stops answering group maintenance: not ready, still running.
    faults::set("bus.maintain", Fault { class: ErrorClass::Transient, remaining: None });
    assert!(ready(false).await, "not ready while the bus does not answer");
    let text = modelbus::http::render(&[("claims-risk".to_string(), stats.clone())]);
    assert!(text.contains("modelbus_worker_ready{worker=\"claims-risk\"} 0"), "{text}");
    assert!(!h.is_finished());
    faults::clear_faults_only();
    assert!(ready(true).await, "ready again once it answers");
    token.cancel();
    h.await.unwrap().unwrap();
    faults::clear();
}
