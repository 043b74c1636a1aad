//! The second runtime: ONNX Runtime through the `ort` crate, for models
//! beyond what [`super::onnx`] covers. Built only with the `ort` Cargo
//! feature; the shared library is loaded at run time from `ORT_DYLIB_PATH`
//! (the onnxruntime wheel pinned in `requirements-dev.txt` carries one), so
//! the binary has no link-time dependency on it.

use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::{builder::GraphOptimizationLevel, Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};
use tract_onnx::prelude::Framework as _;

use super::{InputSpec, InputType, LoadFailure, ModelError, Output, TensorInput};

/// The variable that names `libonnxruntime.so`.
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

pub struct OrtModel {
    // `Session::run` takes `&mut self`; batches of one model run one at a time.
    session: Mutex<Session>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<String>,
    pub has_tree_ensemble: bool,
}

/// One environment per process, created on first use; a failure to load the
/// library is remembered so every model names the same cause.
fn environment() -> Result<&'static Environment, LoadFailure> {
    static ENV: OnceLock<Result<Environment, LoadFailure>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = std::env::var_os(DYLIB_ENV).ok_or(LoadFailure::OrtDylibUnset)?;
        let shown = std::path::Path::new(&path).display().to_string();
        ort::init_from(&path)
            .map_err(|e| LoadFailure::OrtDylibLoad { path: shown.clone(), detail: e.to_string() })?
            .with_name("modelbus")
            .build()
            .map_err(|e| LoadFailure::OrtStart { path: shown, detail: e.to_string() })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// ONNX Runtime refusing a session setting.
fn session_err(e: impl std::fmt::Display) -> LoadFailure {
    LoadFailure::OrtSession(e.to_string())
}

impl OrtModel {
    pub fn load(bytes: &[u8]) -> Result<OrtModel, LoadFailure> {
        let env = environment()?;
        let session = Session::builder(env)
            .map_err(session_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(session_err)?
            // Inference already runs on its own blocking thread per batch;
            // one intra-op thread keeps it from fighting the worker for cores.
            .with_intra_threads(1)
            .map_err(session_err)?
            .commit_from_memory(bytes)
            .map_err(|e| LoadFailure::OrtNotOnnx(e.to_string()))?;
        let mut inputs = Vec::new();
        for outlet in session.inputs() {
            let name = outlet.name().to_string();
            let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
                return Err(LoadFailure::NotTensor { input: name });
            };
            let ty = match ty {
                TensorElementType::Float32 => InputType::F32,
                TensorElementType::Float64 => InputType::F64,
                TensorElementType::Int64 => InputType::I64,
                TensorElementType::Int32 => InputType::I32,
                other => return Err(LoadFailure::UnsupportedInputType { input: name, ty: format!("{other:?}") }),
            };
            if shape.len() != 2 || shape[1] < 1 {
                return Err(LoadFailure::OrtInputShape { input: name });
            }
            inputs.push(InputSpec { name, width: shape[1] as usize, ty });
        }
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        // Missing values are legal for tree ensembles; ONNX Runtime does not
        // say which ops a graph holds, so look at the proto ourselves.
        let has_tree_ensemble = super::ml_ops::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .ok()
            .and_then(|p| p.graph)
            .is_some_and(|g| g.node.iter().any(|n| n.op_type.starts_with("TreeEnsemble")));
        Ok(OrtModel { session: Mutex::new(session), inputs, outputs, has_tree_ensemble })
    }

    pub fn run(&self, inputs: Vec<TensorInput>) -> Result<Vec<Output>, ModelError> {
        let bad = |e: ort::Error| ModelError::BadInput(e.to_string());
        let mut values: Vec<(String, SessionInputValue<'static>)> = Vec::with_capacity(inputs.len());
        for (input, spec) in inputs.into_iter().zip(&self.inputs) {
            let shape = [input.rows, input.cols];
            let value: SessionInputValue = match spec.ty {
                InputType::F32 => Tensor::from_array((shape, input.data)).map_err(bad)?.into(),
                InputType::F64 => {
                    let v: Vec<f64> = input.data.iter().map(|x| *x as f64).collect();
                    Tensor::from_array((shape, v)).map_err(bad)?.into()
                }
                InputType::I64 | InputType::I32 => {
                    spec.check_integers(&input.data)?;
                    if spec.ty == InputType::I64 {
                        let v: Vec<i64> = input.data.iter().map(|x| *x as i64).collect();
                        Tensor::from_array((shape, v)).map_err(bad)?.into()
                    } else {
                        let v: Vec<i32> = input.data.iter().map(|x| *x as i32).collect();
                        Tensor::from_array((shape, v)).map_err(bad)?.into()
                    }
                }
            };
            values.push((spec.name.clone(), value));
        }
        let mut session = self.session.lock().map_err(|_| ModelError::Inference("session lock poisoned".into()))?;
        let results = session.run(values).map_err(|e| ModelError::Inference(e.to_string()))?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let Some(v) = results.get(name) else { continue };
            // Labels may be strings, and ZipMap outputs are maps: only numeric
            // tensors are mapped into results, as with tract.
            let (shape, data): (Vec<usize>, Vec<f32>) = if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
                (s.iter().map(|x| *x as usize).collect(), d.to_vec())
            } else if let Ok((s, d)) = v.try_extract_tensor::<f64>() {
                (s.iter().map(|x| *x as usize).collect(), d.iter().map(|x| *x as f32).collect())
            } else if let Ok((s, d)) = v.try_extract_tensor::<i64>() {
                (s.iter().map(|x| *x as usize).collect(), d.iter().map(|x| *x as f32).collect())
            } else {
                continue;
            };
            out.push(Output { name: name.clone(), shape, data });
        }
        Ok(out)
    }
}
