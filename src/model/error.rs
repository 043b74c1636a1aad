//! What goes wrong with a model, as types: [`ModelError`] is what callers
//! see and classify; [`LoadFailure`] is why a runtime refused a model file;
//! [`GoldenFailure`] is how a model disagreed with its golden set. Every
//! message names the model or the file, and the texts are the ones users
//! (and tests) already know.

use crate::config::Runtime;
use crate::error::{Classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model `{name}`: file {path} does not exist")]
    Missing { name: String, path: String },
    #[error("model `{name}`: cannot read {path}: {reason}")]
    Unreadable { name: String, path: String, reason: std::io::Error },
    #[error("model `{name}`: {path} has sha256 {actual}, but the config pins {expected}")]
    ShaMismatch { name: String, path: String, expected: String, actual: String },
    #[error("model `{name}`: cannot load {path}: {reason}{}", runtime_hint(*.runtime, .name))]
    Load { name: String, path: String, runtime: Runtime, reason: LoadFailure },
    #[error("golden check {path} failed: {detail}")]
    Golden { path: String, detail: GoldenFailure },
    #[error("model `{name}` needs runtime `{runtime}`, which this build does not include")]
    RuntimeUnavailable { name: String, runtime: &'static str },
    #[error("bad model input: {0}")]
    BadInput(String),
    #[error("inference failed: {0}")]
    Inference(String),
    /// A fault set at `model.infer` (`crate::faults`).
    #[error("injected {0} fault at model.infer")]
    Injected(ErrorClass),
}

/// tract covers most exported models, not every op: when it refuses one,
/// say where to go next.
fn runtime_hint(runtime: Runtime, name: &str) -> String {
    match runtime {
        Runtime::Tract => format!(
            "\n(tract, the pure-Rust runtime, cannot run this graph; `runtime = \"ort\"` under \
             [models.{name}] runs it on ONNX Runtime instead)"
        ),
        Runtime::Ort => String::new(),
    }
}

impl Classify for ModelError {
    fn class(&self) -> ErrorClass {
        match self {
            // The same rows fail the same way every time.
            ModelError::BadInput(_) | ModelError::Inference(_) => ErrorClass::Permanent,
            ModelError::Injected(c) => *c,
            _ => ErrorClass::Fatal,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ModelError::Missing { .. } => "model_missing",
            ModelError::Unreadable { .. } => "model_unreadable",
            ModelError::ShaMismatch { .. } => "model_sha256_mismatch",
            ModelError::Load { .. } => "model_load",
            ModelError::Golden { .. } => "model_golden_mismatch",
            ModelError::RuntimeUnavailable { .. } => "runtime_unavailable",
            ModelError::BadInput(_) => "bad_model_input",
            ModelError::Inference(_) => "inference_failed",
            ModelError::Injected(_) => "injected_fault",
        }
    }
}

/// Why a runtime could not load a model file. The runtimes' own errors are
/// kept as their text: they are messages for people, not for matching.
///
/// Clone because ONNX Runtime's library is loaded once per process and its
/// failure is handed to every model that asks for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadFailure {
    /// tract could not read the bytes as an ONNX protobuf.
    #[error("not a valid ONNX file: {0}")]
    NotOnnx(String),
    #[error("the ONNX file has no graph")]
    NoGraph,
    /// tract could not translate, type or optimise the graph; most often an
    /// op or an attribute it does not implement.
    #[error("{0}")]
    Graph(String),
    #[error("input `{input}` has no element type")]
    UntypedInput { input: String },
    /// The element type, as the runtime spells it.
    #[error("input `{input}` has unsupported type {ty}")]
    UnsupportedInputType { input: String, ty: String },
    #[error("input `{input}` must be 2-D [batch, features], is {rank}-D")]
    InputRank { input: String, rank: usize },
    #[error("input `{input}` has no fixed feature width")]
    UnfixedWidth { input: String },
    /// `ORT_DYLIB_PATH` is not set.
    #[cfg(feature = "ort")]
    #[error(
        "runtime `ort` loads libonnxruntime.so at run time: set {} to its path \
         (the onnxruntime wheel has it in onnxruntime/capi/)",
        super::ort_rt::DYLIB_ENV
    )]
    OrtDylibUnset,
    #[cfg(feature = "ort")]
    #[error("cannot load ONNX Runtime from {path} ({}): {detail}", super::ort_rt::DYLIB_ENV)]
    OrtDylibLoad { path: String, detail: String },
    /// The library loaded but would not create its environment.
    #[cfg(feature = "ort")]
    #[error("cannot start ONNX Runtime from {path}: {detail}")]
    OrtStart { path: String, detail: String },
    /// ONNX Runtime refused a session setting.
    #[cfg(feature = "ort")]
    #[error("{0}")]
    OrtSession(String),
    #[cfg(feature = "ort")]
    #[error("not a valid ONNX file for ONNX Runtime: {0}")]
    OrtNotOnnx(String),
    #[cfg(feature = "ort")]
    #[error("input `{input}` is not a tensor")]
    NotTensor { input: String },
    #[cfg(feature = "ort")]
    #[error("input `{input}` must be 2-D [batch, features] with a fixed width")]
    OrtInputShape { input: String },
}

/// How a model failed its golden check.
#[derive(Debug, thiserror::Error)]
pub enum GoldenFailure {
    #[error("cannot read: {0}")]
    Unreadable(std::io::Error),
    #[error("invalid golden file: {0}")]
    Invalid(serde_json::Error),
    #[error("no golden input for model input `{input}`")]
    MissingInput { input: String },
    /// The model could not run the golden inputs at all.
    #[error("{0}")]
    Run(Box<ModelError>),
    #[error("model has no output `{output}`")]
    MissingOutput { output: String },
    #[error("output `{output}` has {got} values, golden has {want}")]
    Length { output: String, got: usize, want: usize },
    #[error("output `{output}` value {index}: got {got}, onnxruntime gave {want} (|diff| {diff:e} > {tolerance:e})")]
    Mismatch { output: String, index: usize, got: f32, want: f64, diff: f64, tolerance: f64 },
}
