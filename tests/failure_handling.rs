//! Failure handling in-process: bad input dead-lettered once at its stage
//! with no retries; transient failures retried with backoff (on a paused
//! clock) and either recovered or dead-lettered exactly once.

mod common;

use std::time::Duration;

use modelbus::app::App;
use modelbus::error::ErrorClass;
use modelbus::event::Event;
use modelbus::faults::{self, Fault};
use tokio_util::sync::CancellationToken;

/// Fault points are process-wide; tests that set them take turns.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start(
    config: modelbus::config::Config,
) -> (App, CancellationToken, tokio::task::JoinHandle<Result<(), modelbus::app::AppError>>) {
    let app = App::load(config).await.unwrap();
    let workers = app.workers().await.unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(App::run(workers, token.clone()));
    (app, token, handle)
}

const GOOD: [Option<f64>; 6] = [Some(0.1), Some(-0.2), Some(0.3), Some(0.0), Some(1.0), Some(-1.0)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_input_and_nan_output_are_dead_lettered_at_infer() {
    let _g = FAULTS.lock().await;
    // An MLP cannot take a missing value.
    let (_d1, _, cfg) = common::reading_deployment("mlp_clf", "", "p = \"probabilities[1]\"", "");
    let (app, token, h) = start(cfg).await;
    let mut null_x2 = GOOD;
    null_x2[2] = None;
    let recs = vec![common::reading("g1", GOOD), common::reading("nan-in", null_x2), common::reading("g2", GOOD)];
    app.bus.publish("readings", recs).await.unwrap();
    let bus = app.bus.clone();
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let bus = bus.clone();
            async move { common::count(&bus, "scored").await >= 2 && common::count(&bus, "readings.dlq").await >= 1 }
        })
        .await
    );
    token.cancel();
    h.await.unwrap().unwrap();
    let dls = common::dead_letters(&app.bus, "readings.dlq").await;
    assert_eq!(dls.len(), 1);
    assert_eq!((dls[0].attr("dlstage"), dls[0].attr("dlcode"), dls[0].attr("dlattempts")), ("infer", "nan_input", "1"));
    assert_eq!(common::count(&app.bus, "scored").await, 2, "good neighbours still scored");

    // score = sqrt(sum(x)): a negative sum makes the model's output NaN.
    let (_d2, _, cfg) = common::reading_deployment("sqrt_sum", "", "p = \"score\"", "");
    let (app, token, h) = start(cfg).await;
    let positive = [Some(1.0), Some(2.0), Some(3.0), Some(0.0), Some(0.5), Some(4.0)];
    let negative = [Some(-1.0), Some(-2.0), Some(-3.0), Some(0.0), Some(-0.5), Some(-4.0)];
    app.bus
        .publish(
            "readings",
            vec![
                common::reading("g1", positive),
                common::reading("nan-out", negative),
                common::reading("g2", positive),
            ],
        )
        .await
        .unwrap();
    let bus = app.bus.clone();
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let bus = bus.clone();
            async move { common::count(&bus, "scored").await >= 2 && common::count(&bus, "readings.dlq").await >= 1 }
        })
        .await,
        "scored {} dlq {}",
        common::count(&app.bus, "scored").await,
        common::count(&app.bus, "readings.dlq").await
    );
    token.cancel();
    h.await.unwrap().unwrap();
    let dls = common::dead_letters(&app.bus, "readings.dlq").await;
    assert_eq!(dls.len(), 1);
    assert_eq!(
        (dls[0].attr("dlstage"), dls[0].attr("dlcode"), dls[0].attr("dlattempts")),
        ("infer", "nan_output", "1")
    );
}

/// The claims example with 4 attempts, 100ms doubling, capped at 1s.
fn retry_4(config: String) -> String {
    config.replace("max_attempts = 5", "max_attempts = 4").replace("max_delay = \"5s\"", "max_delay = \"1s\"")
}

/// Gaps between consecutive checks must respect the backoff (less jitter).
fn assert_backoff(log: &[(tokio::time::Instant, bool)]) {
    for (i, w) in log.windows(2).enumerate() {
        let gap = w[1].0 - w[0].0;
        let base = Duration::from_millis(100) * 2u32.pow(i as u32);
        let min = base.min(Duration::from_secs(1)).mul_f64(0.8);
        assert!(gap >= min, "attempt {} came {gap:?} after the previous, before its backoff {min:?}", i + 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_short_transient_failure_is_retried_and_recovers() {
    let _g = FAULTS.lock().await;
    faults::clear();
    let c = common::claims(retry_4);
    let (app, token, h) = start(c.config.clone()).await;
    faults::set("features.lookup", Fault { class: ErrorClass::Transient, remaining: Some(2) });
    let e = modelbus::example::Generator::new(1, 0.0).claim(chrono::Utc::now());
    app.bus.publish("claims", vec![e.to_record()]).await.unwrap();
    let bus = app.bus.clone();
    let mut ok = false;
    for _ in 0..2000 {
        if common::count(&bus, "risk-scored").await >= 1 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    h.await.unwrap().unwrap();
    faults::clear_faults_only();
    assert!(ok, "the event is scored once the store recovers");
    let log = faults::log("features.lookup");
    assert_eq!(log.iter().map(|(_, f)| *f).collect::<Vec<_>>(), vec![true, true, false], "two failures, then success");
    assert_backoff(&log);
    assert_eq!(common::count(&app.bus, "claims.dlq").await, 0, "no dead letter");
}

#[tokio::test(start_paused = true)]
async fn a_long_transient_failure_is_dead_lettered_once_after_max_attempts() {
    let _g = FAULTS.lock().await;
    faults::clear();
    let c = common::claims(retry_4);
    let (app, token, h) = start(c.config.clone()).await;
    faults::set("features.lookup", Fault { class: ErrorClass::Transient, remaining: None });
    let e: Event = modelbus::example::Generator::new(2, 0.0).claim(chrono::Utc::now());
    app.bus.publish("claims", vec![e.to_record()]).await.unwrap();
    let bus = app.bus.clone();
    let mut ok = false;
    for _ in 0..2000 {
        if common::count(&bus, "claims.dlq").await >= 1 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give a wrongly repeated dead letter every chance to appear.
    tokio::time::sleep(Duration::from_secs(5)).await;
    token.cancel();
    h.await.unwrap().unwrap();
    faults::clear_faults_only();
    assert!(ok, "dead-lettered after exhausting retries");
    let dls = common::dead_letters(&app.bus, "claims.dlq").await;
    assert_eq!(dls.len(), 1, "exactly once");
    let dl = &dls[0];
    assert_eq!(dl.attr("dlstage"), "features");
    assert_eq!(dl.attr("dlclass"), "transient");
    assert_eq!(dl.attr("dlattempts"), "4");
    assert!(dl.attr("dlcode").ends_with("retries_exhausted"), "{}", dl.attr("dlcode"));
    assert_eq!(dl.original().header_str("ce_id"), Some(e.id.as_str()), "original record untouched");
    let log = faults::log("features.lookup");
    assert_eq!(log.len(), 4, "exactly max_attempts attempts");
    assert_backoff(&log);
    assert_eq!(common::count(&app.bus, "risk-scored").await, 0);
}
