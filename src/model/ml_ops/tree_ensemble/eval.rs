//! Evaluating a [`Forest`] over a batch: each row is widened into the
//! evaluation domain alongside its negation (see `canonical.rs`), every tree
//! is walked, leaf weights are merged per onnxruntime's aggregate (sum,
//! average, min, max, tracking which columns were scored), and each row is
//! then finished by `finish.rs`.
//!
//! Rows are processed in chunks, tree by tree within a chunk, so a tree's
//! nodes stay hot in cache while every row of the chunk walks it; nothing is
//! allocated per row.

use super::flat::{Forest, Nodes, Real};
use super::parse::{Aggregate, ClassLabels, EnsembleSpec, PostTransform};
use super::perfect::LANES;
use super::walk::{FastWalk, GeneralWalk, PerfectWalk, Walk};
use tract_onnx::tract_hir::internal::*;

/// onnxruntime's `ScoreValue`: a sum plus whether any tree contributed to it.
/// Unscored columns read as 0 whatever their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score<T> {
    pub score: T,
    pub has: bool,
}

impl<T: Real> Score<T> {
    pub fn value(self) -> T {
        if self.has {
            self.score
        } else {
            T::default()
        }
    }
    pub fn f32(self) -> f32 {
        self.value().to_f32()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct ClassInfo {
    /// What onnxruntime reports as label: the int64 labels, or class indices
    /// when labels are strings.
    pub ids: Vec<i64>,
    pub binary_case: bool,
    pub weights_are_all_positive: bool,
}

/// A compiled ensemble plus everything needed to finish its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluator<T> {
    pub forest: Forest<T>,
    pub n_outputs: usize,
    pub(super) aggregate: Aggregate,
    pub(super) post: PostTransform,
    pub(super) base: Vec<T>,
    pub(super) class: Option<ClassInfo>,
}

const CHUNK: usize = 64;

const AGG_SUM: u8 = 0;
const AGG_MIN: u8 = 1;
const AGG_MAX: u8 = 2;

#[inline(always)]
fn merge<T: Real, const AGG: u8>(acc: &mut Score<T>, v: T) {
    match AGG {
        AGG_SUM => acc.score = acc.score + v,
        AGG_MIN => acc.score = if !acc.has || v < acc.score { v } else { acc.score },
        _ => acc.score = if !acc.has || v > acc.score { v } else { acc.score },
    }
    acc.has = true;
}

impl<T: Real> Evaluator<T> {
    pub fn build(spec: &EnsembleSpec) -> TractResult<Evaluator<T>> {
        let forest = Forest::build(spec)?;
        let class = spec.classifier.as_ref().map(|c| ClassInfo {
            ids: match &c.labels {
                ClassLabels::Int64(ids) => ids.clone(),
                ClassLabels::Strings(s) => (0..s.len() as i64).collect(),
            },
            binary_case: c.binary_case,
            weights_are_all_positive: c.weights_are_all_positive,
        });
        Ok(Evaluator {
            forest,
            n_outputs: spec.n_outputs,
            aggregate: spec.aggregate,
            post: spec.post_transform,
            base: spec.base_values.iter().map(|&v| T::from_f64(v)).collect(),
            class,
        })
    }

