//! A deliberately broken config: every mistake is reported with its path,
//! all at once, and nothing starts.

mod common;

use std::process::Command;

const BROKEN: &str = r#"
data_dir = "data"
colour = "blue"

[bus]
kind = "embedded"

[bus.embedded]
partitions = 0
session_timeout = 6

[feature_stores.customers]
kind = "embedded"

[models.risk]
path = "model/risk.onnx"
sha256 = "abc"

[[workers]]
name = "claims-risk"
topic = "claims"
event_type = "ClaimCreated"
model = "risc"
result_type = "RiskScored"
feature_store = "customer"
entity_key = "customer_id"
unknown_knob = true

[workers.inputs]
input = ["data.amount", "feature.age"]

[workers.outputs]
risk_score = "probabilities[one]"

[workers.batch]
max_size = 256
max_wait = "soon"

[workers.retry]
max_attempts = 0

[[workers.sinks]]
topic = "claims"
"#;

fn expected() -> Vec<&'static str> {
    vec![
        "colour",
        "bus.embedded.session_timeout",
        "workers[0].unknown_knob",
        "workers[0].batch.max_wait",
        "bus.embedded.partitions",
        "models.risk.sha256",
        "workers[0].model",
        "workers[0].feature_store",
        "workers[0].entity_key",
        "workers[0].inputs.input[1]",
        "workers[0].outputs.risk_score",
        "workers[0].retry.max_attempts",
        "workers[0].sinks[0].topic",
    ]
}

#[test]
fn every_mistake_is_reported_with_its_path() {
    let errors = modelbus::config::load_str(BROKEN, std::path::Path::new("/tmp")).unwrap_err();
    let rendered: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    for path in expected() {
        assert!(errors.iter().any(|e| e.path == path), "no error at `{path}`; got:\n{}", rendered.join("\n"));
    }
    let max_wait = errors.iter().find(|e| e.path == "workers[0].batch.max_wait").unwrap();
    assert!(max_wait.message.contains("expected a duration like \"5ms\""), "{max_wait}");
}

