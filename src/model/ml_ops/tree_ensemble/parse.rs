//! Reading a `TreeEnsembleClassifier` / `TreeEnsembleRegressor` node's
//! attributes into an [`EnsembleSpec`]: plain vectors in attribute order, with
//! every length, enum string and cross-reference that can be checked without
//! walking the trees checked here, each failure naming the op and attribute.
//! Structural checks (children exist, no cycles, leaves have weights) belong
//! to `flat.rs`, which walks the trees anyway.

use super::super::{attr_error, floats_or_tensor};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeMode {
    BranchLeq,
    BranchLt,
    BranchGte,
    BranchGt,
    BranchEq,
    BranchNeq,
    Leaf,
}

impl NodeMode {
    pub fn parse(s: &str) -> Option<NodeMode> {
        Some(match s {
            "BRANCH_LEQ" => NodeMode::BranchLeq,
            "BRANCH_LT" => NodeMode::BranchLt,
            "BRANCH_GTE" => NodeMode::BranchGte,
            "BRANCH_GT" => NodeMode::BranchGt,
            "BRANCH_EQ" => NodeMode::BranchEq,
            "BRANCH_NEQ" => NodeMode::BranchNeq,
            "LEAF" => NodeMode::Leaf,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(s: &str) -> Option<PostTransform> {
        Some(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            _ => return None,
        })
    }
}

/// One entry of the `nodes_*` attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecNode {
    pub tree_id: i64,
    pub node_id: i64,
    pub feature: usize,
    pub value: f64,
    pub mode: NodeMode,
    pub true_id: i64,
    pub false_id: i64,
    pub missing_tracks_true: bool,
}

/// One entry of the `class_*` / `target_*` attributes: a weight a leaf adds to
/// one output column.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecWeight {
    pub tree_id: i64,
    pub node_id: i64,
    pub output: i64,
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClassLabels {
    Int64(Vec<i64>),
    Strings(Vec<String>),
}

impl ClassLabels {
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int64(v) => v.len(),
            ClassLabels::Strings(v) => v.len(),
        }
    }
}

/// What onnxruntime derives from a classifier's weights to decide how a
/// two-class model with one scored column is expanded and labelled.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierSpec {
    pub labels: ClassLabels,
    /// Two classes but every weight targets the same class id.
    pub binary_case: bool,
    /// No weight is negative (probability-like leaves, e.g. random forests).
    pub weights_are_all_positive: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleSpec {
    /// Classes for a classifier, `n_targets` for a regressor.
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f64>,
    pub nodes: Vec<SpecNode>,
    pub weights: Vec<SpecWeight>,
    pub classifier: Option<ClassifierSpec>,
}

impl EnsembleSpec {
    pub fn op_name(&self) -> &'static str {
        if self.classifier.is_some() {
            "TreeEnsembleClassifier"
        } else {
            "TreeEnsembleRegressor"
        }
    }
}

fn ints<'a>(node: &'a NodeProto, name: &str) -> TractResult<&'a [i64]> {
    Ok(node.get_attr_opt_slice::<i64>(name)?.unwrap_or(&[]))
}

fn check_len(node: &NodeProto, name: &str, len: usize, expected: usize) -> TractResult<()> {
    if len != expected {
        return Err(attr_error(node, name, format!("has {len} entries, expected {expected}")));
    }
    Ok(())
}

