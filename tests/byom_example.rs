//! The bring-your-own-model example (examples/byom, walked through in
//! docs/bring-your-own-model.md), run with the CLI in a copy of the example:
//! `validate` passes (model pinned, golden check on ONNX Runtime), the
//! features load, a worker started with `run` scores two events published
//! with `publish` (one without an income, which the model's imputer fills),
//! `tail` shows both results, and SIGTERM stops the worker cleanly.
//!
//! The example's model is a scikit-learn pipeline with an `Imputer`, which
//! only ONNX Runtime runs, so this needs the `ort` feature and the library:
//! `ORT_DYLIB_PATH`, or else the onnxruntime wheel in `.venv`.
#![cfg(feature = "ort")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use modelbus::bus::Bus;
use serde_json::Value;

/// What onnxruntime gives the walkthrough's event (applicant A0042, 15,000
/// over 36 months, income 48,000): the model is pinned by sha256, so this
/// does not move unless the model does.
const A0042_PROBABILITY: f64 = 0.1544230580329895;

/// `ORT_DYLIB_PATH`, or the library in the repository's `.venv` onnxruntime wheel.
fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| std::fs::read_dir(capi).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|f| f.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
    });
    found.unwrap_or_else(|| {
        panic!(
            "set ORT_DYLIB_PATH to libonnxruntime.so (the example's model runs on ONNX Runtime); none found under {}",
            lib.display()
        )
    })
}

fn modelbus(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = common::modelbus();
    cmd.args(args).current_dir(dir).env("ORT_DYLIB_PATH", ort_dylib());
    cmd
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byom_example_scores_published_events() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_example(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/byom"), root);

    let out = ok(modelbus(root, &["validate", "--config", "modelbus.toml"]).output().unwrap(), "validate");
    assert!(out.contains("modelbus.toml: ok"), "{out}");
    let out = ok(
        modelbus(root, &["features", "load", "applicants", "features/applicants.csv", "--config", "modelbus.toml"])
            .output()
            .unwrap(),
        "features load",
    );
    assert!(out.contains("loaded 1000 entities"), "{out}");

    let log = root.join("worker.log");
    let mut worker = modelbus(root, &["run", "--config", "modelbus.toml"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // Two events, the second without an income (null: a missing value).
    let events = concat!(
        r#"{"type":"LoanApplied","source":"/test","subject":"A0042","data":{"application_id":"L-1","#,
        r#""applicant_id":"A0042","amount":15000,"term_months":36,"annual_income":48000}}"#,
        "\n",
        r#"{"type":"LoanApplied","source":"/test","subject":"A0007","data":{"application_id":"L-2","#,
        r#""applicant_id":"A0007","amount":30000,"term_months":60,"annual_income":null}}"#,
        "\n",
    );
    let mut publish = modelbus(root, &["publish", "--config", "modelbus.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        publish.stdin.take().unwrap().write_all(events.as_bytes()).unwrap();
    }
    let ids: Vec<String> = ok(publish.wait_with_output().unwrap(), "publish").lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2, "publish prints one id per event: {ids:?}");

    // Wait on the bus itself: `tail` refuses a topic that does not exist yet.
    let config = modelbus::config::load(&root.join("modelbus.toml")).unwrap();
    let bus = Bus::open(&config).unwrap();
    let arrived =
        common::wait_until(Duration::from_secs(30), || async { common::count(&bus, "loan-scored").await >= 2 }).await;
    assert!(arrived, "two results within 30 s; worker log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    let out = ok(
        modelbus(root, &["tail", "loan-scored", "--config", "modelbus.toml", "--from-beginning", "--count", "2"])
            .output()
            .unwrap(),
        "tail",
    );
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 2, "{out}");
    for r in &results {
        assert_eq!(r["type"], "LoanScored", "{r}");
        assert_eq!(r["modelname"], "default_risk", "{r}");
        assert_eq!(r["modelversion"], "loan-gb-1", "{r}");
        assert_eq!(r["dataschema"], "schemas/LoanScored/1.json", "{r}");
        let cause = r["causationid"].as_str().unwrap();
        assert!(ids.iter().any(|id| id == cause), "the result names its event: {r}");
        let p = r["data"]["default_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r}");
        let label = r["data"]["predicted_default"].as_i64().unwrap();
        assert_eq!(label, (p > 0.5) as i64, "argmax of two probabilities: {r}");
    }
    let by_app = |app: &str| {
        results.iter().find(|r| r["data"]["application_id"] == app).unwrap_or_else(|| panic!("{app}: {out}"))
    };
    let first = by_app("L-1");
    assert_eq!(first["data"]["applicant_id"], "A0042");
    assert_eq!(first["subject"], "A0042");
    let p = first["data"]["default_probability"].as_f64().unwrap();
    assert!((p - A0042_PROBABILITY).abs() <= 1e-5, "onnxruntime gave {A0042_PROBABILITY}, the worker {p}");
    assert_eq!(by_app("L-2")["data"]["applicant_id"], "A0007", "the event without an income is scored too");

    // SIGTERM: the worker drains, commits and exits cleanly.
    common::signal(&worker, libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = worker.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the worker did not stop within 30 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "worker exit {status}; log:\n{log_text}");
    assert!(log_text.contains("golden check passed"), "{log_text}");
    assert_eq!(common::count(&bus, "loan-applications.dlq").await, 0, "no dead letters");
}