#[test]
fn validate_and_run_refuse_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, BROKEN).unwrap();
    let out = Command::new(common::bin()).args(["validate", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in expected() {
        assert!(stderr.contains(path), "validate output lacks `{path}`:\n{stderr}");
    }
    let out = Command::new(common::bin()).args(["run", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("workers[0].model"));
    assert!(!dir.path().join("data").exists(), "nothing may start on a bad config");
}

#[test]
fn env_secrets_and_relative_paths() {
    std::env::set_var("MODELBUS_TEST_TOPIC", "from-env");
    let text = r#"
data_dir = "state"
[models.m]
path = "m.onnx"
[[workers]]
name = "w"
topic = "${MODELBUS_TEST_TOPIC}"
event_type = "E"
model = "m"
result_type = "R"
inputs = { input = ["data.x"] }
outputs = { y = "variable" }
sinks = [{ topic = "out" }]
"#;
    let c = modelbus::config::load_str(text, std::path::Path::new("/etc/mb")).unwrap();
    assert_eq!(c.workers[0].topic, "from-env");
    assert_eq!(c.data_dir, std::path::PathBuf::from("/etc/mb/state"));
    assert_eq!(c.models["m"].path, std::path::PathBuf::from("/etc/mb/m.onnx"));
    let missing = text.replace("MODELBUS_TEST_TOPIC", "MODELBUS_SURELY_UNSET");
    let errs = modelbus::config::load_str(&missing, std::path::Path::new("/")).unwrap_err();
    assert!(errs.iter().any(|e| e.path == "workers[0].topic" && e.message.contains("MODELBUS_SURELY_UNSET")));
}

#[test]
fn the_example_config_is_valid() {
    let c = common::claims(|t| t);
    let out =
        Command::new(common::bin()).args(["validate", "--deep", "--config"]).arg(&c.config_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kafka_settings_are_checked_by_path_and_secrets_pass_through() {
    std::env::set_var("MODELBUS_TEST_SASL_PASSWORD", "s3cret");
    let text = r#"
[bus]
kind = "kafka"
[bus.kafka]
brokers = ""
partitions = 0
session_timeout = "soon"
[bus.kafka.properties]
"enable.auto.commit" = "true"
"sasl.password" = "${MODELBUS_TEST_SASL_PASSWORD}"
[bus.kafka.consumer_properties]
"group.id" = "mine"
"fetch.wait.max.ms" = "10"
"#;
    let errs = modelbus::config::load_str(text, std::path::Path::new("/")).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "bus.kafka.brokers",
        "bus.kafka.partitions",
        "bus.kafka.session_timeout",
        "bus.kafka.properties.\"enable.auto.commit\"",
        "bus.kafka.consumer_properties.\"group.id\"",
    ] {
        assert!(paths.contains(&want), "{want} not reported: {paths:?}");
    }
    let ok = text
        .replace("brokers = \"\"", "brokers = \"k1:9092\"")
        .replace("partitions = 0", "partitions = 3")
        .replace("session_timeout = \"soon\"", "session_timeout = \"6s\"")
        .replace("\"enable.auto.commit\" = \"true\"\n", "")
        .replace("\"group.id\" = \"mine\"\n", "");
    let c = modelbus::config::load_str(&ok, std::path::Path::new("/")).unwrap();
    let modelbus::config::BusConfig::Kafka(kafka) = &c.bus else { panic!("kind = \"kafka\" was not read") };
    assert_eq!(kafka.properties["sasl.password"], "s3cret");
    assert_eq!(kafka.session_timeout, std::time::Duration::from_secs(6));
    assert_eq!(kafka.consumer_properties["fetch.wait.max.ms"], "10");
}

/// `modelbus validate` on `config`: (exit code, stderr).
fn validate(config: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(common::bin()).arg("validate").args(extra).arg("--config").arg(config).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn validate_reports_config_and_model_problems_all_at_once() {
    // An unknown key, a bad duration and a missing model file: all three,
    // each with its config path, from one run.
    let c = common::claims(|t| t);
    let text = std::fs::read_to_string(&c.config_path).unwrap();
    let broken = text
        .replace("max_in_flight = 4096", "max_in_flight = 4096\nmax_inflight = 10")
        .replace("max_wait = \"0ms\"", "max_wait = \"soon\"")
        .replace("path = \"model/risk.onnx\"", "path = \"model/nope.onnx\"");
    std::fs::write(&c.config_path, broken).unwrap();
    let (code, err) = validate(&c.config_path, &[]);
    assert_eq!(code, Some(2), "{err}");
    for want in ["workers[0].max_inflight", "workers[0].batch.max_wait", "models.risk.path"] {
        assert!(err.contains(want), "`{want}` not reported:\n{err}");
    }
    assert!(err.contains("nope.onnx"), "the missing file is named:\n{err}");
    // `--fast` skips the model, and reports the rest.
    let (code, err) = validate(&c.config_path, &["--fast"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("workers[0].batch.max_wait") && !err.contains("models.risk.path"), "{err}");
}

#[test]
fn validate_checks_output_indexes_against_the_model_as_it_runs() {
    // A three-class model: probabilities[3] does not exist, and an input
    // listed with too few columns.
    let (_d, path, _) =
        common::reading_deployment("gb_multi", "", "p = \"probabilities[3]\"\nq = \"probabilities[2]\"", "");
    let text = std::fs::read_to_string(&path).unwrap();
    let (code, err) = validate(&path, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("workers[0].outputs.p") && err.contains("3 value(s) per row"), "{err}");
    assert!(!err.contains("workers[0].outputs.q"), "probabilities[2] fits:\n{err}");
    std::fs::write(&path, text.replace("\"data.x4\", \"data.x5\"]", "\"data.x4\"]")).unwrap();
    let (_, err) = validate(&path, &[]);
    assert!(err.contains("workers[0].inputs.input") && err.contains("workers[0].outputs.p"), "both at once:\n{err}");
    // A worker refuses to start on it rather than dead-letter every event.
    let out = Command::new(common::bin()).args(["run", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("workers[0]"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The bus, a feature store and a sink each select their backend by
/// `kind`; a key none of them has, or one only another backend has, is
/// refused at its full path, all in one report, and a table for a backend
/// that is not selected is a warning naming its path.
#[test]
fn backend_sections_refuse_unknown_and_foreign_keys_at_their_paths_all_at_once() {
    let edit = |t: String| {
        t.replace("[bus.embedded]\npartitions = 4", "[bus.embedded]\npartitions = 4\nbrokers = \"k1:9092\"")
            .replace("[bus]\nkind = \"embedded\"", "[bus]\nkind = \"embedded\"\n\n[bus.kafka]\nbrokers = \"k1:9092\"")
            .replace(
                "[feature_stores.customers]\nkind = \"embedded\"",
                "[feature_stores.customers]\nkind = \"embedded\"\nfile = \"customers.csv\"",
            )
            .replace(
                "kind = \"topic\"\ntopic = \"risk-scored\"",
                "kind = \"topic\"\ntopic = \"risk-scored\"\nbucket = \"results\"",
            )
    };
    let example = include_str!("../examples/claims/modelbus.toml");
    let text = edit(example.to_string());
    let applied = text.matches("brokers").count() == 2 && text.contains("file = ") && text.contains("bucket = ");
    assert!(applied, "the example changed: the edits no longer apply");
    let errs = modelbus::config::load_str(&text, std::path::Path::new("/")).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in ["bus.embedded.brokers", "feature_stores.customers.file", "workers[0].sinks[0].bucket"] {
        assert!(paths.contains(&want), "{want} not reported: {errs:#?}");
    }
    let brokers = errs.iter().find(|e| e.path == "bus.embedded.brokers").unwrap();
    assert!(brokers.message.contains("is a key of kind `kafka`"), "{brokers}");
    assert!(brokers.message.contains("partitions"), "the known keys are listed: {brokers}");

    // Through the CLI: every path, and the warning, in one run.
    let dir = tempfile::tempdir().unwrap();
    common::copy_example(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims"), dir.path());
    let config = dir.path().join("modelbus.toml");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(common::bin()).args(["validate", "--fast", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in ["bus.embedded.brokers", "feature_stores.customers.file", "workers[0].sinks[0].bucket"] {
        assert!(stderr.contains(want), "validate output lacks `{want}`:\n{stderr}");
    }
    assert!(stderr.contains("warning: bus.kafka: ignored"), "no warning for the unselected table:\n{stderr}");
}

/// A Kafka config that still carries `[bus.embedded]` loads, and says that
/// table is ignored.
#[test]
fn a_table_for_an_unselected_bus_is_a_warning_naming_its_path() {
    let text = "[bus]\nkind = \"kafka\"\n\n[bus.kafka]\nbrokers = \"k1:9092\"\n\n[bus.embedded]\npartitions = 8\n";
    let c = modelbus::config::load_str(text, std::path::Path::new("/")).unwrap();
    assert!(matches!(c.bus, modelbus::config::BusConfig::Kafka(_)));
    let paths: Vec<&str> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["bus.embedded"]);
    assert!(c.warnings[0].message.contains("`bus.kind` is `kafka`"), "{}", c.warnings[0]);
    let bad_kind = modelbus::config::load_str("[bus]\nkind = \"kafak\"\n", std::path::Path::new("/")).unwrap_err();
    assert_eq!(bad_kind[0].path, "bus.kind");
    assert!(bad_kind[0].message.contains("known kinds: embedded, kafka"), "{}", bad_kind[0]);
}
