//! Sending rows down one tree, for each node layout: the pointer-chasing
//! walks of the canonical and general forms, and the [`Walk`] trait through
//! which the batch loop in `eval.rs` drives a layout `LANES` rows at a time.

use super::flat::{FastNode, GeneralNode, Real, LEAF};
use super::parse::NodeMode;
use super::perfect::{self, PerfectTrees, LANES};

#[inline(always)]
pub fn walk_fast<T: Real>(nodes: &[FastNode<T>], mut r: u32, xe: &[T]) -> usize {
    while r & LEAF == 0 {
        let node = &nodes[r as usize];
        r = if xe[node.feature as usize] <= node.threshold { node.left } else { node.right };
    }
    (r & !LEAF) as usize
}

#[inline(always)]
pub fn walk_general<T: Real>(nodes: &[GeneralNode<T>], mut r: u32, xe: &[T]) -> usize {
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

/// Sends `rows` (at most `LANES`) rows of `width` values each, packed in
/// `block`, down tree `tree`, writing one leaf per row. A trait rather than a closure so that
/// the walk is inlined into the accumulation loop.
pub trait Walk<T> {
    fn walk(&self, tree: usize, block: &[T], width: usize, rows: usize, out: &mut [usize; LANES]);
}

pub struct PerfectWalk<'a, T>(pub &'a PerfectTrees<T>);
pub struct FastWalk<'a, T>(pub &'a [FastNode<T>], pub &'a [u32]);
pub struct GeneralWalk<'a, T>(pub &'a [GeneralNode<T>], pub &'a [u32]);

impl<T: Real> Walk<T> for PerfectWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, rows: usize, out: &mut [usize; LANES]) {
        if rows == LANES {
            perfect::walk_lanes(self.0, tree, block, width, out)
        } else {
            for (l, o) in out[..rows].iter_mut().enumerate() {
                let row = &block[l * width..][..width];
                *o = perfect::walk(self.0, tree, row);
            }
        }
    }
}

impl<T: Real> Walk<T> for FastWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, rows: usize, out: &mut [usize; LANES]) {
        for (l, o) in out[..rows].iter_mut().enumerate() {
            let row = &block[l * width..][..width];
            *o = walk_fast(self.0, self.1[tree], row);
        }
    }
}

impl<T: Real> Walk<T> for GeneralWalk<'_, T> {
    #[inline(always)]
    fn walk(&self, tree: usize, block: &[T], width: usize, rows: usize, out: &mut [usize; LANES]) {
        for (l, o) in out[..rows].iter_mut().enumerate() {
            let row = &block[l * width..][..width];
            *o = walk_general(self.0, self.1[tree], row);
        }
    }
}
