//! Evaluating a [`Forest`] over a batch and turning the per-row sums into the
//! op's outputs exactly as onnxruntime's `TreeEnsembleCommon` and
//! `TreeAggregator*` do: which base values apply, which columns count as
//! "scored", the two-class expansion of a single scored column, the post
//! transforms (computed in f32, like onnxruntime) and the label.
//!
//! Rows are processed in chunks, tree by tree within a chunk, so a tree's
//! nodes stay hot in cache while every row of the chunk walks it; nothing is
//! allocated per row.

use super::flat::{FastNode, Forest, GeneralNode, Nodes, Real, LEAF};
use super::parse::{Aggregate, ClassLabels, EnsembleSpec, NodeMode, PostTransform};
use super::perfect::{self, LANES};
use super::transform::{probit, write_scores};
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
struct ClassInfo {
    /// What onnxruntime reports as label: the int64 labels, or class indices
    /// when labels are strings.
    ids: Vec<i64>,
    binary_case: bool,
    weights_are_all_positive: bool,
}

/// A compiled ensemble plus everything needed to finish its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluator<T> {
    pub forest: Forest<T>,
    pub n_outputs: usize,
    aggregate: Aggregate,
    post: PostTransform,
    base: Vec<T>,
    class: Option<ClassInfo>,
}

const CHUNK: usize = 64;

const AGG_SUM: u8 = 0;
const AGG_MIN: u8 = 1;
const AGG_MAX: u8 = 2;

#[inline(always)]
fn walk_fast<T: Real>(nodes: &[FastNode<T>], mut r: u32, xe: &[T]) -> usize {
    while r & LEAF == 0 {
        let node = &nodes[r as usize];
        r = if xe[node.feature as usize] <= node.threshold { node.left } else { node.right };
    }
    (r & !LEAF) as usize
}

#[inline(always)]
fn walk_general<T: Real>(nodes: &[GeneralNode<T>], mut r: u32, xe: &[T]) -> usize {
    while r & LEAF == 0 {
        let node = &nodes[r as usize];
        let x = xe[node.feature as usize];
        let t = node.threshold;
        // NaN fails every comparison but `!=`, as in C++.
        let cond = match node.mode {
            NodeMode::BranchLeq => x <= t,
            NodeMode::BranchLt => x < t,
            NodeMode::BranchGte => x >= t,
            NodeMode::BranchGt => x > t,
            NodeMode::BranchEq => x == t,
            NodeMode::BranchNeq => x != t,
            NodeMode::Leaf => true,
        } || (node.missing_tracks_true && x.is_nan());
        r = if cond { node.if_true } else { node.if_false };
    }
    (r & !LEAF) as usize
}

#[inline(always)]
fn merge<T: Real, const AGG: u8>(acc: &mut Score<T>, v: T) {
    match AGG {
        AGG_SUM => acc.score = acc.score + v,
        AGG_MIN => acc.score = if !acc.has || v < acc.score { v } else { acc.score },
        _ => acc.score = if !acc.has || v > acc.score { v } else { acc.score },
    }
    acc.has = true;
}

/// Sends up to `LANES` rows (`width` values each, in `block`) down tree
/// `tree`, writing one leaf per row. A trait rather than a closure so that
/// the walk is inlined into the accumulation loop.
trait Walk<T> {
    fn walk(&self, tree: usize, block: &[T], width: usize, out: &mut [usize; LANES]);
}

struct PerfectWalk<'a, T>(&'a perfect::PerfectTrees<T>);
struct FastWalk<'a, T>(&'a [FastNode<T>], &'a [u32]);
struct GeneralWalk<'a, T>(&'a [GeneralNode<T>], &'a [u32]);

impl<T: Real> Walk<T> for PerfectWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, out: &mut [usize; LANES]) {
        if block.len() == LANES * width {
            perfect::walk_lanes(self.0, tree, block, width, out)
        } else {
            for (o, row) in out.iter_mut().zip(block.chunks_exact(width.max(1))) {
                *o = perfect::walk(self.0, tree, row);
            }
        }
    }
}

