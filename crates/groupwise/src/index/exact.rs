//! Exact (brute-force) k-nearest-neighbour search over the stored vectors.
//!
//! Used where it is faster or more correct than the graph: small populations,
//! very selective filters, and as the ground truth in tests and benchmarks.
//! Batches of queries are processed block by block (a block of stored vectors
//! stays in cache while every query of the batch is scored against it), which
//! is the shape of a matrix product without the extra dependency.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::vector::dot;

/// A scored slot; ordered so that a `BinaryHeap` keeps the *worst* on top.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub sim: f32,
    pub slot: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// "Greater" means worse: lower similarity, then higher slot.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .sim
            .total_cmp(&self.sim)
            .then(self.slot.cmp(&other.slot))
    }
}

/// Keeps the `k` best candidates seen so far.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    pub fn push(&mut self, sim: f32, slot: usize) {
        if self.heap.len() < self.k {
            self.heap.push(Scored { sim, slot });
        } else if let Some(worst) = self.heap.peek() {
            let cand = Scored { sim, slot };
            if cand < *worst {
                self.heap.pop();
                self.heap.push(cand);
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

/// Rows of stored vectors scored against a query block at a time.
const ROW_BLOCK: usize = 1024;
/// Queries scored together against one row block.
const QUERY_BLOCK: usize = 32;

/// Exact top-`k` for each query (row-major, `dim` wide) among the rows for which
/// `eligible(slot)` holds. Best first; ties broken by lower slot.
pub(crate) fn top_k_batch(
    data: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    eligible: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<Scored>> {
    let rows = data.len() / dim.max(1);
    let nq = queries.len() / dim.max(1);
    let blocks: Vec<Vec<Vec<Scored>>> = (0..nq.div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(nq);
            let mut tops: Vec<TopK> = (q0..q1).map(|_| TopK::new(k)).collect();
            for r0 in (0..rows).step_by(ROW_BLOCK) {
                let r1 = (r0 + ROW_BLOCK).min(rows);
                for (qi, top) in (q0..q1).zip(tops.iter_mut()) {
                    let q = &queries[qi * dim..(qi + 1) * dim];
                    for r in r0..r1 {
                        if eligible(r) {
                            top.push(dot(q, &data[r * dim..(r + 1) * dim]), r);
                        }
                    }
                }
            }
            tops.into_iter().map(TopK::into_sorted).collect()
        })
        .collect();
    blocks.into_iter().flatten().collect()
}

/// Exact top-`k` for one query among an explicit list of slots.
pub(crate) fn top_k_among(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    slots: impl Iterator<Item = usize>,
) -> Vec<Scored> {
    let mut top = TopK::new(k);
    for s in slots {
        top.push(dot(query, &data[s * dim..(s + 1) * dim]), s);
    }
    top.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_best_first_with_slot_tie_break() {
        let dim = 2;
        let data = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.6, 0.8];
        let q = [1.0, 0.0];
        let res = top_k_batch(&data, dim, &q, 3, &|_| true);
        let got: Vec<(usize, f32)> = res[0].iter().map(|s| (s.slot, s.sim)).collect();
        assert_eq!(got, vec![(0, 1.0), (2, 1.0), (3, 0.6)]);
        let res = top_k_batch(&data, dim, &q, 3, &|s| s != 0);
        assert_eq!(res[0][0].slot, 2);
        assert_eq!(res[0].len(), 3);
    }
}
