//! The fastest node layout, for shallow ensembles (gradient boosting's usual
//! depth 3 to 8): every tree padded to a complete binary tree of the
//! ensemble's depth and stored breadth-first, so a walk is exactly `depth`
//! branch-free steps `i = 2i + 1 + (x > t)` with no leaf test and no child
//! pointers. A leaf above the full depth is padded with dummy splits whose
//! every descendant slot names that same leaf, so whatever they compare, the
//! walk lands where the original tree would (NaN included).

use super::flat::{FastNode, Real, LEAF};

/// Deepest ensemble laid out this way.
const MAX_DEPTH: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Split<T> {
    pub feature: u32,
    pub threshold: T,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PerfectTrees<T> {
    pub depth: usize,
    /// One more than the largest feature index the splits read.
    pub min_width: usize,
    /// `2^depth - 1` splits per tree, breadth-first, trees one after another.
    pub splits: Vec<Split<T>>,
    /// `2^depth` leaf indices per tree.
    pub leaves: Vec<u32>,
}

fn depth_of<T>(nodes: &[FastNode<T>], r: u32, memo: &mut [u8]) -> usize {
    if r & LEAF != 0 {
        return 0;
    }
    // Iterative post-order: trees may be deep enough to overflow the stack.
    let mut stack = vec![(r, false)];
    while let Some((n, expanded)) = stack.pop() {
        let node = &nodes[n as usize];
        let child_depth = |c: u32, memo: &[u8]| {
            if c & LEAF != 0 {
                Some(0)
            } else {
                memo[c as usize].checked_sub(1)
            }
        };
        if expanded {
            let d = child_depth(node.left, memo).unwrap_or(0).max(child_depth(node.right, memo).unwrap_or(0));
            memo[n as usize] = (d as usize + 2).min(u8::MAX as usize) as u8;
        } else if memo[n as usize] == 0 {
            stack.push((n, true));
            for c in [node.left, node.right] {
                if c & LEAF == 0 && memo[c as usize] == 0 {
                    stack.push((c, false));
                }
            }
        }
    }
    // memo holds depth + 1 so that 0 can mean "not computed".
    memo[r as usize] as usize - 1
}

impl<T: Real> PerfectTrees<T> {
    /// `None` when the ensemble is too deep, or so unbalanced that padding
    /// would blow it up more than fourfold.
    pub fn build(nodes: &[FastNode<T>], roots: &[u32]) -> Option<PerfectTrees<T>> {
        let mut memo = vec![0u8; nodes.len()];
        let mut depth = 0;
        for &r in roots {
            depth = depth.max(depth_of(nodes, r, &mut memo));
            if depth > MAX_DEPTH {
                return None;
            }
        }
        let n_splits = (1usize << depth) - 1;
        if roots.len() * n_splits > 4 * nodes.len() + 1024 {
            return None;
        }
        let mut trees = PerfectTrees {
            depth,
            min_width: nodes.iter().map(|n| n.feature as usize + 1).max().unwrap_or(0),
            splits: Vec::with_capacity(roots.len() * n_splits),
            leaves: Vec::with_capacity(roots.len() * (n_splits + 1)),
        };
        let dummy = Split { feature: 0, threshold: T::default() };
        for &root in roots {
            let base_split = trees.splits.len();
            let base_leaf = trees.leaves.len();
            trees.splits.resize(base_split + n_splits, dummy);
            trees.leaves.resize(base_leaf + n_splits + 1, 0);
            // (breadth-first slot, node reference)
            let mut stack = vec![(0usize, root)];
            while let Some((slot, r)) = stack.pop() {
                if r & LEAF != 0 {
                    // Every leaf slot under `slot` gets this leaf.
                    let mut first = slot;
                    let mut width = 1;
                    while first < n_splits {
                        first = 2 * first + 1;
                        width *= 2;
                    }
                    let start = base_leaf + first - n_splits;
                    trees.leaves[start..start + width].fill(r & !LEAF);
                } else {
                    let node = &nodes[r as usize];
                    trees.splits[base_split + slot] = Split { feature: node.feature, threshold: node.threshold };
                    stack.push((2 * slot + 1, node.left));
                    stack.push((2 * slot + 2, node.right));
                }
            }
        }
        Some(trees)
    }

    #[cfg(test)]
    pub fn n_trees(&self) -> usize {
        self.leaves.len() >> self.depth
    }
}

/// The leaf tree `tree` sends `xe` to.
#[inline(always)]
pub fn walk<T: Real>(trees: &PerfectTrees<T>, tree: usize, xe: &[T]) -> usize {
    let n_splits = (1usize << trees.depth) - 1;
    let splits = &trees.splits[tree * n_splits..][..n_splits];
    let mut i = 0usize;
    for _ in 0..trees.depth {
        let s = &splits[i];
        // Left child at 2i + 1, right at 2i + 2; NaN fails `<=` and goes
        // right, as in the canonical form.
        i = 2 * i + 2 - (xe[s.feature as usize] <= s.threshold) as usize;
    }
    trees.leaves[tree * (n_splits + 1) + i - n_splits] as usize
}

/// Rows walked in lockstep: their walks are independent chains of
/// dependent loads, which the CPU overlaps when they are interleaved.
pub const LANES: usize = 8;

/// The leaves tree `tree` sends `LANES` consecutive rows of `block` to.
#[inline(always)]
pub fn walk_lanes<T: Real>(trees: &PerfectTrees<T>, tree: usize, block: &[T], width: usize, out: &mut [usize; LANES]) {
    let n_splits = (1usize << trees.depth) - 1;
    let splits = &trees.splits[tree * n_splits..][..n_splits];
    let leaves = &trees.leaves[tree * (n_splits + 1)..][..n_splits + 1];
    let block = &block[..LANES * width];
    if width < trees.min_width {
        // Not reachable from `Evaluator`, which sizes rows from the same
        // forest; keeps the unchecked reads below sound regardless.
        for (l, o) in out.iter_mut().enumerate() {
            *o = walk(trees, tree, &block[l * width..][..width]);
        }
        return;
    }
    let mut idx = [0usize; LANES];
    for _ in 0..trees.depth {
        for (l, i) in idx.iter_mut().enumerate() {
            // SAFETY: `*i < n_splits` (it starts at 0 and the loop stops after
            // `depth` steps, each mapping [0, 2^d - 1) into [0, 2^(d+1) - 1)),
            // and every split's feature is below `min_width <= width`, so
            // `l * width + feature` is inside `block`, which holds LANES rows.
            let (x, s) = unsafe {
                let s = splits.get_unchecked(*i);
                (*block.get_unchecked(l * width + s.feature as usize), s)
            };
            *i = 2 * *i + 2 - (x <= s.threshold) as usize;
        }
    }
    for l in 0..LANES {
        out[l] = leaves[idx[l] - n_splits] as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(feature: u32, threshold: f32, left: u32, right: u32) -> FastNode<f32> {
        FastNode { feature, threshold, left, right }
    }

    #[test]
    fn unbalanced_tree_is_padded_to_the_same_leaves() {
        // root: x0 <= 0 ? leaf 0 : (x1 <= 1 ? leaf 1 : leaf 2)
        let nodes = vec![fast(0, 0.0, LEAF, 1), fast(1, 1.0, LEAF | 1, LEAF | 2)];
        let trees = PerfectTrees::build(&nodes, &[0]).unwrap();
        assert_eq!(trees.depth, 2);
        assert_eq!(trees.leaves, vec![0, 0, 1, 2]);
        for (x0, x1, leaf) in
            [(-1.0, 5.0, 0), (-1.0, f32::NAN, 0), (1.0, 0.0, 1), (1.0, 2.0, 2), (f32::NAN, f32::NAN, 2)]
        {
            assert_eq!(walk(&trees, 0, &[x0, x1]), leaf, "x = ({x0}, {x1})");
        }
    }

    #[test]
    fn single_leaf_trees_have_depth_zero() {
        let trees = PerfectTrees::<f32>::build(&[], &[LEAF | 3, LEAF]).unwrap();
        assert_eq!(trees.depth, 0);
        assert_eq!(trees.n_trees(), 2);
        assert_eq!(walk(&trees, 0, &[]), 3);
        assert_eq!(walk(&trees, 1, &[]), 0);
    }

    #[test]
    fn deep_chains_are_refused() {
        let n = 40u32;
        let nodes: Vec<_> = (0..n).map(|i| fast(0, i as f32, LEAF, if i + 1 < n { i + 1 } else { LEAF | 1 })).collect();
        assert!(PerfectTrees::build(&nodes, &[0]).is_none());
    }
}
