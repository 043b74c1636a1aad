//! The claims example on the embedded bus, in-process: reference events are
//! scored exactly as onnxruntime scored them, results carry the trace and
//! causation, and bad input is dead-lettered at its stage with nothing lost.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use modelbus::app::App;
use modelbus::dead_letter::DeadLetter;
use modelbus::event::{result_id, Event, Record};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn reference() -> (Vec<Value>, HashMap<String, f64>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let events: Vec<Value> = std::fs::read_to_string(format!("{root}/examples/claims/reference/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scores = std::fs::read_to_string(format!("{root}/examples/claims/reference/scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["risk_score"].as_f64().unwrap())
        })
        .collect();
    (events, scores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_events_score_like_onnxruntime_and_bad_input_is_dead_lettered() {
    let c = common::claims(|t| t);
    let app = App::load(c.config.clone()).await.unwrap();
    let workers = app.workers().await.unwrap();
    let token = CancellationToken::new();
    let running = tokio::spawn(App::run(workers, token.clone()));

    let (events, scores) = reference();
    let mut inputs: HashMap<String, Event> = HashMap::new();
    let mut records: Vec<Record> = Vec::new();
    let mut bad: Vec<(&str, Record)> = Vec::new();
    for (i, v) in events.iter().enumerate() {
        let e = Event::from_structured_for_publish(v.clone()).unwrap();
        inputs.insert(e.id.clone(), e.clone());
        records.push(e.to_record());
        // Interleave one bad record of each kind among the good ones.
        let template = e.to_record();
        match i {
            10 => bad.push(("decode", Record { value: b"{not json".to_vec(), ..template })),
            20 => {
                let mut r = template;
                r.headers.retain(|k, _| k != "ce_source");
                bad.push(("decode", r));
            }
            30 => {
                let mut ev = e.clone();
                ev.id = "bad-schema".into();
                ev.data["amount"] = json!("a lot");
                bad.push(("validate", ev.to_record()));
            }
            40 => {
                let mut ev = e.clone();
                ev.id = "bad-size".into();
                ev.data["claim_id"] = json!("x".repeat(2 << 20));
                bad.push(("validate", ev.to_record()));
            }
            50 => {
                let mut ev = e.clone();
                ev.id = "bad-entity".into();
                ev.data["customer_id"] = json!("C99999");
                bad.push(("features", ev.to_record()));
            }
            _ => {}
        }
    }
    let mut all = records.clone();
    for (j, (_, r)) in bad.iter().enumerate() {
        all.insert(10 * (j + 1) + j, r.clone());
    }
    app.bus.publish("claims", all).await.unwrap();
    // Undecodable bytes from outside, the way an operator replays captured traffic.
    let out = std::process::Command::new(common::bin())
        .args(["publish", "--raw", "--key", "C00001", "--topic", "claims", "--config"])
        .arg(&c.config_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"\x00\x01 not an event")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    bad.push((
        "decode",
        Record { key: Some(b"C00001".to_vec()), headers: Default::default(), value: b"\x00\x01 not an event".to_vec() },
    ));

    let bus = app.bus.clone();
    let want = events.len() as u64;
    let nbad = bad.len() as u64;
    let done =
        common::wait_until(Duration::from_secs(60), || {
            let bus = bus.clone();
            async move {
                common::count(&bus, "risk-scored").await >= want && common::count(&bus, "claims.dlq").await >= nbad
            }
        })
        .await;
    token.cancel();
    running.await.unwrap().unwrap();
    assert!(done, "results or dead letters missing");

    let results = common::read_all(&app.bus, "risk-scored").await;
    assert_eq!(results.len() as u64, want, "exactly one result per good event");
    let mut worst = 0f64;
    for d in &results {
        let r = Event::from_record(&d.record).unwrap();
        let cause_id = r.extensions["causationid"].clone();
        let cause = &inputs[&cause_id];
        let expected = scores[&cause_id];
        let got = r.data["risk_score"].as_f64().unwrap();
        worst = worst.max((got - expected).abs());
        assert!((got - expected).abs() <= 1e-5, "{cause_id}: got {got}, onnxruntime {expected}");
        assert_eq!(r.data["risk_label"], json!(if got >= 0.5 { 1 } else { 0 }));
        assert_eq!(r.traceparent.trace_id, cause.traceparent.trace_id, "trace id kept");
        assert_ne!(r.traceparent.span_id, cause.traceparent.span_id, "new span");
        assert_eq!(r.extensions["modelversion"], "risk-gb-1");
        assert_eq!(r.extensions["modelname"], "risk");
        assert_eq!(r.ty, "RiskScored");
        assert_eq!(r.id, result_id(&cause.source, &cause.id, "claims-risk", "risk-gb-1"));
        assert_eq!(d.record.key, Some(cause.partition_key().as_bytes().to_vec()), "result keyed like its cause");
        // The worker encodes results directly; they must be exactly what the
        // envelope itself writes for the same event.
        let again = r.to_record();
        assert_eq!(again.headers, d.record.headers, "result headers");
        assert_eq!(again.key, d.record.key);
        let (a, b): (Value, Value) =
            (serde_json::from_slice(&again.value).unwrap(), serde_json::from_slice(&d.record.value).unwrap());
        assert_eq!(a, b, "result data");
    }
    eprintln!("max |modelbus - onnxruntime| over {} reference events: {worst:e}", results.len());

    let dls: Vec<DeadLetter> = common::read_all(&app.bus, "claims.dlq")
        .await
        .into_iter()
        .map(|d| DeadLetter::from_record(d.record, d.tp.partition, d.offset).unwrap())
        .collect();
    assert_eq!(dls.len(), bad.len(), "each bad record dead-lettered exactly once");
    for (stage, original) in &bad {
        let dl = dls
            .iter()
            .find(|d| d.original() == *original)
            .unwrap_or_else(|| panic!("no dead letter with the original bytes for stage {stage}"));
        assert_eq!(dl.attr("dlstage"), *stage);
        assert_eq!(dl.attr("dlclass"), "permanent");
        assert_eq!(dl.attr("dlattempts"), "1");
        assert_eq!(dl.attr("dlworker"), "claims-risk");
        assert_eq!(dl.attr("dlgroup"), "claims-risk");
        assert_eq!(dl.attr("dlmodelversion"), "risk-gb-1");
        assert_eq!(dl.attr("dltopic"), "claims");
        assert!(!dl.attr("dlreason").is_empty());
        assert!(!dl.attr("dlcode").is_empty());
    }
    let codes: Vec<&str> = dls.iter().map(|d| d.attr("dlcode")).collect();
    for code in ["malformed_json", "missing_attribute", "schema_violation", "payload_too_large", "unknown_entity"] {
        assert!(codes.contains(&code), "no dead letter with code {code}: {codes:?}");
    }
}