impl<T: Real> Walk<T> for FastWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, out: &mut [usize; LANES]) {
        for (o, row) in out.iter_mut().zip(block.chunks_exact(width.max(1))) {
            *o = walk_fast(self.0, self.1[tree], row);
        }
    }
}

impl<T: Real> Walk<T> for GeneralWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, out: &mut [usize; LANES]) {
        for (o, row) in out.iter_mut().zip(block.chunks_exact(width.max(1))) {
            *o = walk_general(self.0, self.1[tree], row);
        }
    }
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
            bail!(
                "{}: the trees read feature {} but the input has {} columns",
                self.op_name(),
                nf - 1,
                n_cols
            );
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
                Nodes::General(nodes) => {
                    self.accumulate(xe, width, acc, &GeneralWalk(nodes, roots))
                }
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

    #[inline(always)]
    fn accumulate<W: Walk<T>>(
        &self,
        xe: &[T],
        width: usize,
        acc: &mut [Score<T>],
        walk: &W,
    ) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => {
                self.accumulate_agg::<W, AGG_SUM>(xe, width, acc, walk)
            }
            Aggregate::Min => self.accumulate_agg::<W, AGG_MIN>(xe, width, acc, walk),
            Aggregate::Max => self.accumulate_agg::<W, AGG_MAX>(xe, width, acc, walk),
        }
    }

    #[inline(always)]
    fn accumulate_agg<W: Walk<T>, const AGG: u8>(
        &self,
        xe: &[T],
        width: usize,
        acc: &mut [Score<T>],
        walk: &W,
    ) {
        let f = &self.forest;
        let n_out = self.n_outputs;
        let rows = acc.len() / n_out;
        let mut leaves = [0usize; LANES];
        // Tree-major order keeps a tree's nodes hot in cache while the rows,
        // walked LANES at a time, give the CPU independent work to overlap.
        for t in 0..f.roots.len() {
            for first in (0..rows).step_by(LANES) {
                let n = LANES.min(rows - first);
                walk.walk(t, &xe[first * width..(first + n) * width], width, &mut leaves);
                for (l, &leaf) in leaves[..n].iter().enumerate() {
                    let a = &mut acc[(first + l) * n_out..][..n_out];
                    if n_out == 1 {
                        merge::<T, AGG>(&mut a[0], f.leaf_value[leaf]);
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

    /// One output column: onnxruntime's `FinalizeScores1`, where only PROBIT
    /// is applied and a single base value is the origin.
    pub(super) fn finish_single(&self, p: Score<T>) -> f32 {
        let origin = if self.base.len() == 1 { self.base[0] } else { T::default() };
        let score = match self.aggregate {
            Aggregate::Sum => p.score + origin,
            Aggregate::Average => p.score / T::from_usize(self.forest.roots.len()) + origin,
            Aggregate::Min | Aggregate::Max => {
                if p.has {
                    p.score + origin
                } else {
                    origin
                }
            }
        };
        if self.post == PostTransform::Probit {
            probit(score.to_f32())
        } else {
            score.to_f32()
        }
    }

    /// Several targets: base values apply only when there is one per target.
    pub(super) fn finish_regressor(&self, preds: &mut [Score<T>], out: &mut [f32]) {
        let use_base = self.base.len() == preds.len();
        let n_trees = T::from_usize(self.forest.roots.len());
        for (k, p) in preds.iter_mut().enumerate() {
            let base = if use_base { self.base[k] } else { T::default() };
            p.score = match self.aggregate {
                Aggregate::Sum => p.score + base,
                Aggregate::Average => p.score / n_trees + base,
                Aggregate::Min | Aggregate::Max => base + p.value(),
            };
        }
        write_scores(preds, self.post, out, -1);
    }

    /// onnxruntime's `TreeAggregatorClassifier::FinalizeScores`; returns the
    /// label.
    pub(super) fn finish_classifier(&self, preds: &mut [Score<T>], out: &mut [f32]) -> i64 {
        let Some(class) = &self.class else { return 0 };
        let base = &self.base;
        if preds.len() > 2 {
            for (p, &b) in preds.iter_mut().zip(base.iter()) {
                if p.has {
                    p.score = p.score + b;
                } else {
                    *p = Score { score: b, has: true };
                }
            }
            let mut best: Option<(usize, T)> = None;
            for (k, p) in preds.iter().enumerate() {
                if p.has && best.is_none_or(|(_, w)| p.score > w) {
                    best = Some((k, p.score));
                }
            }
            write_scores(preds, self.post, out, -1);
            // onnxruntime indexes with -1 when no class is scored; we pick the
            // first class instead.
            return class.ids[best.map(|b| b.0).unwrap_or(0)];
        }
        let mut add_second_class = -1;
        let mut n = 2;
        match base.len() {
            2 => {
                if preds[1].has {
                    // onnxruntime's reading: class 0's base is ignored and
                    // class 1 is re-derived from class 0's sum.
                    preds[1].score = base[1] + preds[0].score;
                    preds[0].score = -preds[1].score;
                    preds[1].has = true;
                } else {
                    preds[1].score = preds[1].score + base[1];
                    preds[0].score = preds[0].score + base[0];
                }
            }
            1 => {
                preds[0].score = preds[0].score + base[0];
                if !preds[1].has {
                    n = 1;
                }
            }
            0 => {
                add_second_class = 3;
                if !preds[1].has {
                    n = 1;
                }
            }
            _ => (),
        }
        let (s0, s1) = (preds[0], if n == 2 && preds[1].has { preds[1] } else { Score::default() });
        let pos_weight = if s1.has {
            s1.score
        } else if s0.has {
            s0.score
        } else {
            T::default()
        };
        let label = if class.binary_case {
            let positive = if class.weights_are_all_positive {
                add_second_class = if pos_weight > T::from_f64(0.5) { 0 } else { 1 };
                add_second_class == 0
            } else {
                add_second_class = if pos_weight > T::default() { 2 } else { 3 };
                add_second_class == 2
            };
            class.ids[positive as usize]
        } else {
            // onnxruntime returns the literal 1 / 0 here, not the labels.
            (pos_weight > T::default()) as i64
        };
        write_scores(&preds[..n], self.post, out, add_second_class);
        label
    }
}

#[cfg(test)]
mod tests {
    use super::super::flat::tests::{leaf, node, ort_condition, regressor, weight};
    use super::super::parse::{ClassifierSpec, SpecNode};
    use super::super::transform::{logistic, softmax};
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

    fn stump_classifier(labels: Vec<i64>, weights: Vec<(i64, f64, f64)>, base: Vec<f64>, post: PostTransform) -> Evaluator<f32> {
        // x <= 0 goes to leaf 1, else leaf 2; (class, weight leaf 1, weight leaf 2).
        let mut ws = vec![];
        for &(c, a, b) in &weights {
            ws.push(weight(0, 1, c, a));
            ws.push(weight(0, 2, c, b));
        }
        let distinct: std::collections::HashSet<i64> = weights.iter().map(|w| w.0).collect();
        let mut spec = regressor(vec![node(0, 0, NodeMode::BranchLeq, 0, 0.0, 1, 2), leaf(0, 1), leaf(0, 2)], ws);
        spec.n_outputs = labels.len();
        spec.post_transform = post;
        spec.base_values = base;
        spec.classifier = Some(ClassifierSpec {
            binary_case: labels.len() == 2 && distinct.len() == 1,
            weights_are_all_positive: spec.weights.iter().all(|w| w.weight >= 0.0),
            labels: ClassLabels::Int64(labels),
        });
        Evaluator::build(&spec).unwrap()
    }

    fn run(e: &Evaluator<f32>, x: &[f32]) -> (Vec<f32>, Vec<i64>) {
        let mut scores = vec![0f32; x.len() * e.n_outputs];
        let mut labels = vec![0i64; x.len()];
        e.eval(x, x.len(), 1, |v| v, &mut scores, &mut labels).unwrap();
        (scores, labels)
    }

    #[test]
    fn binary_logistic_with_one_scored_class() {
        // Gradient-boosting export: every weight on class 0, one base value.
        let e = stump_classifier(vec![0, 1], vec![(0, -1.0, 2.0)], vec![0.5], PostTransform::Logistic);
        let (scores, labels) = run(&e, &[-1.0, 1.0]);
        let p = |s: f32| logistic(s);
        assert_eq!(scores, vec![p(0.5), p(-0.5), p(-2.5), p(2.5)]);
        assert_eq!(labels, vec![0, 1]);
    }

    #[test]
    fn binary_positive_weights_threshold_at_half() {
        let e = stump_classifier(vec![3, 7], vec![(1, 0.4, 0.6)], vec![], PostTransform::None);
        let (scores, labels) = run(&e, &[-1.0, 1.0]);
        // Class 1 scored, class 0 not: two columns, class 0 reads 0.
        assert_eq!(scores, vec![0.0, 0.4, 0.0, 0.6]);
        assert_eq!(labels, vec![3, 7]);
    }

    #[test]
    fn binary_single_column_expands_to_complement() {
        let e = stump_classifier(vec![3, 7], vec![(0, 0.4, 0.6)], vec![], PostTransform::None);
        let (scores, labels) = run(&e, &[-1.0, 1.0]);
        assert_eq!(scores, vec![1.0 - 0.4, 0.4, 1.0 - 0.6, 0.6]);
        assert_eq!(labels, vec![3, 7]);
    }

    #[test]
    fn binary_with_both_classes_labels_like_onnxruntime() {
        // Not the "binary case": onnxruntime reports the literal 1/0.
        let e = stump_classifier(vec![3, 7], vec![(0, 0.9, 0.2), (1, 0.1, 0.8)], vec![], PostTransform::None);
        let (scores, labels) = run(&e, &[-1.0, 1.0]);
        assert_eq!(scores, vec![0.9, 0.1, 0.2, 0.8]);
        assert_eq!(labels, vec![1, 1]);
    }

    #[test]
    fn multiclass_softmax_with_base_values() {
        let e = stump_classifier(
            vec![10, 20, 30],
            vec![(0, 1.0, 0.0), (1, 0.0, 1.0), (2, 0.5, 0.5)],
            vec![0.1, 0.2, 0.3],
            PostTransform::Softmax,
        );
        let (scores, labels) = run(&e, &[-1.0, 1.0]);
        let mut first = [1.1f32, 0.2, 0.8];
        softmax(&mut first);
        assert_eq!(&scores[..3], &first);
        assert_eq!(labels, vec![10, 20]);
    }

    #[test]
    fn single_target_aggregates() {
        let nodes = vec![node(0, 0, NodeMode::BranchLeq, 0, 0.0, 1, 2), leaf(0, 1), leaf(0, 2), leaf(1, 0)];
        let weights = vec![weight(0, 1, 0, 1.0), weight(0, 2, 0, 3.0), weight(1, 0, 0, 2.0)];
        let mut spec = regressor(nodes, weights);
        spec.base_values = vec![10.0];
        let cases = [
            (Aggregate::Sum, [13.0f32, 15.0]),
            (Aggregate::Average, [11.5, 12.5]),
            (Aggregate::Min, [11.0, 12.0]),
            (Aggregate::Max, [12.0, 13.0]),
        ];
        for (agg, expected) in cases {
            spec.aggregate = agg;
            let e = Evaluator::<f32>::build(&spec).unwrap();
            let mut out = [0f32; 2];
            e.eval(&[-1f32, 1.0], 2, 1, |v| v, &mut out, &mut []).unwrap();
            assert_eq!(out, expected, "{agg:?}");
        }
    }

    #[test]
    fn unscored_targets_read_zero_even_with_base_values() {
        let mut spec = regressor(vec![leaf(0, 0)], vec![weight(0, 0, 1, 2.0)]);
        spec.n_outputs = 2;
        spec.base_values = vec![5.0, 5.0];
        let e = Evaluator::<f32>::build(&spec).unwrap();
        let mut out = [0f32; 2];
        e.eval(&[0f32], 1, 1, |v| v, &mut out, &mut []).unwrap();
        assert_eq!(out, [0.0, 7.0]);
    }

    #[test]
    fn too_narrow_input_is_an_error() {
        let spec = regressor(vec![node(0, 0, NodeMode::BranchLeq, 4, 0.0, 1, 2), leaf(0, 1), leaf(0, 2)], vec![weight(0, 1, 0, 1.0), weight(0, 2, 0, 1.0)]);
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
}
