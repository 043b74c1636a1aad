//! The `TreeEnsembleClassifier` and `TreeEnsembleRegressor` ops as tract sees
//! them: the ONNX node builders, the inference-time op (type and shape rules,
//! wiring into a typed model) and the typed op that evaluates. Parsing lives in
//! `parse.rs`, flattening in `flat.rs` (branch rewriting in `canonical.rs`,
//! the complete-tree layout in `perfect.rs`), walks in `walk.rs`, the batch
//! loop in `eval.rs`, onnxruntime's output semantics in `finish.rs` and
//! `transform.rs`.
//!
//! The float evaluator is built when the node is parsed, so a malformed
//! ensemble fails at model load; a double one is built at wiring time only if
//! the input turns out to be double (onnxruntime then compares and sums in
//! double).

mod canonical;
mod eval;
mod finish;
mod flat;
mod parse;
mod perfect;
mod transform;
mod walk;

use eval::Evaluator;
use parse::{ClassLabels, EnsembleSpec};
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", classifier);
    reg.insert("TreeEnsembleRegressor", regressor);
}

fn classifier(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(ctx, node, true)
}

fn regressor(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    build(ctx, node, false)
}

fn build(ctx: &ParsingContext, node: &NodeProto, classifier: bool) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let spec = parse::parse(ctx, node, classifier)?;
    let f32_eval = Evaluator::<f32>::build(&spec).with_context(|| format!("{} node '{}'", node.op_type, node.name))?;
    // tract drops unnamed outputs, so remember which of ours exist.
    let present = |ix: usize| node.output.get(ix).is_some_and(|s| !s.is_empty());
    let outputs = if classifier { vec![present(0), present(1)] } else { vec![present(0)] };
    Ok((
        expand(TreeEnsemble {
            spec: Arc::new(spec),
            f32_eval: Arc::new(f32_eval),
            outputs,
            node_name: node.name.clone(),
        }),
        vec![],
    ))
}

/// The op in the inference model.
#[derive(Debug, Clone)]
struct TreeEnsemble {
    spec: Arc<EnsembleSpec>,
    f32_eval: Arc<Evaluator<f32>>,
    /// Which of the ONNX outputs ((label, scores) or (Y)) the node names.
    outputs: Vec<bool>,
    node_name: String,
}

impl TreeEnsemble {
    fn label_type(&self) -> Option<DatumType> {
        self.spec.classifier.as_ref().map(|c| match c.labels {
            ClassLabels::Int64(_) => i64::datum_type(),
            ClassLabels::Strings(_) => String::datum_type(),
        })
    }
}

impl Expansion for TreeEnsemble {
    fn name(&self) -> StaticName {
        self.spec.op_name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.outputs.iter().filter(|p| **p).count())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, self.nboutputs()?)?;
        s.equals(&inputs[0].rank, 2)?;
        let mut outs = outputs.iter();
        if let Some(label_type) = self.label_type() {
            if self.outputs[0] {
                let label = outs.next().context("missing label output")?;
                s.equals(&label.datum_type, label_type)?;
                s.equals(&label.rank, 1)?;
                s.equals(&label.shape[0], &inputs[0].shape[0])?;
            }
        }
        if let Some(scores) = outs.next() {
            s.equals(&scores.datum_type, f32::datum_type())?;
            s.equals(&scores.rank, 2)?;
            s.equals(&scores.shape[0], &inputs[0].shape[0])?;
            s.equals(&scores.shape[1], self.spec.n_outputs.to_dim())?;
        }
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let input_type = model.outlet_fact(inputs[0])?.datum_type;
        let evaluator = match input_type {
            DatumType::F32 | DatumType::I64 | DatumType::I32 => Compiled::F32(self.f32_eval.clone()),
            DatumType::F64 => Compiled::F64(Arc::new(
                Evaluator::<f64>::build(&self.spec)
                    .with_context(|| format!("{} node '{}'", self.spec.op_name(), self.node_name))?,
            )),
            dt => bail!(
                "{} node '{}': unsupported input type {:?} (expected float, double, int64 or int32)",
                self.spec.op_name(),
                self.node_name,
                dt
            ),
        };
        let labels = self.spec.classifier.as_ref().map(|c| Arc::new(c.labels.clone()));
        let op = TreeEnsembleOp { name: self.spec.op_name(), evaluator, labels };
        let wired = model.wire_node(prefix, op, inputs)?;
        Ok(wired.into_iter().zip(&self.outputs).filter(|(_, p)| **p).map(|(o, _)| o).collect())
    }
}