    /// Evaluates `n_rows` rows of `n_cols` values each, writing
    /// `n_rows * n_outputs` scores and, for classifiers, `n_rows` labels
    /// (class indices when the labels are strings).
    pub fn eval<S: Copy>(
        &self,
        x: &[S],
        n_rows: usize,
        n_cols: usize,
        to_real: impl Fn(S) -> T,
        scores: &mut [f32],
        labels: &mut [i64],
    ) -> TractResult<()> {
        let nf = self.forest.n_features;
        if nf > n_cols {
            bail!("{}: the trees read feature {} but the input has {} columns", self.op_name(), nf - 1, n_cols);
        }
        if x.len() != n_rows * n_cols || scores.len() != n_rows * self.n_outputs {
            bail!("{}: inconsistent buffer sizes", self.op_name());
        }
        if self.class.is_some() && labels.len() != n_rows {
            bail!("{}: inconsistent label buffer size", self.op_name());
        }
        let width = 2 * nf;
        let n_out = self.n_outputs;
        let mut xe = vec![T::default(); CHUNK * width];
        let mut acc = vec![Score::<T>::default(); CHUNK * n_out];
        for chunk_start in (0..n_rows).step_by(CHUNK) {
            let rows = CHUNK.min(n_rows - chunk_start);
            for r in 0..rows {
                let src = &x[(chunk_start + r) * n_cols..][..nf];
                let (pos, neg) = xe[r * width..][..width].split_at_mut(nf);
                for ((p, n), &s) in pos.iter_mut().zip(neg.iter_mut()).zip(src) {
                    let v = to_real(s);
                    *p = v;
                    *n = -v;
                }
            }
            let acc = &mut acc[..rows * n_out];
            acc.fill(Score::default());
            let xe = &xe[..rows * width];
            let roots = &self.forest.roots;
            match &self.forest.nodes {
                Nodes::Perfect(trees) => self.accumulate(xe, width, acc, &PerfectWalk(trees)),
                Nodes::Fast(nodes) => self.accumulate(xe, width, acc, &FastWalk(nodes, roots)),
                Nodes::General(nodes) => self.accumulate(xe, width, acc, &GeneralWalk(nodes, roots)),
            }
            for r in 0..rows {
                let row = chunk_start + r;
                let out = &mut scores[row * n_out..][..n_out];
                let preds = &mut acc[r * n_out..][..n_out];
                if self.class.is_some() {
                    labels[row] = self.finish_classifier(preds, out);
                } else if n_out == 1 {
                    out[0] = self.finish_single(preds[0]);
                } else {
                    self.finish_regressor(preds, out);
                }
            }
        }
        Ok(())
    }

    fn op_name(&self) -> &'static str {
        if self.class.is_some() {
            "TreeEnsembleClassifier"
        } else {
            "TreeEnsembleRegressor"
        }
    }

    /// Whether nodes and leaf values together fit comfortably in L1.
    fn fits_in_cache(&self) -> bool {
        let f = &self.forest;
        let nodes = match &f.nodes {
            Nodes::Perfect(p) => p.splits.len() * 8 + p.leaves.len() * 4,
            Nodes::Fast(n) => n.len() * 16,
            Nodes::General(n) => n.len() * 24,
        };
        nodes + f.leaf_value.len() * std::mem::size_of::<T>() <= 24 * 1024
    }

