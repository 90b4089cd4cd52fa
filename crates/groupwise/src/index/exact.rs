//! Exact (brute-force) k-nearest-neighbour search over the stored vectors.
//!
//! Used where it is faster or more correct than the graph: small populations,
//! very selective filters, and as the ground truth in tests and benchmarks.
//! A batch of queries is scored block by block as a matrix product
//! (`matrixmultiply`'s SIMD sgemm: a block of queries times a block of stored
//! vectors), which is several times faster than one dot product at a time; a
//! single query uses the dot-product kernel directly.

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

    /// Candidates kept so far (at most `k`).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}

/// Stored vectors per block of the matrix product (256 KiB at 64-d).
const ROW_BLOCK: usize = 1024;
/// Queries per block; blocks of queries run in parallel.
const QUERY_BLOCK: usize = 64;
/// Below this many queries a matrix product does not pay off.
const GEMM_MIN_QUERIES: usize = 4;

/// Exact top-`k` for each query (row-major, `dim` wide) among the rows for which
/// `eligible(slot)` holds. Best first; ties broken by lower slot.
pub(crate) fn top_k_batch(
    data: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    eligible: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<Scored>> {
    if dim == 0 {
        return Vec::new();
    }
    let rows = data.len() / dim;
    let nq = queries.len() / dim;
    if nq < GEMM_MIN_QUERIES {
        return queries
            .chunks_exact(dim)
            .map(|q| top_k_among(data, dim, q, k, (0..rows).filter(|&r| eligible(r))))
            .collect();
    }
    let blocks: Vec<Vec<Vec<Scored>>> = (0..nq.div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * QUERY_BLOCK;
            let m = QUERY_BLOCK.min(nq - q0);
            let q = &queries[q0 * dim..(q0 + m) * dim];
            let mut tops: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
            let mut scores = vec![0.0f32; m * ROW_BLOCK];
            for r0 in (0..rows).step_by(ROW_BLOCK) {
                let n = ROW_BLOCK.min(rows - r0);
                let x = &data[r0 * dim..(r0 + n) * dim];
                crate::vector::gemm_abt(q, m, x, n, dim, &mut scores);
                for (qi, top) in tops.iter_mut().enumerate() {
                    for (j, &sim) in scores[qi * n..(qi + 1) * n].iter().enumerate() {
                        if eligible(r0 + j) {
                            top.push(sim, r0 + j);
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
    fn matrix_product_path_equals_the_dot_product_path() {
        let dim = 7;
        let rows = 2500;
        let data: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let queries: Vec<f32> = (0..70 * dim)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
            .collect();
        let keep = |s: usize| s % 3 != 0;
        let batch = top_k_batch(&data, dim, &queries, 5, &keep);
        assert_eq!(batch.len(), 70);
        for (qi, got) in batch.iter().enumerate() {
            let q = &queries[qi * dim..(qi + 1) * dim];
            let want = top_k_among(&data, dim, q, 5, (0..rows).filter(|&s| keep(s)));
            let gs: Vec<usize> = got.iter().map(|s| s.slot).collect();
            let ws: Vec<usize> = want.iter().map(|s| s.slot).collect();
            // Equal up to ties within float rounding of the two kernels.
            for (g, w) in got.iter().zip(&want) {
                assert!((g.sim - w.sim).abs() < 1e-5, "query {qi}: {gs:?} vs {ws:?}");
            }
        }
    }

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
