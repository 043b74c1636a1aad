//! The second runtime, ONNX Runtime through `ort` (Cargo feature `ort`):
//! every export family loads and matches the golden outputs made by the
//! onnxruntime wheel, and both runtimes agree on the claims model row by row.
//! CI runs this with `ORT_DYLIB_PATH` pointing into that wheel; without the
//! library the tests fail, naming the variable.
#![cfg(feature = "ort")]

use std::path::PathBuf;

use modelbus::config::Runtime;
use modelbus::model::{Model, TensorInput};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

fn check(name: &str) {
    let path = models_dir().join(format!("{name}.onnx"));
    let model = Model::load_path_with(&path, Runtime::Ort).unwrap_or_else(|e| panic!("{name}: {e}"));
    let golden = models_dir().join(format!("{name}.golden.json"));
    let worst = model.check_golden(&golden).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(worst <= 1e-5, "{name}: max abs diff {worst}");
}

macro_rules! family {
    ($($name:ident),*) => { $( #[test] fn $name() { check(stringify!($name)); } )* };
}

family!(logreg, logreg_scaled, gb_clf, gb_reg, rf_clf, rf_reg, hgb_clf, mlp_clf, lgbm_clf, xgb_clf, xgb_reg, gb_multi);

#[test]
fn both_runtimes_agree_on_the_claims_model() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/claims/model/risk.onnx");
    let tract = Model::load_path_with(&path, Runtime::Tract).unwrap();
    let ort = Model::load_path_with(&path, Runtime::Ort).unwrap();
    assert!(ort.allow_nan, "tree ensembles accept missing values on ort too");
    let width = tract.inputs()[0].width;
    let rows = 300;
    // Deterministic, varied rows, with some missing cells.
    let data: Vec<f32> = (0..rows * width)
        .map(|i| if i % 37 == 0 { f32::NAN } else { ((i * 7919) % 1000) as f32 / 10.0 - 20.0 })
        .collect();
    let input = || vec![TensorInput { rows, cols: width, data: data.clone() }];
    let a = tract.run(input()).unwrap();
    let b = ort.run(input()).unwrap();
    let mut compared = 0;
    for out in &a {
        let other = b.iter().find(|o| o.name == out.name).unwrap_or_else(|| panic!("ort lacks output {}", out.name));
        assert_eq!(out.shape, other.shape, "{}", out.name);
        for (x, y) in out.data.iter().zip(&other.data) {
            assert!((x - y).abs() <= 1e-5, "{}: tract {x} vs ort {y}", out.name);
            compared += 1;
        }
    }
    assert!(compared >= rows, "compared {compared} values");
}
