//! Every model export family our users have loads in the pure-Rust runtime
//! and matches onnxruntime's outputs (the golden files, made by
//! `tests/models/gen_models.py` with onnxruntime) within 1e-5.

use std::path::PathBuf;

use modelbus::model::Model;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

fn check(name: &str) {
    let path = models_dir().join(format!("{name}.onnx"));
    let model = Model::load_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let golden = models_dir().join(format!("{name}.golden.json"));
    let worst = model.check_golden(&golden).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(worst <= 1e-5, "{name}: max abs diff {worst}");
    eprintln!("{name}: max |tract - onnxruntime| = {worst:e}");
}

macro_rules! family {
    ($($name:ident),*) => { $( #[test] fn $name() { check(stringify!($name)); } )* };
}

family!(logreg, logreg_scaled, gb_clf, gb_reg, rf_clf, rf_reg, hgb_clf, mlp_clf, lgbm_clf, xgb_clf, xgb_reg, gb_multi);

#[test]
fn claims_model_matches_onnxruntime() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/claims/model");
    let model = Model::load_path(&root.join("risk.onnx")).unwrap();
    assert!(model.check_golden(&root.join("risk.golden.json")).unwrap() <= 1e-5);
    assert!(model.allow_nan, "tree ensembles accept missing values");
}

#[test]
fn a_missing_model_is_named() {
    let err = Model::load_path(&models_dir().join("nope.onnx")).unwrap_err().to_string();
    assert!(err.contains("nope.onnx"), "{err}");
}

#[test]
fn a_corrupt_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.onnx");
    std::fs::write(&p, b"this is not a protobuf").unwrap();
    let err = Model::load_path(&p).unwrap_err().to_string();
    assert!(err.contains("broken.onnx"), "{err}");
}

#[test]
fn a_sha256_mismatch_is_refused_naming_the_file() {
    let cfg = modelbus::config::ModelConfig {
        path: models_dir().join("logreg.onnx"),
        sha256: Some("0".repeat(64)),
        version: None,
        runtime: Default::default(),
        golden: None,
        allow_nan: None,
    };
    let err = Model::load("logreg", &cfg).unwrap_err().to_string();
    assert!(err.contains("logreg.onnx") && err.contains("sha256"), "{err}");
}

#[test]
fn a_golden_mismatch_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(models_dir().join("gb_clf.onnx"), dir.path().join("m.onnx")).unwrap();
    let mut golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models_dir().join("gb_clf.golden.json")).unwrap()).unwrap();
    let first = golden["outputs"]["probabilities"]["data"][0].as_f64().unwrap();
    golden["outputs"]["probabilities"]["data"][0] = serde_json::json!(first + 0.01);
    std::fs::write(dir.path().join("m.golden.json"), golden.to_string()).unwrap();
    let err = Model::load_path(&dir.path().join("m.onnx")).unwrap_err().to_string();
    assert!(err.contains("m.golden.json"), "{err}");
}
