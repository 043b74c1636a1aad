//! The last step of an evaluation, row by row: turning a row's per-column
//! sums into output scores and a label exactly as onnxruntime's
//! `TreeAggregator*::FinalizeScores` do, quirks included: which base values
//! apply, which columns count as scored, how a two-class model with a single
//! scored column is expanded, and the literal 1/0 label of a two-class model
//! whose weights name both classes.

use super::eval::{Evaluator, Score};
use super::flat::Real;
use super::parse::{Aggregate, PostTransform};
use super::transform::{probit, write_scores};

impl<T: Real> Evaluator<T> {
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
    use super::super::parse::tests::{leaf, node, regressor, weight};
    use super::super::parse::{ClassLabels, ClassifierSpec, NodeMode};
    use super::super::transform::{logistic, softmax};
    use super::*;

    fn stump_classifier(
        labels: Vec<i64>,
        weights: Vec<(i64, f64, f64)>,
        base: Vec<f64>,
        post: PostTransform,
    ) -> Evaluator<f32> {
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
}
