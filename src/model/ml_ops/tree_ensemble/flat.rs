//! Turning an [`EnsembleSpec`] into a [`Forest`]: the trees flattened once, at
//! model load, into a compact array of nodes whose children are array indices
//! and whose leaves point straight at their weights, so that evaluation is a
//! tight index-chasing loop. Also owns the structural validation onnxruntime
//! does (children exist in the same tree, leaves carry weights) plus cycle
//! detection, which onnxruntime lacks (it would loop forever).
//!
//! When every branch can be expressed as `xe[f] <= t` (see [`canonical`]) the
//! fast node form is used; `BRANCH_EQ`/`BRANCH_NEQ` and non-finite thresholds
//! fall back to the general form that switches on the node mode.

use super::canonical::canonical;
pub use super::canonical::Real;
use super::parse::{EnsembleSpec, NodeMode};
use super::perfect::PerfectTrees;
use std::collections::HashMap;
use tract_onnx::tract_hir::internal::*;

/// Child references: an index into the node array, or, with this bit set, an
/// index into the leaf table.
pub const LEAF: u32 = 1 << 31;

/// A branch in canonical form: go `left` when `xe[feature] <= threshold`, else
/// `right` (NaN compares false, so goes `right`). `xe` is the row followed by
/// its negation, which lets every mode/missing-value combination share this
/// one comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct FastNode<T> {
    pub feature: u32,
    pub threshold: T,
    pub left: u32,
    pub right: u32,
}