#[derive(Debug, Clone)]
enum Compiled {
    F32(Arc<Evaluator<f32>>),
    F64(Arc<Evaluator<f64>>),
}

/// The typed, evaluating op. Classifiers output (label [N], scores [N, C]),
/// regressors (scores [N, T]).
#[derive(Debug, Clone)]
pub struct TreeEnsembleOp {
    name: &'static str,
    evaluator: Compiled,
    labels: Option<Arc<ClassLabels>>,
}

impl PartialEq for TreeEnsembleOp {
    fn eq(&self, other: &Self) -> bool {
        // Compiled forests are only ever shared, never rebuilt equal.
        match (&self.evaluator, &other.evaluator) {
            (Compiled::F32(a), Compiled::F32(b)) => Arc::ptr_eq(a, b),
            (Compiled::F64(a), Compiled::F64(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for TreeEnsembleOp {}

impl TreeEnsembleOp {
    fn n_outputs(&self) -> usize {
        match &self.evaluator {
            Compiled::F32(e) => e.n_outputs,
            Compiled::F64(e) => e.n_outputs,
        }
    }
}

impl Op for TreeEnsembleOp {
    fn name(&self) -> StaticName {
        self.name.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let (domain, trees, layout) = match &self.evaluator {
            Compiled::F32(e) => ("f32", e.forest.roots.len(), e.forest.layout()),
            Compiled::F64(e) => ("f64", e.forest.roots.len(), e.forest.layout()),
        };
        Ok(vec![format!("{trees} trees, {layout}, {domain} thresholds")])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[n_rows, n_cols] = input.shape() else {
            bail!("{}: expected a 2D input, got shape {:?}", self.name, input.shape());
        };
        let n_out = self.n_outputs();
        let mut scores = vec![0f32; n_rows * n_out];
        let mut labels = vec![0i64; if self.labels.is_some() { n_rows } else { 0 }];
        let plain = input.try_as_plain_ram()?;
        match (&self.evaluator, input.datum_type()) {
            (Compiled::F32(e), DatumType::F32) => {
                e.eval(plain.as_slice::<f32>()?, n_rows, n_cols, |v| v, &mut scores, &mut labels)
            }
            (Compiled::F32(e), DatumType::I64) => {
                let x = plain.as_slice::<i64>()?;
                e.eval(x, n_rows, n_cols, |v| v as f32, &mut scores, &mut labels)
            }
            (Compiled::F32(e), DatumType::I32) => {
                let x = plain.as_slice::<i32>()?;
                e.eval(x, n_rows, n_cols, |v| v as f32, &mut scores, &mut labels)
            }
            (Compiled::F64(e), DatumType::F64) => {
                e.eval(plain.as_slice::<f64>()?, n_rows, n_cols, |v| v, &mut scores, &mut labels)
            }
            (_, dt) => bail!("{}: input type {:?} does not match the compiled op", self.name, dt),
        }?;
        let scores = Tensor::from_shape(&[n_rows, n_out], &scores)?.into_tvalue();
        let Some(classes) = &self.labels else {
            return Ok(tvec!(scores));
        };
        let labels = match &**classes {
            ClassLabels::Int64(_) => Tensor::from_shape(&[n_rows], &labels)?,
            ClassLabels::Strings(names) => {
                let names: Vec<String> =
                    labels.iter().map(|&ix| names.get(ix as usize).cloned().unwrap_or_default()).collect();
                tract_ndarray::Array1::from_vec(names).into_tensor()
            }
        };
        Ok(tvec!(labels.into_tvalue(), scores))
    }
}

impl TypedOp for TreeEnsembleOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs[0];
        if input.rank() != 2 {
            bail!("{}: expected a 2D input, got {:?}", self.name, input);
        }
        let n_features = match &self.evaluator {
            Compiled::F32(e) => e.forest.n_features,
            Compiled::F64(e) => e.forest.n_features,
        };
        if let Ok(cols) = input.shape[1].to_usize() {
            if cols < n_features {
                bail!("{}: the trees read feature {} but the input has {} columns", self.name, n_features - 1, cols);
            }
        }
        let n = input.shape[0].clone();
        let scores = f32::fact(&[n.clone(), self.n_outputs().to_dim()]);
        Ok(match self.labels.as_deref() {
            None => tvec!(scores),
            Some(ClassLabels::Int64(_)) => tvec!(i64::fact(&[n]), scores),
            Some(ClassLabels::Strings(_)) => tvec!(String::fact(&[n]), scores),
        })
    }

    as_op!();
}
