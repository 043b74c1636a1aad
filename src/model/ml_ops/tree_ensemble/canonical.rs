//! The numeric domain trees are evaluated in ([`Real`]: f32, or f64 for
//! double input, as in onnxruntime) and the rewrite of every branch mode into
//! one comparison, `xe[f] <= t`, over a row extended with its negation. The
//! rewrite is what lets the fast layouts skip a per-node mode switch and NaN
//! test while routing NaN exactly as onnxruntime does.

use super::parse::NodeMode;

/// The numeric type thresholds, weights and sums live in. onnxruntime uses
/// double for double input and float for everything else, and so do we.
pub trait Real:
    Copy
    + PartialOrd
    + Default
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    fn from_usize(v: usize) -> Self;
    fn to_f32(self) -> f32;
    /// The largest value strictly below `self`, when there is one.
    fn pred(self) -> Option<Self>;
    fn is_nan(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty, $bits:ty) => {
        impl Real for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn pred(self) -> Option<Self> {
                if self.is_nan() || self == <$t>::NEG_INFINITY {
                    None
                } else if self == 0.0 {
                    Some(-<$t>::from_bits(1))
                } else if self > 0.0 {
                    Some(<$t>::from_bits(self.to_bits() - 1))
                } else {
                    Some(<$t>::from_bits(self.to_bits() + 1))
                }
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32, u32);
impl_real!(f64, u64);

/// Rewrites `mode(x, t)` (plus the node's NaN routing) as
/// `xe[feature'] <= t' ? left : right`. Returns (use negated column,
/// threshold, condition-true child is `left`), or `None` when no such form
/// exists (equality modes, NaN or infinite thresholds that have no
/// predecessor).
///
/// For non-NaN x: `x < t == x <= pred(t)`, `x >= t == -x <= -t`,
/// `x > t == -x <= pred(-t)`. NaN fails every `<=`, so it lands on `right`;
/// when the model routes NaN to the true branch the complementary comparison
/// is used with the children swapped.
pub fn canonical<T: Real>(mode: NodeMode, t: T, nan_true: bool) -> Option<(bool, T, bool)> {
    Some(match (mode, nan_true) {
        (NodeMode::BranchLeq, false) => (false, t, true),
        (NodeMode::BranchLeq, true) => (true, (-t).pred()?, false),
        (NodeMode::BranchLt, false) => (false, t.pred()?, true),
        (NodeMode::BranchLt, true) => (true, -t, false),
        (NodeMode::BranchGte, false) => (true, -t, true),
        (NodeMode::BranchGte, true) => (false, t.pred()?, false),
        (NodeMode::BranchGt, false) => (true, (-t).pred()?, true),
        (NodeMode::BranchGt, true) => (false, t, false),
        _ => return None,
    })
    .filter(|(_, threshold, _)| !threshold.is_nan() && !t.is_nan())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// onnxruntime's branch condition, the reference the canonical form must
    /// reproduce.
    pub fn ort_condition(mode: NodeMode, x: f32, t: f32, nan_true: bool) -> bool {
        (match mode {
            NodeMode::BranchLeq => x <= t,
            NodeMode::BranchLt => x < t,
            NodeMode::BranchGte => x >= t,
            NodeMode::BranchGt => x > t,
            NodeMode::BranchEq => x == t,
            NodeMode::BranchNeq => x != t,
            NodeMode::Leaf => unreachable!(),
        }) || (nan_true && x.is_nan())
    }

    const SPECIALS: [f32; 10] =
        [0.0, -0.0, 1.5, -1.5, 1e-30, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, 3.0];

    #[test]
    fn canonical_form_matches_every_mode() {
        let modes = [NodeMode::BranchLeq, NodeMode::BranchLt, NodeMode::BranchGte, NodeMode::BranchGt];
        for mode in modes {
            for nan_true in [false, true] {
                for &t in &SPECIALS {
                    let Some((negated, u, true_left)) = canonical(mode, t, nan_true) else {
                        assert!(t.is_infinite(), "{mode:?} {t} should canonicalize");
                        continue;
                    };
                    let mut xs = SPECIALS.to_vec();
                    xs.extend([f32::NAN, t, t.pred().unwrap_or(t), -(-t).pred().unwrap_or(t)]);
                    for x in xs {
                        let xe = if negated { -x } else { x };
                        let left = xe <= u;
                        let got = left == true_left;
                        assert_eq!(
                            got,
                            ort_condition(mode, x, t, nan_true),
                            "{mode:?} nan_true={nan_true} t={t} x={x}"
                        );
                    }
                }
            }
        }
        assert!(canonical(NodeMode::BranchEq, 1.0f32, false).is_none());
        assert!(canonical(NodeMode::BranchLeq, f32::NAN, false).is_none());
    }
}
