//! modelbus's own implementations of the ONNX-ML (`ai.onnx.ml`) operators that
//! tract-onnx lacks or gets wrong, and the [`onnx`] framework constructor that
//! registers them over tract's stock ones. tract keys its op register by
//! `op_type` alone (the node's domain is not consulted), so registering a name
//! here replaces tract's builder for that name whatever domain the model uses.
//! Semantics follow onnxruntime's CPU kernels, since that is what the models'
//! golden outputs come from. Ops that neither we nor tract know (e.g. `ZipMap`)
//! are left to tract, which parses them as placeholders and fails with an error
//! naming the op when the model is typed.

mod scaler;
mod tree_ensemble;

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The ONNX framework with modelbus's ONNX-ML ops registered over tract's stock ones.
pub fn onnx() -> tract_onnx::Onnx {
    let mut framework = tract_onnx::onnx();
    register(&mut framework.op_register);
    framework
}

/// Registers (or replaces) the ops this module implements.
pub fn register(reg: &mut OnnxOpRegister) {
    tree_ensemble::register(reg);
    scaler::register(reg);
}

/// Builds the error every attribute problem is reported with, so that a bad
/// model names the node, the op and the attribute at fault.
fn attr_error(node: &NodeProto, attr: &str, msg: impl std::fmt::Display) -> TractError {
    format_err!("{} node '{}', attribute '{}': {}", node.op_type, node.name, attr, msg)
}

/// Reads a FLOATS attribute or, failing that, its `<name>_as_tensor` twin
/// (double or float tensor), widening both to f64 so that each evaluation
/// domain can narrow them the way onnxruntime does. `None` when neither is
/// present; an error when both are.
fn floats_or_tensor(
    ctx: &tract_onnx::model::ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Option<Vec<f64>>> {
    let floats: Option<&[f32]> = node.get_attr_opt_slice(name)?;
    let tensor_name = format!("{name}_as_tensor");
    let proto: Option<&tract_onnx::pb::TensorProto> = node.get_attr_opt(&tensor_name)?;
    match (floats, proto) {
        (Some(_), Some(_)) => Err(attr_error(node, name, format!("both '{name}' and '{tensor_name}' are set"))),
        (Some(f), None) => Ok(Some(f.iter().map(|&v| v as f64).collect())),
        (None, Some(proto)) => {
            let tensor = ctx
                .load_tensor(proto)
                .map_err(|e| attr_error(node, &tensor_name, format!("unreadable tensor: {e}")))?;
            let values = match tensor.datum_type() {
                DatumType::F64 | DatumType::F32 => tensor.cast_to::<f64>()?.into_owned(),
                dt => {
                    return Err(attr_error(
                        node,
                        &tensor_name,
                        format!("expected a double or float tensor, got {dt:?}"),
                    ))
                }
            };
            Ok(Some(values.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_stock_ml_ops() {
        let mut stock = tract_onnx::onnx();
        let ours = onnx();
        for op in ["TreeEnsembleClassifier", "TreeEnsembleRegressor", "Scaler"] {
            let theirs = stock.op_register.0.remove(op).map(|f| f as usize);
            let mine = ours.op_register.0.get(op).map(|f| *f as usize);
            assert!(mine.is_some(), "{op} not registered");
            assert_ne!(theirs, mine, "{op} still tract's");
        }
    }
}
