//! Whether a worker's `inputs` and `outputs` fit its model as loaded: every
//! model input mapped with the right number of columns, no mapping of an
//! input the model lacks, every output expression naming a real output,
//! and every index within that output's real width. The widths are those
//! of an actual run (one row of zeros), not of the graph's declared
//! shapes, which exporters often leave symbolic. Shared by `modelbus
//! validate` (every problem, each with its path) and worker start-up
//! (which refuses to start on the first, instead of dead-lettering every
//! event with `output_shape`).

use crate::config::{ConfigError, WorkerConfig};
use crate::model::{Model, OutputExpr, TensorInput};

/// Every mismatch between `workers[index]` (`w`) and `model`.
pub fn check(w: &WorkerConfig, index: usize, model: &Model) -> Vec<ConfigError> {
    let p = format!("workers[{index}]");
    let mut errs = Vec::new();
    let mut err = |path: String, message: String| errs.push(ConfigError { path, message });
    for spec in model.inputs() {
        match w.inputs.get(&spec.name) {
            None => err(
                format!("{p}.inputs"),
                format!("model `{}` has an input `{}` that the worker does not map", w.model, spec.name),
            ),
            Some(cols) if cols.len() != spec.width => err(
                format!("{p}.inputs.{}", spec.name),
                format!("model `{}` takes {} columns, {} are listed", w.model, spec.width, cols.len()),
            ),
            Some(_) => {}
        }
    }
    for name in w.inputs.keys() {
        if !model.inputs().iter().any(|s| &s.name == name) {
            err(format!("{p}.inputs.{name}"), format!("model `{}` has no input `{name}`", w.model));
        }
    }
    let probe = probe(model);
    for (field, expr) in &w.outputs {
        // A bad expression is the config's own error, reported there.
        let Ok(e) = expr.parse::<OutputExpr>() else { continue };
        if !model.output_names().iter().any(|o| o == e.tensor()) {
            err(
                format!("{p}.outputs.{field}"),
                format!(
                    "model `{}` has no output `{}` (it has: {})",
                    w.model,
                    e.tensor(),
                    model.output_names().join(", ")
                ),
            );
            continue;
        }
        let Some(outputs) = &probe else { continue };
        let Some(out) = outputs.iter().find(|o| o.name == e.tensor()) else { continue };
        if e.eval(out, 0).is_none() {
            err(
                format!("{p}.outputs.{field}"),
                format!(
                    "`{expr}` does not fit output `{}` of model `{}`: it has {} value(s) per row",
                    e.tensor(),
                    w.model,
                    out.width()
                ),
            );
        }
    }
    errs
}

/// The model's outputs for one row of zeros; `None` when the model cannot
/// run on it (its golden check at load time covers running).
fn probe(model: &Model) -> Option<Vec<crate::model::Output>> {
    let inputs =
        model.inputs().iter().map(|s| TensorInput { rows: 1, cols: s.width, data: vec![0.0; s.width] }).collect();
    model.run_unfaulted(inputs).ok()
}