pub fn parse(ctx: &ParsingContext, node: &NodeProto, classifier: bool) -> TractResult<EnsembleSpec> {
    let tree_ids = ints(node, "nodes_treeids")?;
    let n_nodes = tree_ids.len();
    let node_ids = ints(node, "nodes_nodeids")?;
    let feature_ids = ints(node, "nodes_featureids")?;
    let true_ids = ints(node, "nodes_truenodeids")?;
    let false_ids = ints(node, "nodes_falsenodeids")?;
    let missing = ints(node, "nodes_missing_value_tracks_true")?;
    let modes: Vec<String> = node.get_attr_opt_vec("nodes_modes")?.unwrap_or_default();
    let values = floats_or_tensor(ctx, node, "nodes_values")?.unwrap_or_default();
    check_len(node, "nodes_nodeids", node_ids.len(), n_nodes)?;
    check_len(node, "nodes_featureids", feature_ids.len(), n_nodes)?;
    check_len(node, "nodes_truenodeids", true_ids.len(), n_nodes)?;
    check_len(node, "nodes_falsenodeids", false_ids.len(), n_nodes)?;
    check_len(node, "nodes_modes", modes.len(), n_nodes)?;
    check_len(node, "nodes_values", values.len(), n_nodes)?;
    // onnxruntime reads the missing-value flags only where present: fewer
    // than nodes is fine (the rest route NaN to the false branch), more is not.
    if missing.len() > n_nodes {
        check_len(node, "nodes_missing_value_tracks_true", missing.len(), n_nodes)?;
    }

    let mut nodes = Vec::with_capacity(n_nodes);
    for i in 0..n_nodes {
        let mode = NodeMode::parse(&modes[i])
            .ok_or_else(|| attr_error(node, "nodes_modes", format!("unknown node mode '{}'", modes[i])))?;
        let feature = usize::try_from(feature_ids[i])
            .ok()
            .filter(|&f| f < u32::MAX as usize / 2)
            .ok_or_else(|| attr_error(node, "nodes_featureids", format!("bad feature id {}", feature_ids[i])))?;
        nodes.push(SpecNode {
            tree_id: tree_ids[i],
            node_id: node_ids[i],
            feature,
            value: values[i],
            mode,
            true_id: true_ids[i],
            false_id: false_ids[i],
            missing_tracks_true: missing.get(i).copied() == Some(1),
        });
    }

    let prefix = if classifier { "class" } else { "target" };
    let w_ids_name = format!("{prefix}_ids");
    let w_ids = ints(node, &w_ids_name)?;
    let w_nodes = ints(node, &format!("{prefix}_nodeids"))?;
    let w_trees = ints(node, &format!("{prefix}_treeids"))?;
    let w_values = floats_or_tensor(ctx, node, &format!("{prefix}_weights"))?.unwrap_or_default();
    check_len(node, &format!("{prefix}_nodeids"), w_nodes.len(), w_ids.len())?;
    check_len(node, &format!("{prefix}_treeids"), w_trees.len(), w_ids.len())?;
    check_len(node, &format!("{prefix}_weights"), w_values.len(), w_ids.len())?;
    let weights: Vec<SpecWeight> = (0..w_ids.len())
        .map(|i| SpecWeight { tree_id: w_trees[i], node_id: w_nodes[i], output: w_ids[i], weight: w_values[i] })
        .collect();

    let post_transform = match node.get_attr_opt::<&str>("post_transform")? {
        None => PostTransform::None,
        Some(s) => PostTransform::parse(s)
            .ok_or_else(|| attr_error(node, "post_transform", format!("unknown post transform '{s}'")))?,
    };
    let base_values = floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default();

    let (n_outputs, aggregate, classifier_spec) = if classifier {
        let labels = match (
            node.get_attr_opt_slice::<i64>("classlabels_int64s")?,
            node.get_attr_opt_vec::<String>("classlabels_strings")?,
        ) {
            (Some(ints), None) => ClassLabels::Int64(ints.to_vec()),
            (None, Some(strings)) => ClassLabels::Strings(strings),
            (Some(_), Some(_)) => {
                return Err(attr_error(
                    node,
                    "classlabels_int64s",
                    "only one of classlabels_int64s and classlabels_strings may be set",
                ))
            }
            (None, None) => {
                return Err(attr_error(
                    node,
                    "classlabels_int64s",
                    "one of classlabels_int64s and classlabels_strings is required",
                ))
            }
        };
        // A single class would make onnxruntime write two scores into a
        // one-column output; no converter emits it, so refuse it.
        if labels.len() < 2 {
            return Err(attr_error(node, "classlabels_int64s", "at least two classes are required"));
        }
        let distinct: std::collections::HashSet<i64> = w_ids.iter().copied().collect();
        let spec = ClassifierSpec {
            binary_case: labels.len() == 2 && distinct.len() == 1,
            // As onnxruntime's `weight < 0` test: NaN counts as positive.
            weights_are_all_positive: weights.iter().all(|w| w.weight >= 0.0 || w.weight.is_nan()),
            labels,
        };
        (spec.labels.len(), Aggregate::Sum, Some(spec))
    } else {
        let n_targets: i64 = node.get_attr_opt("n_targets")?.unwrap_or(0);
        if n_targets <= 0 || n_targets > u32::MAX as i64 / 2 {
            return Err(attr_error(node, "n_targets", format!("must be > 0, got {n_targets}")));
        }
        let aggregate = match node.get_attr_opt::<&str>("aggregate_function")?.unwrap_or("SUM") {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            s => return Err(attr_error(node, "aggregate_function", format!("unknown aggregate function '{s}'"))),
        };
        (n_targets as usize, aggregate, None)
    };
    // onnxruntime adds a multi-class classifier's base values to the first
    // classes, one each; more values than classes would overrun.
    if classifier_spec.is_some() && n_outputs > 2 && base_values.len() > n_outputs {
        return Err(attr_error(
            node,
            "base_values",
            format!("has {} entries for {} classes", base_values.len(), n_outputs),
        ));
    }

    Ok(EnsembleSpec { n_outputs, aggregate, post_transform, base_values, nodes, weights, classifier: classifier_spec })
}

/// Builders for hand-written specs in other modules' tests.
#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn node(tree: i64, id: i64, mode: NodeMode, feature: usize, value: f64, t: i64, f: i64) -> SpecNode {
        SpecNode {
            tree_id: tree,
            node_id: id,
            feature,
            value,
            mode,
            true_id: t,
            false_id: f,
            missing_tracks_true: false,
        }
    }

    pub fn leaf(tree: i64, id: i64) -> SpecNode {
        node(tree, id, NodeMode::Leaf, 0, 0.0, 0, 0)
    }

    pub fn weight(tree: i64, id: i64, output: i64, weight: f64) -> SpecWeight {
        SpecWeight { tree_id: tree, node_id: id, output, weight }
    }

    pub fn regressor(nodes: Vec<SpecNode>, weights: Vec<SpecWeight>) -> EnsembleSpec {
        EnsembleSpec {
            n_outputs: 1,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: vec![],
            nodes,
            weights,
            classifier: None,
        }
    }
}
