//! The ONNX-ML `Scaler` op: `Y = (X - offset) * scale`, per column when the
//! attributes have one value per column, broadcast when they have one value,
//! output float. Arithmetic follows onnxruntime: in float for float and
//! integer inputs (integers converted first), in double for double inputs,
//! rounded to float at the end.

use super::attr_error;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Scaler", scaler);
}

fn scaler(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_default();
    let offset: Vec<f32> = node.get_attr_opt_vec("offset")?.unwrap_or_default();
    if scale.is_empty() {
        return Err(attr_error(node, "scale", "must not be empty"));
    }
    if scale.len() != offset.len() {
        return Err(attr_error(node, "offset", format!("has {} values but scale has {}", offset.len(), scale.len())));
    }
    let op = Scaler { scale: Arc::new(scale), offset: Arc::new(offset) };
    Ok((expand(op), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    scale: Arc<Vec<f32>>,
    offset: Arc<Vec<f32>>,
}

// Attributes are never NaN-compared for identity purposes; tract wants Eq.
impl Eq for Scaler {}

impl Scaler {
    /// onnxruntime's rule: one value per column (the second axis, or the
    /// only one for 1D input), or a single value for all.
    fn check_columns(&self, shape: &[TDim]) -> TractResult<()> {
        let Some(columns) = (if shape.len() == 1 { shape.first() } else { shape.get(1) }) else {
            bail!("Scaler: input must have at least one dimension");
        };
        if let Ok(columns) = columns.to_usize() {
            if self.scale.len() != columns && self.scale.len() != 1 {
                bail!(
                    "Scaler: scale and offset have {} values but the input has {} columns (expected {} or 1)",
                    self.scale.len(),
                    columns,
                    columns
                );
            }
        }
        Ok(())
    }

    fn apply<S: Copy, A: Copy + std::ops::Sub<Output = A> + std::ops::Mul<Output = A>>(
        &self,
        x: &[S],
        columns: usize,
        widen: impl Fn(S) -> A,
        narrow: impl Fn(A) -> f32,
        attr: impl Fn(f32) -> A,
        out: &mut [f32],
    ) {
        let per_column = self.scale.len() == columns;
        for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            let k = if per_column { i % columns } else { 0 };
            *o = narrow((widen(v) - attr(self.offset[k])) * attr(self.scale[k]));
        }
    }
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Scaler {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape: TVec<TDim> = input.shape().iter().map(|d| d.to_dim()).collect();
        self.check_columns(&shape)?;
        let columns = if input.rank() == 1 { input.shape()[0] } else { input.shape()[1] };
        let mut out = vec![0f32; input.len()];
        let x = input.try_as_plain_ram()?;
        match input.datum_type() {
            DatumType::F32 => self.apply(x.as_slice::<f32>()?, columns, |v| v, |v| v, |a| a, &mut out),
            DatumType::F64 => self.apply(x.as_slice::<f64>()?, columns, |v| v, |v| v as f32, |a| a as f64, &mut out),
            DatumType::I64 => self.apply(x.as_slice::<i64>()?, columns, |v| v as f32, |v| v, |a| a, &mut out),
            DatumType::I32 => self.apply(x.as_slice::<i32>()?, columns, |v| v as f32, |v| v, |a| a, &mut out),
            dt => bail!("Scaler: unsupported input type {dt:?} (expected float, double, int64 or int32)"),
        }
        Ok(tvec!(Tensor::from_shape(input.shape(), &out)?.into_tvalue()))
    }
}

impl TypedOp for Scaler {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs[0];
        if !matches!(input.datum_type, DatumType::F32 | DatumType::F64 | DatumType::I64 | DatumType::I32) {
            bail!("Scaler: unsupported input type {:?}", input.datum_type);
        }
        self.check_columns(&input.shape.to_tvec())?;
        Ok(tvec!(f32::fact(input.shape.iter())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(scale: &[f32], offset: &[f32]) -> Scaler {
        Scaler { scale: Arc::new(scale.to_vec()), offset: Arc::new(offset.to_vec()) }
    }

    fn run(op: &Scaler, input: Tensor) -> TractResult<Tensor> {
        let mut out = op.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))?;
        Ok(out.remove(0).into_tensor())
    }

    #[test]
    fn per_column() -> TractResult<()> {
        let op = scaler(&[2.0, 0.5], &[1.0, -1.0]);
        let out = run(&op, tensor2(&[[1f32, 1.0], [3.0, -1.0]]))?;
        assert_eq!(out, tensor2(&[[0f32, 1.0], [4.0, 0.0]]));
        Ok(())
    }

    #[test]
    fn broadcast_and_integer_input() -> TractResult<()> {
        let op = scaler(&[3.0], &[1.0]);
        let out = run(&op, tensor2(&[[1i64, 2, 3]]))?;
        assert_eq!(out, tensor2(&[[0f32, 3.0, 6.0]]));
        Ok(())
    }

    #[test]
    fn double_input_computes_in_double() -> TractResult<()> {
        let op = scaler(&[1.0], &[0.1]);
        let x = 0.1f64 + 1e-12;
        let out = run(&op, tensor2(&[[x]]))?;
        let expected = ((x - 0.1f32 as f64) * 1.0) as f32;
        assert_eq!(out, tensor2(&[[expected]]));
        Ok(())
    }

    #[test]
    fn wrong_width_is_an_error() {
        let op = scaler(&[1.0, 2.0], &[0.0, 0.0]);
        let err = run(&op, tensor2(&[[1f32, 2.0, 3.0]])).unwrap_err();
        assert!(err.to_string().contains("Scaler"), "{err}");
    }
}
