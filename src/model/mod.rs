//! Models: an ONNX file run in-process, loaded and optimised once, shared by
//! every task behind an `Arc`, run in batches off the async runtime.
//!
//! Loading verifies the file (present, sha256 if pinned), builds the runtime
//! named in the config (no silent fallback from one runtime to another) and
//! checks the golden set beside the model, so a model that a runtime computes
//! wrongly fails start-up instead of scoring events. Inputs arrive as `f32`
//! rows assembled by the worker and are cast to each input's type here.

mod error;
mod golden;
pub(crate) mod ml_ops;
mod onnx;
#[cfg(feature = "ort")]
mod ort_rt;
mod output;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use error::{GoldenFailure, LoadFailure, ModelError};
pub use output::OutputExpr;

use crate::config::{ModelConfig, Runtime};

/// The element type a model input is cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    F32,
    F64,
    I64,
    I32,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    /// Columns per row.
    pub width: usize,
    pub ty: InputType,
}

impl InputSpec {
    /// An integer-typed input has no missing value: NaN cannot be cast.
    /// The same rule on every runtime.
    pub(crate) fn check_integers(&self, data: &[f32]) -> Result<(), ModelError> {
        if matches!(self.ty, InputType::I64 | InputType::I32) && data.iter().any(|x| !x.is_finite()) {
            return Err(ModelError::BadInput(format!(
                "input `{}` is integer-typed and cannot take a missing value",
                self.name
            )));
        }
        Ok(())
    }
}

/// A batch for one input: `rows x cols` values, row-major, NaN for missing.
#[derive(Debug, Clone)]
pub struct TensorInput {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

/// One output of a batch, as `f32`, row-major.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Output {
    /// Values per batch row.
    pub fn width(&self) -> usize {
        self.shape.iter().skip(1).product::<usize>().max(1)
    }
}

/// The fault point checked once per [`Model::run`].
const INFER_FAULT: &str = "model.infer";

/// The fault set at `point`, if it fires now, as the error a failed
/// inference would be.
fn injected(point: &str) -> Result<(), ModelError> {
    match crate::faults::check(point) {
        Some(class) => Err(ModelError::Injected(class)),
        None => Ok(()),
    }
}

pub(crate) enum Backend {
    Tract(onnx::TractModel),
    #[cfg(feature = "ort")]
    Ort(ort_rt::OrtModel),
}

