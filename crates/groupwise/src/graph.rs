//! The kNN graph of users: each live user linked to its `k` nearest users,
//! symmetrised and weighted by cosine similarity, stored as a `petgraph`
//! compressed sparse row graph.
//!
//! Built once from a [`UserIndex`] (one graph search per user, in parallel) and
//! shared by graph diffusion (lookalike) and community detection (segments).
//! Nodes are numbered `0..n` in the order of [`KnnGraph::users`]; they are not
//! index slots, so tombstones never appear.

use std::collections::HashMap;

use petgraph::csr::Csr;
use petgraph::Directed;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::{SearchOptions, UserIndex};
use crate::limits::MAX_NEIGHBOURS;

/// A symmetric, weighted kNN graph over users.
pub struct KnnGraph {
    users: Vec<u64>,
    node_of: HashMap<u64, u32>,
    /// Both directions of every edge are stored; weights are similarities in (0, 1].
    csr: Csr<(), f32, Directed, u32>,
    k: usize,
}

impl std::fmt::Debug for KnnGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnGraph")
            .field("nodes", &self.users.len())
            .field("edges", &self.csr.edge_count())
            .field("k", &self.k)
            .finish()
    }
}

impl KnnGraph {
    /// Links every live user of `index` to its `k` nearest users (`k` in
    /// 1..=[`MAX_NEIGHBOURS`]), keeps each
    /// edge in both directions with the larger similarity, and drops edges
    /// with similarity ≤ 0.
    ///
    /// With default `options` the lists come from [`UserIndex::knn_lists`]
    /// (exact for small populations; the HNSW base layer refined by
    /// neighbour-of-neighbour search otherwise, which is many times faster
    /// than one search per user). Setting `ef`, a filter, or
    /// [`SearchMode::Approximate`](crate::index::SearchMode) runs one search
    /// per user with those options instead.
    pub fn build(index: &UserIndex, k: usize, options: &SearchOptions<'_>) -> Result<Self> {
        if !(1..=MAX_NEIGHBOURS).contains(&k) {
            return Err(Error::invalid(
                "k",
                format!("a kNN graph needs k in 1..={MAX_NEIGHBOURS}, got {k}"),
            ));
        }
        let per_user = options.ef.is_some()
            || options.filter.is_some()
            || options.mode == crate::index::SearchMode::Approximate;
        let (users, neighbor_lists): (Vec<u64>, Vec<Vec<crate::index::Neighbor>>) = if per_user {
            let users = index.ids();
            let lists = users
                .par_iter()
                .map(|&u| index.neighbors(u, k, options))
                .collect::<Result<_>>()?;
            (users, lists)
        } else {
            index.knn_lists(k)?.into_iter().unzip()
        };
        let node_of: HashMap<u64, u32> = users
            .iter()
            .enumerate()
            .map(|(i, &u)| (u, i as u32))
            .collect();
        let lists: Vec<Vec<(u32, f32)>> = neighbor_lists
            .into_iter()
            .map(|ns| {
                ns.into_iter()
                    .filter(|n| n.similarity > 0.0)
                    .filter_map(|n| node_of.get(&n.id).map(|&j| (j, n.similarity)))
                    .collect()
            })
            .collect();
        Self::from_lists(users, node_of, &lists, k)
    }

    /// A graph from explicit neighbour lists (`lists[i]` = neighbours of
    /// `users[i]` as node numbers with weights); symmetrised like [`build`](Self::build).
    pub fn from_neighbor_lists(users: Vec<u64>, lists: &[Vec<(u32, f32)>]) -> Result<Self> {
        if lists.len() != users.len() {
            return Err(Error::invalid("lists", "one neighbour list per user"));
        }
        let n = users.len() as u32;
        if lists
            .iter()
            .flatten()
            .any(|&(j, w)| j >= n || !(w.is_finite() && w > 0.0))
        {
            return Err(Error::invalid(
                "lists",
                "node numbers must be < n and weights finite and > 0",
            ));
        }
        let node_of = users
            .iter()
            .enumerate()
            .map(|(i, &u)| (u, i as u32))
            .collect();
        let k = lists.iter().map(Vec::len).max().unwrap_or(0);
        Self::from_lists(users, node_of, lists, k)
    }

    fn from_lists(
        users: Vec<u64>,
        node_of: HashMap<u64, u32>,
        lists: &[Vec<(u32, f32)>],
        k: usize,
    ) -> Result<Self> {
        let mut edges: Vec<(u32, u32, f32)> =
            Vec::with_capacity(lists.iter().map(Vec::len).sum::<usize>() * 2);
        for (i, list) in lists.iter().enumerate() {
            for &(j, w) in list {
                if j as usize != i {
                    edges.push((i as u32, j, w));
                    edges.push((j, i as u32, w));
                }
            }
        }
        edges.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.total_cmp(&a.2)));
        // Keep one edge per ordered pair: the first after sorting has the larger weight.
        edges.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
        // Built in one pass from the sorted edge list (adding edges one by one
        // is quadratic). Trailing users without edges are simply absent from
        // the CSR; `neighbors` answers them with an empty list.
        let csr = Csr::from_sorted_edges(&edges)
            .map_err(|_| Error::invalid("lists", "internal: kNN graph edges were not sorted"))?;
        Ok(KnnGraph {
            users,
            node_of,
            csr,
            k,
        })
    }

    /// Number of nodes (users).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.csr.edge_count() / 2
    }

    /// Neighbours requested per user when the graph was built.
    pub fn k(&self) -> usize {
        self.k
    }

    /// User id of each node.
    pub fn users(&self) -> &[u64] {
        &self.users
    }

    /// Node of a user.
    pub fn node(&self, user: u64) -> Option<u32> {
        self.node_of.get(&user).copied()
    }

    /// Neighbours of a node and the edge weights (similarities).
    pub fn neighbors(&self, node: u32) -> (&[u32], &[f32]) {
        if (node as usize) < self.csr.node_count() {
            (self.csr.neighbors_slice(node), self.csr.edges_slice(node))
        } else {
            (&[], &[])
        }
    }

    /// The petgraph graph (both directions of every edge).
    pub fn csr(&self) -> &Csr<(), f32, Directed, u32> {
        &self.csr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_symmetrised_with_the_larger_weight() -> Result<()> {
        let g = KnnGraph::from_neighbor_lists(
            vec![10, 20, 30],
            &[vec![(1, 0.5)], vec![(0, 0.7), (2, 0.2)], vec![]],
        )?;
        assert_eq!(g.edge_count(), 2);
        assert_eq!(g.neighbors(0), (&[1u32][..], &[0.7f32][..]));
        assert_eq!(g.neighbors(2), (&[1u32][..], &[0.2f32][..]));
        assert_eq!(g.node(30), Some(2));
        assert!(KnnGraph::from_neighbor_lists(vec![1], &[vec![(3, 1.0)]]).is_err());
        Ok(())
    }
}
