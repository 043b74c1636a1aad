//! The pure-Rust runtime: tract for the graph, with modelbus's own ONNX-ML
//! ops ([`super::ml_ops`]) registered over tract's stock ones. The batch
//! dimension is symbolic, so one optimised plan serves every batch size.

use std::collections::BTreeSet;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::{InputSpec, InputType, LoadFailure, ModelError, Output, TensorInput};

pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<String>,
    pub has_tree_ensemble: bool,
}

/// tract's error for a graph it cannot inspect, in its one-line form.
fn graph_err(e: TractError) -> LoadFailure {
    LoadFailure::Graph(e.to_string())
}

impl TractModel {
    pub fn load(bytes: &[u8]) -> Result<TractModel, LoadFailure> {
        let onnx = super::ml_ops::onnx();
        let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|e| LoadFailure::NotOnnx(format!("{e:#}")))?;
        let graph = proto.graph.as_ref().ok_or(LoadFailure::NoGraph)?;
        let op_types: BTreeSet<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        let has_tree_ensemble = op_types.iter().any(|t| t.starts_with("TreeEnsemble"));
        let mut model = onnx.model_for_proto_model(&proto).map_err(|e| LoadFailure::Graph(format!("{e:#}")))?;
        let n = model.sym("N");
        let mut inputs = Vec::new();
        for (i, outlet) in model.input_outlets().map_err(graph_err)?.to_vec().iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let fact = model.input_fact(i).map_err(graph_err)?.clone();
            let dt = fact.datum_type.concretize().ok_or_else(|| LoadFailure::UntypedInput { input: name.clone() })?;
            let ty = match dt {
                DatumType::F32 => InputType::F32,
                DatumType::F64 => InputType::F64,
                DatumType::I64 => InputType::I64,
                DatumType::I32 => InputType::I32,
                other => return Err(LoadFailure::UnsupportedInputType { input: name, ty: format!("{other:?}") }),
            };
            let dims: Vec<_> = fact.shape.dims().cloned().collect();
            if dims.len() != 2 {
                return Err(LoadFailure::InputRank { input: name, rank: dims.len() });
            }
            let width = dims[1]
                .concretize()
                .and_then(|d| d.to_i64().ok())
                .map(|v| v as usize)
                .ok_or_else(|| LoadFailure::UnfixedWidth { input: name.clone() })?;
            model
                .set_input_fact(i, InferenceFact::dt_shape(dt, tvec![n.to_dim(), width.to_dim()]))
                .map_err(graph_err)?;
            inputs.push(InputSpec { name, width, ty });
        }
        let outputs: Vec<String> = model
            .output_outlets()
            .map_err(graph_err)?
            .iter()
            .map(|o| model.outlet_label(*o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone()))
            .collect();
        let plan =
            model.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| LoadFailure::Graph(format!("{e:#}")))?;
        Ok(TractModel { plan, inputs, outputs, has_tree_ensemble })
    }

    pub fn run(&self, inputs: Vec<TensorInput>) -> Result<Vec<Output>, ModelError> {
        let mut tensors: TVec<TValue> = tvec![];
        for (input, spec) in inputs.into_iter().zip(&self.inputs) {
            let shape = [input.rows, input.cols];
            let t = match spec.ty {
                InputType::F32 => Tensor::from_shape(&shape, &input.data),
                InputType::F64 => {
                    let v: Vec<f64> = input.data.iter().map(|x| *x as f64).collect();
                    Tensor::from_shape(&shape, &v)
                }
                InputType::I64 | InputType::I32 => {
                    spec.check_integers(&input.data)?;
                    if spec.ty == InputType::I64 {
                        let v: Vec<i64> = input.data.iter().map(|x| *x as i64).collect();
                        Tensor::from_shape(&shape, &v)
                    } else {
                        let v: Vec<i32> = input.data.iter().map(|x| *x as i32).collect();
                        Tensor::from_shape(&shape, &v)
                    }
                }
            }
            .map_err(|e| ModelError::BadInput(e.to_string()))?;
            tensors.push(t.into_tvalue());
        }
        let results = self.plan.run(tensors).map_err(|e| ModelError::Inference(format!("{e:#}")))?;
        let mut out = Vec::with_capacity(results.len());
        for (name, v) in self.outputs.iter().zip(results) {
            // Labels may be strings or int64; only numbers are mapped into results.
            let Ok(f) = v.cast_to::<f32>() else { continue };
            let view = f.to_plain_array_view::<f32>().map_err(|e| ModelError::Inference(e.to_string()))?;
            let data: Vec<f32> = view.iter().copied().collect();
            out.push(Output { name: name.clone(), shape: v.shape().to_vec(), data });
        }
        Ok(out)
    }
}