pub struct Model {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Whether NaN may reach the model (tree ensembles route missing values).
    pub allow_nan: bool,
    backend: Backend,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl Model {
    /// Loads, verifies and golden-checks a model. Every failure names the file.
    pub fn load(name: &str, cfg: &ModelConfig) -> Result<Model, ModelError> {
        let path = cfg.path.display().to_string();
        if !cfg.path.exists() {
            return Err(ModelError::Missing { name: name.into(), path });
        }
        let bytes = std::fs::read(&cfg.path).map_err(|reason| ModelError::Unreadable {
            name: name.into(),
            path: path.clone(),
            reason,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = &cfg.sha256 {
            if !expected.eq_ignore_ascii_case(&sha256) {
                return Err(ModelError::ShaMismatch {
                    name: name.into(),
                    path,
                    expected: expected.clone(),
                    actual: sha256,
                });
            }
        }
        let load_err =
            |reason| ModelError::Load { name: name.into(), path: path.clone(), runtime: cfg.runtime, reason };
        let backend = match cfg.runtime {
            // A refusal by tract says to try ONNX Runtime (`error::runtime_hint`).
            Runtime::Tract => Backend::Tract(onnx::TractModel::load(&bytes).map_err(load_err)?),
            #[cfg(feature = "ort")]
            Runtime::Ort => Backend::Ort(ort_rt::OrtModel::load(&bytes).map_err(load_err)?),
            #[cfg(not(feature = "ort"))]
            Runtime::Ort => return Err(ModelError::RuntimeUnavailable { name: name.into(), runtime: "ort" }),
        };
        let has_trees = match &backend {
            Backend::Tract(m) => m.has_tree_ensemble,
            #[cfg(feature = "ort")]
            Backend::Ort(m) => m.has_tree_ensemble,
        };
        let model = Model {
            name: name.into(),
            version: cfg.version.clone().unwrap_or_else(|| sha256[..12].to_string()),
            allow_nan: cfg.allow_nan.unwrap_or(has_trees),
            sha256,
            backend,
        };
        let golden = cfg.golden.clone().or_else(|| {
            let p = cfg.path.with_extension("golden.json");
            p.exists().then_some(p)
        });
        if let Some(g) = golden {
            let worst = golden::check(&model, &g)?;
            tracing::info!(model = name, golden = %g.display(), max_abs_diff = worst, "golden check passed");
        }
        Ok(model)
    }

    /// Loads a model file with default settings (tests, `bench`).
    pub fn load_path(path: &Path) -> Result<Model, ModelError> {
        Model::load_path_with(path, Runtime::Tract)
    }

    /// Loads a model file on the given runtime, with default settings.
    pub fn load_path_with(path: &Path, runtime: Runtime) -> Result<Model, ModelError> {
        let cfg = ModelConfig {
            path: path.to_path_buf(),
            sha256: None,
            version: None,
            runtime,
            golden: None,
            allow_nan: None,
        };
        Model::load(&path.file_stem().unwrap_or_default().to_string_lossy(), &cfg)
    }

    pub fn inputs(&self) -> &[InputSpec] {
        match &self.backend {
            Backend::Tract(m) => &m.inputs,
            #[cfg(feature = "ort")]
            Backend::Ort(m) => &m.inputs,
        }
    }

    pub fn output_names(&self) -> &[String] {
        match &self.backend {
            Backend::Tract(m) => &m.outputs,
            #[cfg(feature = "ort")]
            Backend::Ort(m) => &m.outputs,
        }
    }

    pub fn check_golden(&self, path: &Path) -> Result<f64, ModelError> {
        golden::check(self, path)
    }

    /// Runs one batch. CPU-bound: call it from a blocking thread. Each call
    /// is a check of the fault point `model.infer` (`crate::faults`).
    pub fn run(&self, inputs: Vec<TensorInput>) -> Result<Vec<Output>, ModelError> {
        injected(INFER_FAULT)?;
        self.run_unfaulted(inputs)
    }

    /// [`Model::run`] without the fault point: for checks of the model
    /// itself (the golden set at load time), which an injected inference
    /// failure must neither fail nor use up.
    pub(crate) fn run_unfaulted(&self, inputs: Vec<TensorInput>) -> Result<Vec<Output>, ModelError> {
        let specs = self.inputs();
        if inputs.len() != specs.len() {
            return Err(ModelError::BadInput(format!("model takes {} inputs, got {}", specs.len(), inputs.len())));
        }
        for (i, s) in inputs.iter().zip(specs) {
            if i.cols != s.width || i.data.len() != i.rows * i.cols {
                return Err(ModelError::BadInput(format!(
                    "input `{}` takes {} columns, got {} ({} values for {} rows)",
                    s.name,
                    s.width,
                    i.cols,
                    i.data.len(),
                    i.rows
                )));
            }
        }
        match &self.backend {
            Backend::Tract(m) => m.run(inputs),
            #[cfg(feature = "ort")]
            Backend::Ort(m) => m.run(inputs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};
    use crate::faults::{self, Fault};

    /// The same path as `model.infer`, on points of its own so that no
    /// other test's inference fails.
    #[test]
    fn injected_faults_classify_as_set() {
        for (point, class) in [
            ("test.model.infer.transient", ErrorClass::Transient),
            ("test.model.infer.permanent", ErrorClass::Permanent),
            ("test.model.infer.fatal", ErrorClass::Fatal),
        ] {
            faults::set(point, Fault { class, remaining: Some(1) });
            let e = injected(point).unwrap_err();
            assert_eq!((e.class(), e.code()), (class, "injected_fault"), "{e}");
            assert_eq!(e.to_string(), format!("injected {class} fault at model.infer"));
            assert!(injected(point).is_ok(), "one failure, then none");
        }
        assert!(injected("test.model.infer.unset").is_ok());
    }
}
