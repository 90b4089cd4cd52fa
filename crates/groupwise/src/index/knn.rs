//! All-pairs k-nearest-neighbour lists: the input of the kNN graph (segments,
//! diffusion). One graph search per user costs about as much as building
//! the index again; this reuses what the graph already knows instead (both
//! backends expose their base layer).
//!
//! * Populations on the exact path: exact, as a blocked matrix product.
//! * Otherwise: the HNSW base layer, refined by two rounds of
//!   neighbour-of-neighbour search (the NN-descent idea of Dong, Moses & Li,
//!   WWW 2011): a user's candidates are its base-layer neighbours and theirs,
//!   scored exactly; then its best `k` so far and theirs. The base layer
//!   already links each node to near ones, so two rounds find nearly all true
//!   neighbours at a small, fixed cost per user (BENCHMARKS.md has the recall
//!   and time).

use rayon::prelude::*;

use super::exact::{top_k_batch, Scored, TopK};
use super::{Neighbor, SearchOptions, Slot, UserIndex};
use crate::error::{Error, Result};
use crate::vector::dot;

impl UserIndex {
    /// The `k` most similar other users of every live user, best first, in
    /// [`ids`](UserIndex::ids) order. Exact for populations searched exactly
    /// (see [`IndexConfig::exact_below`](super::IndexConfig::exact_below));
    /// otherwise approximate, from the graph's base layer (about 0.97
    /// recall@15 at 100k users, tested).
    pub fn knn_lists(&self, k: usize) -> Result<Vec<(u64, Vec<Neighbor>)>> {
        if k == 0 {
            return Err(Error::invalid("k", "kNN lists need k >= 1"));
        }
        // The graph's base layer, read while no writer changes it (usearch's
        // adjacency is read in place); then only the rows are needed.
        let base = if self.use_exact(&self.inner.read(), &SearchOptions::default()) {
            None
        } else {
            let _writer = self.writer.lock();
            let slots = self.inner.read().ids.len();
            self.graph.read().as_ref().map(|g| g.base_layer(slots))
        };
        let inner = self.inner.read();
        let dim = self.config.dim;
        let is_live = |s: usize| inner.state.get(s) == Some(&Slot::Live);
        let live: Vec<usize> = (0..inner.ids.len()).filter(|&s| is_live(s)).collect();
        // Nobody has more neighbours than the other live users.
        let k = k.min(live.len().max(1));
        let vector = |s: usize| &inner.data[s * dim..(s + 1) * dim];
        let to_neighbors = |own: usize, scored: Vec<Scored>| -> Vec<Neighbor> {
            scored
                .into_iter()
                .filter(|x| x.slot != own)
                .take(k)
                .map(|x| Neighbor {
                    id: inner.ids[x.slot],
                    similarity: x.sim,
                })
                .collect()
        };
        let Some(mut base) = base else {
            let queries: Vec<f32> = live
                .iter()
                .flat_map(|&s| vector(s).iter().copied())
                .collect();
            let found = top_k_batch(&inner.data, dim, &queries, k + 1, &is_live);
            return Ok(live
                .iter()
                .zip(found)
                .map(|(&s, f)| (inner.ids[s], to_neighbors(s, f)))
                .collect());
        };
        // Base-layer adjacency by slot (tombstones included: they still
        // bridge); slots added since it was read have none.
        base.resize(inner.ids.len(), Vec::new());
        for list in base.iter_mut() {
            list.retain(|&n| (n as usize) < inner.ids.len());
        }
        // Round 1: base-layer neighbours and theirs. Round 2: the round-1
        // lists and theirs (k + k² candidates, cheap), which catches most of
        // what round 1 missed.
        let best_among = |s: usize, candidates: &mut Vec<u32>| -> Vec<Scored> {
            candidates.sort_unstable();
            candidates.dedup();
            let mut top = TopK::new(k);
            let own = vector(s);
            for &c in candidates.iter() {
                let c = c as usize;
                if c != s && is_live(c) {
                    top.push(dot(own, vector(c)), c);
                }
            }
            top.into_sorted()
        };
        let two_hop = |lists: &[Vec<u32>], s: usize, candidates: &mut Vec<u32>| {
            candidates.clear();
            for &a in &lists[s] {
                candidates.push(a);
                candidates.extend_from_slice(&lists[a as usize]);
            }
        };
        let mut first: Vec<Vec<u32>> = vec![Vec::new(); inner.ids.len()];
        let round1: Vec<(usize, Vec<u32>)> = live
            .par_iter()
            .map_init(Vec::<u32>::new, |candidates, &s| {
                two_hop(&base, s, candidates);
                let found = best_among(s, candidates);
                (s, found.into_iter().map(|x| x.slot as u32).collect())
            })
            .collect();
        for (s, list) in round1 {
            first[s] = list;
        }
        drop(base);
        Ok(live
            .par_iter()
            .map_init(Vec::<u32>::new, |candidates, &s| {
                two_hop(&first, s, candidates);
                (inner.ids[s], to_neighbors(s, best_among(s, candidates)))
            })
            .collect())
    }
}