/// A branch exactly as the model states it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeneralNode<T> {
    pub feature: u32,
    pub threshold: T,
    pub mode: NodeMode,
    pub missing_tracks_true: bool,
    pub if_true: u32,
    pub if_false: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Nodes<T> {
    /// Shallow canonical trees, padded to complete ones (see `perfect.rs`).
    Perfect(PerfectTrees<T>),
    Fast(Vec<FastNode<T>>),
    General(Vec<GeneralNode<T>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Forest<T> {
    /// Columns the trees read: the input must have at least this many.
    pub n_features: usize,
    /// One encoded child reference per tree, in onnxruntime's tree order.
    pub roots: Vec<u32>,
    pub nodes: Nodes<T>,
    /// Per leaf: its first weight (what onnxruntime uses when there is a
    /// single output column) ...
    pub leaf_value: Vec<T>,
    /// ... and the range of `weights` holding all of its weights.
    pub leaf_range: Vec<(u32, u32)>,
    /// (output column, weight).
    pub weights: Vec<(u32, T)>,
    /// Per leaf, its only (column, weight), when every leaf has exactly one
    /// (gradient-boosted classifiers): saves an indirection per tree.
    pub leaf_single: Option<Vec<(u32, T)>>,
    /// The column every weight goes to, when they all go to one (binary
    /// gradient boosting, single-target regression).
    pub single_column: Option<u32>,
}

fn err(spec: &EnsembleSpec, attr: &str, msg: String) -> TractError {
    format_err!("{}, attribute '{}': {}", spec.op_name(), attr, msg)
}

impl<T: Real> Forest<T> {
    /// For op dumps: how many branch nodes, and which walk they use.
    pub fn layout(&self) -> String {
        match &self.nodes {
            Nodes::Perfect(p) => format!("complete depth-{} layout, {} splits", p.depth, p.splits.len()),
            Nodes::Fast(n) => format!("canonical layout, {} branch nodes", n.len()),
            Nodes::General(n) => format!("general layout, {} branch nodes", n.len()),
        }
    }

    pub fn build(spec: &EnsembleSpec) -> TractResult<Forest<T>> {
        let n = spec.nodes.len();
        let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
        for (i, node) in spec.nodes.iter().enumerate() {
            if index.insert((node.tree_id, node.node_id), i).is_some() {
                return Err(err(
                    spec,
                    "nodes_nodeids",
                    format!("node {} appears twice in tree {}", node.node_id, node.tree_id),
                ));
            }
        }
        // Children, resolved to positions in `spec.nodes`.
        let mut children = vec![(0usize, 0usize); n];
        for (i, node) in spec.nodes.iter().enumerate() {
            if node.mode == NodeMode::Leaf {
                continue;
            }
            for (attr, id) in [("nodes_truenodeids", node.true_id), ("nodes_falsenodeids", node.false_id)] {
                // onnxruntime bounds child ids by the total node count.
                let child = (id >= 0 && (id as usize) < n)
                    .then(|| index.get(&(node.tree_id, id)))
                    .flatten()
                    .filter(|&&c| c != i)
                    .ok_or_else(|| {
                        err(
                            spec,
                            attr,
                            format!(
                                "node {} of tree {} points to missing or invalid node {}",
                                node.node_id, node.tree_id, id
                            ),
                        )
                    })?;
                if attr == "nodes_truenodeids" {
                    children[i].0 = *child;
                } else {
                    children[i].1 = *child;
                }
            }
        }

        // Weights per leaf, in onnxruntime's order: sorted by (tree, node) and
        // then attribute position. Weights on branch nodes are ignored, as
        // onnxruntime does for old converters' output.
        let w_attr = if spec.classifier.is_some() { "class" } else { "target" };
        let mut order: Vec<usize> = (0..spec.weights.len()).collect();
        order.sort_by_key(|&i| (spec.weights[i].tree_id, spec.weights[i].node_id, i));
        let mut leaf_weights: Vec<Vec<(u32, T)>> = vec![vec![]; n];
        for i in order {
            let w = &spec.weights[i];
            let Some(&pos) = index.get(&(w.tree_id, w.node_id)) else {
                return Err(err(
                    spec,
                    &format!("{w_attr}_nodeids"),
                    format!("weight for missing node {} of tree {}", w.node_id, w.tree_id),
                ));
            };
            if spec.nodes[pos].mode != NodeMode::Leaf {
                continue;
            }
            // One output column: onnxruntime takes the leaf's first weight
            // whatever its id; with more, the id must name a column.
            let column = if spec.n_outputs == 1 {
                0
            } else if w.output >= 0 && (w.output as usize) < spec.n_outputs {
                w.output as u32
            } else {
                return Err(err(
                    spec,
                    &format!("{w_attr}_ids"),
                    format!("id {} out of range for {} outputs", w.output, spec.n_outputs),
                ));
            };
            leaf_weights[pos].push((column, T::from_f64(w.weight)));
        }
        for (i, node) in spec.nodes.iter().enumerate() {
            if node.mode == NodeMode::Leaf && leaf_weights[i].is_empty() {
                return Err(err(
                    spec,
                    &format!("{w_attr}_weights"),
                    format!("leaf {} of tree {} has no weight", node.node_id, node.tree_id),
                ));
            }
        }

        // onnxruntime starts a tree wherever the tree id changes.
        let mut starts = vec![];
        for (i, node) in spec.nodes.iter().enumerate() {
            if i == 0 || spec.nodes[i - 1].tree_id != node.tree_id {
                starts.push(i);
            }
        }

        let mut forest = Forest {
            n_features: 0,
            roots: Vec::with_capacity(starts.len()),
            nodes: Nodes::General(vec![]),
            leaf_value: vec![],
            leaf_range: vec![],
            weights: vec![],
            leaf_single: None,
            single_column: None,
        };
        let mut general: Vec<GeneralNode<T>> = Vec::with_capacity(n);
        // Encoded reference of each spec node once emitted; shared subtrees
        // (legal, if unusual) are emitted once.
        let mut emitted: Vec<Option<u32>> = vec![None; n];
        let mut on_path = vec![false; n];
        for &start in &starts {
            let root =
                forest.emit(spec, start, &children, &mut leaf_weights, &mut general, &mut emitted, &mut on_path)?;
            forest.roots.push(root);
        }
        // onnxruntime builds each tree from the first node listed for it; a
        // node it cannot reach from there makes it misplace every weight
        // (1.23) or refuse the model (later versions). Refuse it too.
        if let Some(pos) = emitted.iter().position(|e| e.is_none()) {
            let node = &spec.nodes[pos];
            return Err(err(
                spec,
                "nodes_nodeids",
                format!(
                    "node {} of tree {} is unreachable from the tree's first listed node (roots must be listed first)",
                    node.node_id, node.tree_id
                ),
            ));
        }
        if forest.leaf_range.iter().all(|(start, end)| end - start == 1) {
            forest.leaf_single =
                Some(forest.leaf_range.iter().map(|(start, _)| forest.weights[*start as usize]).collect());
        }
        if let Some(single) = &forest.leaf_single {
            let first = single.first().map(|w| w.0);
            if single.iter().all(|w| Some(w.0) == first) {
                forest.single_column = first;
            }
        }
        forest.n_features = general.iter().map(|node| node.feature as usize + 1).max().unwrap_or(0);
        let fast: Option<Vec<FastNode<T>>> = general
            .iter()
            .map(|g| {
                let (negated, threshold, true_left) = canonical(g.mode, g.threshold, g.missing_tracks_true)?;
                let (left, right) = if true_left { (g.if_true, g.if_false) } else { (g.if_false, g.if_true) };
                let feature = g.feature + if negated { forest.n_features as u32 } else { 0 };
                Some(FastNode { feature, threshold, left, right })
            })
            .collect();
        forest.nodes = match fast {
            Some(fast) => match PerfectTrees::build(&fast, &forest.roots) {
                Some(perfect) => Nodes::Perfect(perfect),
                None => Nodes::Fast(fast),
            },
            None => Nodes::General(general),
        };
        Ok(forest)
    }

    /// Emits the subtree at `start` in pre-order (a parent precedes its
    /// children, keeping a root-to-leaf walk mostly forward in memory) and
    /// returns its encoded reference. Iterative, as trees may be deep.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        spec: &EnsembleSpec,
        start: usize,
        children: &[(usize, usize)],
        leaf_weights: &mut [Vec<(u32, T)>],
        general: &mut Vec<GeneralNode<T>>,
        emitted: &mut [Option<u32>],
        on_path: &mut [bool],
    ) -> TractResult<u32> {
        enum Step {
            /// Spec position, and the branch slot (and side) to point at it.
            Visit(usize, Option<(usize, bool)>),
            /// The subtree at this position is complete.
            Exit(usize),
        }
        let mut root_ref = None;
        let mut stack = vec![Step::Visit(start, None)];
        while let Some(step) = stack.pop() {
            let (pos, patch) = match step {
                Step::Exit(pos) => {
                    on_path[pos] = false;
                    continue;
                }
                Step::Visit(pos, patch) => (pos, patch),
            };
            let node = &spec.nodes[pos];
            // A branch reaching one of its ancestors would make the walk
            // loop forever.
            if on_path[pos] {
                return Err(err(
                    spec,
                    "nodes_truenodeids",
                    format!("tree {} has a cycle through node {}", node.tree_id, node.node_id),
                ));
            }
            let reference = match emitted[pos] {
                Some(r) => r,
                None if node.mode == NodeMode::Leaf => {
                    let leaf = self.leaf_range.len() as u32;
                    let ws = std::mem::take(&mut leaf_weights[pos]);
                    let first = self.weights.len() as u32;
                    self.leaf_value.push(ws[0].1);
                    self.weights.extend(ws);
                    self.leaf_range.push((first, self.weights.len() as u32));
                    leaf | LEAF
                }
                None => {
                    let slot = general.len();
                    general.push(GeneralNode {
                        feature: node.feature as u32,
                        threshold: T::from_f64(node.value),
                        mode: node.mode,
                        missing_tracks_true: node.missing_tracks_true,
                        if_true: 0,
                        if_false: 0,
                    });
                    on_path[pos] = true;
                    stack.push(Step::Exit(pos));
                    // False side pushed first so the true side is emitted
                    // right after its parent.
                    stack.push(Step::Visit(children[pos].1, Some((slot, false))));
                    stack.push(Step::Visit(children[pos].0, Some((slot, true))));
                    slot as u32
                }
            };
            emitted[pos] = Some(reference);
            match patch {
                None => root_ref = Some(reference),
                Some((slot, true)) => general[slot].if_true = reference,
                Some((slot, false)) => general[slot].if_false = reference,
            }
        }
        root_ref.ok_or_else(|| err(spec, "nodes_treeids", "empty tree".to_string()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::parse::tests::{leaf, node, regressor, weight};
    use super::*;

    fn build_err(spec: &EnsembleSpec) -> String {
        format!("{:#}", Forest::<f32>::build(spec).unwrap_err())
    }

    #[test]
    fn stump_is_flattened_with_weights_resolved() {
        let spec = regressor(
            vec![node(0, 0, NodeMode::BranchLeq, 2, 0.5, 1, 2), leaf(0, 1), leaf(0, 2)],
            vec![weight(0, 2, 0, 7.0), weight(0, 1, 0, 3.0)],
        );
        let forest = Forest::<f32>::build(&spec).unwrap();
        assert_eq!(forest.n_features, 3);
        assert_eq!(forest.roots, vec![0]);
        let Nodes::Perfect(trees) = &forest.nodes else { panic!("expected the complete layout") };
        assert_eq!(trees.splits, vec![super::super::perfect::Split { feature: 2, threshold: 0.5 }]);
        assert_eq!(trees.leaves, vec![0, 1]);
        assert_eq!(forest.leaf_value, vec![3.0, 7.0]);
    }

    #[test]
    fn equality_modes_use_general_nodes() {
        let spec = regressor(
            vec![node(0, 0, NodeMode::BranchEq, 0, 0.5, 1, 2), leaf(0, 1), leaf(0, 2)],
            vec![weight(0, 1, 0, 1.0), weight(0, 2, 0, 2.0)],
        );
        assert!(matches!(Forest::<f32>::build(&spec).unwrap().nodes, Nodes::General(_)));
    }

    #[test]
    fn structural_errors_name_op_and_attribute() {
        let cyclic = regressor(
            vec![
                node(0, 0, NodeMode::BranchLeq, 0, 0.5, 1, 2),
                node(0, 1, NodeMode::BranchLeq, 0, 0.5, 0, 2),
                leaf(0, 2),
            ],
            vec![weight(0, 2, 0, 1.0)],
        );
        let e = build_err(&cyclic);
        assert!(e.contains("TreeEnsembleRegressor") && e.contains("cycle"), "{e}");

        let dangling =
            regressor(vec![node(0, 0, NodeMode::BranchLeq, 0, 0.5, 1, 5), leaf(0, 1)], vec![weight(0, 1, 0, 1.0)]);
        let e = build_err(&dangling);
        assert!(e.contains("nodes_falsenodeids"), "{e}");

        let bare_leaf = regressor(
            vec![node(0, 0, NodeMode::BranchLeq, 0, 0.5, 1, 2), leaf(0, 1), leaf(0, 2)],
            vec![weight(0, 1, 0, 1.0)],
        );
        let e = build_err(&bare_leaf);
        assert!(e.contains("target_weights") && e.contains("no weight"), "{e}");

        let twice = regressor(vec![leaf(0, 0), leaf(0, 0)], vec![weight(0, 0, 0, 1.0)]);
        assert!(build_err(&twice).contains("nodes_nodeids"));

        let cross_tree =
            regressor(vec![node(0, 0, NodeMode::BranchLeq, 0, 0.5, 1, 1), leaf(1, 1)], vec![weight(1, 1, 0, 1.0)]);
        assert!(build_err(&cross_tree).contains("nodes_truenodeids"));
    }

    #[test]
    fn shared_subtrees_are_emitted_once() {
        let spec =
            regressor(vec![node(0, 0, NodeMode::BranchLeq, 0, 0.5, 1, 1), leaf(0, 1)], vec![weight(0, 1, 0, 1.0)]);
        let forest = Forest::<f32>::build(&spec).unwrap();
        assert_eq!(forest.leaf_value.len(), 1);
    }
}
