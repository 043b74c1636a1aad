//! Golden sets: inputs and the outputs onnxruntime produced for them, written
//! by each model's training script beside the model as `<model>.golden.json`.
//! Checking them at load time is what catches a runtime that silently
//! computes something else (tract's GTE branches, binary tree labels).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{GoldenFailure, Model, ModelError, TensorInput};

#[derive(Debug, Deserialize)]
struct Golden {
    #[serde(default = "default_tol")]
    tolerance: f64,
    inputs: BTreeMap<String, GoldenTensor>,
    outputs: BTreeMap<String, GoldenTensor>,
}

fn default_tol() -> f64 {
    1e-5
}

#[derive(Debug, Deserialize)]
struct GoldenTensor {
    shape: Vec<usize>,
    /// NaN is written as `null`.
    data: Vec<Option<f64>>,
}

/// Runs the golden inputs and compares every golden output; returns the
/// largest absolute difference seen.
pub fn check(model: &Model, path: &Path) -> Result<f64, ModelError> {
    let fail = |detail: GoldenFailure| ModelError::Golden { path: path.display().to_string(), detail };
    let text = std::fs::read_to_string(path).map_err(|e| fail(GoldenFailure::Unreadable(e)))?;
    let golden: Golden = serde_json::from_str(&text).map_err(|e| fail(GoldenFailure::Invalid(e)))?;
    let mut inputs = Vec::new();
    for spec in model.inputs() {
        let t = golden
            .inputs
            .get(&spec.name)
            .ok_or_else(|| fail(GoldenFailure::MissingInput { input: spec.name.clone() }))?;
        let rows = t.shape.first().copied().unwrap_or(0);
        inputs.push(TensorInput {
            rows,
            cols: t.shape.iter().skip(1).product(),
            data: t.data.iter().map(|v| v.map_or(f32::NAN, |v| v as f32)).collect(),
        });
    }
    let outputs = model.run_unfaulted(inputs).map_err(|e| fail(GoldenFailure::Run(Box::new(e))))?;
    let mut worst = 0f64;
    for (name, expected) in &golden.outputs {
        let out = outputs
            .iter()
            .find(|o| &o.name == name)
            .ok_or_else(|| fail(GoldenFailure::MissingOutput { output: name.clone() }))?;
        if out.data.len() != expected.data.len() {
            return Err(fail(GoldenFailure::Length {
                output: name.clone(),
                got: out.data.len(),
                want: expected.data.len(),
            }));
        }
        for (i, (got, want)) in out.data.iter().zip(&expected.data).enumerate() {
            let want = want.unwrap_or(f64::NAN);
            let diff = (*got as f64 - want).abs();
            // `diff` is NaN when one side is: a mismatch unless both are.
            let within = diff <= golden.tolerance || (want.is_nan() && got.is_nan());
            if !within {
                return Err(fail(GoldenFailure::Mismatch {
                    output: name.clone(),
                    index: i,
                    got: *got,
                    want,
                    diff,
                    tolerance: golden.tolerance,
                }));
            }
            if diff.is_finite() {
                worst = worst.max(diff);
            }
        }
    }
    Ok(worst)
}
