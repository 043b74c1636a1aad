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
use tract_onnx::prelude::*;

/// onnxruntime's `ScoreValue`: a sum plus whether any tree contributed to it.
/// Unscored columns read as 0 whatever their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score<T> {
    pub score: T,
    pub has: bool,
}

impl<T: Real> Score<T> {
    fn value(self) -> T {
        if self.has {
            self.score
        } else {
            T::default()
        }
    }
    fn f32(self) -> f32 {
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
            match &self.forest.nodes {
                Nodes::Fast(nodes) => {
                    self.accumulate(xe, width, acc, |r, row| walk_fast(nodes, r, row))
                }
                Nodes::General(nodes) => {
                    self.accumulate(xe, width, acc, |r, row| walk_general(nodes, r, row))
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
    fn accumulate<W: Fn(u32, &[T]) -> usize>(
        &self,
        xe: &[T],
        width: usize,
        acc: &mut [Score<T>],
        walk: W,
    ) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => self.accumulate_agg::<W, AGG_SUM>(xe, width, acc, walk),
            Aggregate::Min => self.accumulate_agg::<W, AGG_MIN>(xe, width, acc, walk),
            Aggregate::Max => self.accumulate_agg::<W, AGG_MAX>(xe, width, acc, walk),
        }
    }

    #[inline(always)]
    fn accumulate_agg<W: Fn(u32, &[T]) -> usize, const AGG: u8>(
        &self,
        xe: &[T],
        width: usize,
        acc: &mut [Score<T>],
        walk: W,
    ) {
        let f = &self.forest;
        let n_out = self.n_outputs;
        let rows = acc.len() / n_out;
        // Rows are walked in tree-major order: a tree's nodes stay in cache
        // and the rows' walks, being independent, overlap in the CPU.
        if n_out == 1 {
            for &root in &f.roots {
                for (r, a) in acc.iter_mut().enumerate() {
                    let leaf = walk(root, &xe[r * width..][..width]);
                    merge::<T, AGG>(a, f.leaf_value[leaf]);
                }
            }
        } else {
            for &root in &f.roots {
                for r in 0..rows {
                    let leaf = walk(root, &xe[r * width..][..width]);
                    let (start, end) = f.leaf_range[leaf];
                    let a = &mut acc[r * n_out..][..n_out];
                    for &(col, v) in &f.weights[start as usize..end as usize] {
                        merge::<T, AGG>(&mut a[col as usize], v);
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

/// onnxruntime's `write_scores`: post-transform in f32; a single scored column
/// is expanded into two according to `add_second_class`.
pub(super) fn write_scores<T: Real>(
    preds: &[Score<T>],
    post: PostTransform,
    out: &mut [f32],
    add_second_class: i32,
) {
    if preds.len() >= 2 {
        for (o, p) in out.iter_mut().zip(preds) {
            *o = p.f32();
        }
        match post {
            PostTransform::None => (),
            PostTransform::Probit => out.iter_mut().for_each(|o| *o = probit(*o)),
            PostTransform::Logistic => out.iter_mut().for_each(|o| *o = logistic(*o)),
            PostTransform::Softmax => softmax(out),
            PostTransform::SoftmaxZero => softmax_zero(out),
        }
        return;
    }
    let Some(p) = preds.first() else { return };
    // Arithmetic in T, transforms in f32, as onnxruntime does.
    let v = p.value();
    let (a, b) = match add_second_class {
        _ if post == PostTransform::Probit => (probit(v.to_f32()), 0.0),
        0 | 1 => ((T::from_f64(1.0) + -v).to_f32(), v.to_f32()),
        2 | 3 if post == PostTransform::Logistic => {
            (logistic((-v).to_f32()), logistic(v.to_f32()))
        }
        2 | 3 => ((-v).to_f32(), v.to_f32()),
        // onnxruntime leaves the second column unwritten.
        _ => (v.to_f32(), 0.0),
    };
    out[0] = a;
    if let Some(o) = out.get_mut(1) {
        *o = b;
    }
}

pub(super) fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 {
        1.0 - e
    } else {
        e
    }
}

/// onnxruntime's approximate inverse error function, kept as is so PROBIT
/// outputs match it rather than the exact function.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (3.14159f32 * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub(super) fn probit(v: f32) -> f32 {
    1.41421356f32 * erf_inv(2.0 * v - 1.0)
}

pub(super) fn softmax(values: &mut [f32]) {
    let mut max = -f32::MAX;
    for &v in values.iter() {
        if v > max {
            max = v;
        }
    }
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    values.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax that leaves (near-)zero scores out of the normalisation.
pub(super) fn softmax_zero(values: &mut [f32]) {
    let mut max = -f32::MAX;
    for &v in values.iter() {
        if v > max {
            max = v;
        }
    }
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.0000001 || *v < -0.0000001 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    values.iter_mut().for_each(|v| *v /= sum);
}