    #[inline(always)]
    fn accumulate<W: Walk<T>>(&self, xe: &[T], width: usize, acc: &mut [Score<T>], walk: &W) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => self.accumulate_agg::<W, AGG_SUM>(xe, width, acc, walk),
            Aggregate::Min => self.accumulate_agg::<W, AGG_MIN>(xe, width, acc, walk),
            Aggregate::Max => self.accumulate_agg::<W, AGG_MAX>(xe, width, acc, walk),
        }
    }

    #[inline(always)]
    fn accumulate_agg<W: Walk<T>, const AGG: u8>(&self, xe: &[T], width: usize, acc: &mut [Score<T>], walk: &W) {
        let f = &self.forest;
        let n_out = self.n_outputs;
        let rows = acc.len() / n_out;
        let mut leaves = [0usize; LANES];
        // Sums into one column of a model small enough to stay in L1 cache:
        // keep LANES running sums in registers across all trees, with no
        // per-tree load and store. Each row still sums in tree order.
        let column = if n_out == 1 { Some(0) } else { f.single_column };
        if let (AGG_SUM, Some(col), true) = (AGG, column, self.fits_in_cache()) {
            for first in (0..rows).step_by(LANES) {
                let n = LANES.min(rows - first);
                let block = &xe[first * width..(first + n) * width];
                let mut sums = [T::default(); LANES];
                for t in 0..f.roots.len() {
                    walk.walk(t, block, width, n, &mut leaves);
                    for (s, &leaf) in sums.iter_mut().zip(&leaves) {
                        *s = *s + f.leaf_value[leaf];
                    }
                }
                for (l, &s) in sums[..n].iter().enumerate() {
                    let a = &mut acc[(first + l) * n_out + col as usize];
                    a.score = a.score + s;
                    a.has |= !f.roots.is_empty();
                }
            }
            return;
        }
        // Tree-major order keeps a tree's nodes hot in cache while the rows,
        // walked LANES at a time, give the CPU independent work to overlap.
        for t in 0..f.roots.len() {
            for first in (0..rows).step_by(LANES) {
                let n = LANES.min(rows - first);
                walk.walk(t, &xe[first * width..(first + n) * width], width, n, &mut leaves);
                for (l, &leaf) in leaves[..n].iter().enumerate() {
                    let a = &mut acc[(first + l) * n_out..][..n_out];
                    if n_out == 1 {
                        merge::<T, AGG>(&mut a[0], f.leaf_value[leaf]);
                    } else if let Some(single) = &f.leaf_single {
                        let (col, v) = single[leaf];
                        merge::<T, AGG>(&mut a[col as usize], v);
                    } else {
                        let (start, end) = f.leaf_range[leaf];
                        for &(col, v) in &f.weights[start as usize..end as usize] {
                            merge::<T, AGG>(&mut a[col as usize], v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::canonical::tests::ort_condition;
    use super::super::parse::tests::{leaf, node, regressor, weight};
    use super::super::parse::{NodeMode, SpecNode};
    use super::*;

    /// xorshift: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const GRID: [f32; 7] = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, f32::INFINITY];

    fn random_tree(rng: &mut Rng, tree: i64, depth: usize, nodes: &mut Vec<SpecNode>) -> i64 {
        let id = nodes.len() as i64;
        nodes.push(leaf(tree, id));
        if depth > 0 && rng.below(4) != 0 {
            let modes = [
                NodeMode::BranchLeq,
                NodeMode::BranchLt,
                NodeMode::BranchGte,
                NodeMode::BranchGt,
                NodeMode::BranchEq,
                NodeMode::BranchNeq,
            ];
            let n_modes = if rng.below(3) == 0 { 6 } else { 4 };
            let mode = modes[rng.below(n_modes)];
            let t = random_tree(rng, tree, depth - 1, nodes);
            let f = random_tree(rng, tree, depth - 1, nodes);
            let value = GRID[rng.below(GRID.len() - 1)] as f64;
            let mut n = node(tree, id, mode, rng.below(3), value, t, f);
            n.missing_tracks_true = rng.below(2) == 0;
            nodes[id as usize] = n;
        }
        id
    }

    /// Walks the spec by node ids with onnxruntime's comparisons.
    fn reference_leaf(nodes: &[SpecNode], tree: i64, x: &[f32]) -> i64 {
        let find = |id: i64| nodes.iter().find(|n| n.tree_id == tree && n.node_id == id).unwrap();
        let mut n = nodes.iter().find(|n| n.tree_id == tree).unwrap();
        while n.mode != NodeMode::Leaf {
            let cond = ort_condition(n.mode, x[n.feature], n.value as f32, n.missing_tracks_true);
            n = find(if cond { n.true_id } else { n.false_id });
        }
        n.node_id
    }

    #[test]
    fn flattened_walks_match_reference_walks() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let xs = [f32::NAN, -1.0, -0.7, -0.5, 0.0, 0.5, 0.6, 1.0, 2.0, f32::INFINITY, f32::NEG_INFINITY];
        for _ in 0..300 {
            let mut nodes = vec![];
            let n_trees = 1 + rng.below(4);
            for tree in 0..n_trees as i64 {
                random_tree(&mut rng, tree, 4, &mut nodes);
            }
            // Weights exact in f32 and distinct per (tree, leaf): the sum says which leaves were hit.
            let weights: Vec<_> = nodes
                .iter()
                .filter(|n| n.mode == NodeMode::Leaf)
                .map(|n| weight(n.tree_id, n.node_id, 0, (n.node_id + 1) as f64 * 32f64.powi(n.tree_id as i32)))
                .collect();
            let spec = regressor(nodes.clone(), weights);
            let eval = Evaluator::<f32>::build(&spec).unwrap();
            let rows = 40;
            let x: Vec<f32> = (0..rows * 3).map(|_| xs[rng.below(xs.len())]).collect();
            let mut out = vec![0f32; rows];
            eval.eval(&x, rows, 3, |v| v, &mut out, &mut []).unwrap();
            for r in 0..rows {
                let row = &x[r * 3..][..3];
                let expected: f64 = (0..n_trees as i64)
                    .map(|t| (reference_leaf(&nodes, t, row) + 1) as f64 * 32f64.powi(t as i32))
                    .sum();
                assert_eq!(out[r] as f64, expected as f32 as f64, "row {row:?} layout {}", eval.forest.layout());
            }
        }
    }

    #[test]
    fn too_narrow_input_is_an_error() {
        let spec = regressor(
            vec![node(0, 0, NodeMode::BranchLeq, 4, 0.0, 1, 2), leaf(0, 1), leaf(0, 2)],
            vec![weight(0, 1, 0, 1.0), weight(0, 2, 0, 1.0)],
        );
        let e = Evaluator::<f32>::build(&spec).unwrap();
        let err = e.eval(&[0f32; 2], 1, 2, |v| v, &mut [0f32], &mut []).unwrap_err();
        assert!(err.to_string().contains("feature 4"), "{err}");
    }

    #[test]
    fn deep_trees_use_pointer_layout_and_match_reference() {
        // Chains 30 deep: too deep for the complete layout.
        let mut rng = Rng(42);
        let modes = [NodeMode::BranchLeq, NodeMode::BranchLt, NodeMode::BranchGte, NodeMode::BranchGt];
        let mut nodes = vec![];
        let mut weights = vec![];
        for tree in 0..3i64 {
            for id in 0..30i64 {
                let mode = modes[rng.below(4)];
                let value = GRID[rng.below(GRID.len() - 1)] as f64;
                let (t, f) = if rng.below(2) == 0 { (id + 100, id + 1) } else { (id + 1, id + 100) };
                let mut n = node(tree, id, mode, rng.below(3), value, t, f);
                n.missing_tracks_true = rng.below(2) == 0;
                nodes.push(n);
                nodes.push(leaf(tree, id + 100));
                weights.push(weight(tree, id + 100, 0, (id + 1) as f64 * 64f64.powi(tree as i32)));
            }
            nodes.push(leaf(tree, 30));
            weights.push(weight(tree, 30, 0, 31.0 * 64f64.powi(tree as i32)));
        }
        let spec = regressor(nodes.clone(), weights);
        let eval = Evaluator::<f32>::build(&spec).unwrap();
        assert!(matches!(eval.forest.nodes, Nodes::Fast(_)), "{}", eval.forest.layout());
        let xs = [f32::NAN, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, f32::INFINITY];
        let rows = 100;
        let x: Vec<f32> = (0..rows * 3).map(|_| xs[rng.below(xs.len())]).collect();
        let mut out = vec![0f32; rows];
        eval.eval(&x, rows, 3, |v| v, &mut out, &mut []).unwrap();
        for r in 0..rows {
            let row = &x[r * 3..][..3];
            let expected: f64 = (0..3i64)
                .map(|t| {
                    let id = reference_leaf(&nodes, t, row);
                    (if id >= 100 { id - 99 } else { 31 }) as f64 * 64f64.powi(t as i32)
                })
                .sum();
            assert_eq!(out[r] as f64, expected, "row {row:?}");
        }
    }

    #[test]
    fn leaf_only_trees_read_no_feature() {
        let spec = regressor(vec![leaf(0, 0), leaf(1, 0)], vec![weight(0, 0, 0, 1.5), weight(1, 0, 0, 2.0)]);
        let e = Evaluator::<f32>::build(&spec).unwrap();
        for rows in [1, 8, 11] {
            let mut out = vec![0f32; rows];
            e.eval(&vec![0f32; rows * 2], rows, 2, |v| v, &mut out, &mut []).unwrap();
            assert!(out.iter().all(|&v| v == 3.5), "{out:?}");
        }
    }
}
