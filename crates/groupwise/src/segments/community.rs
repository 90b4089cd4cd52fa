//! Community detection on weighted undirected graphs: Leiden and Louvain.
//!
//! * **Leiden**: V. A. Traag, L. Waltman, N. J. van Eck, "From Louvain to
//!   Leiden: guaranteeing well-connected communities", Scientific Reports 9,
//!   5233 (2019). Fast local moving (a queue of nodes whose neighbourhood
//!   changed), then a *refinement* that splits each community into
//!   well-connected sub-communities, then aggregation of the refined partition
//!   with the unrefined one as the starting point. Communities are connected.
//! * **Louvain**: V. D. Blondel, J.-L. Guillaume, R. Lambiotte, E. Lefebvre,
//!   "Fast unfolding of communities in large networks", J. Stat. Mech. (2008).
//!   The same loop without refinement; communities may be disconnected.
//!
//! Both maximise modularity with a resolution parameter γ (the
//! Reichardt–Bornholdt configuration model):
//! `Q = 1/2m · Σ_ij (A_ij − γ·k_i·k_j / 2m) · δ(c_i, c_j)`.
//! Larger γ gives more, smaller communities. Every random choice (node order,
//! the refinement's randomised merges) comes from the seeded generator, so a
//! seed fixes the result.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::limits::{MAX_COMMUNITY_PASSES, MAX_RESOLUTION};

/// A weighted undirected graph in compressed sparse row form, both directions
/// of every edge stored. Self-loops only appear in aggregated graphs, where
/// they carry no information the algorithms need and are dropped.
#[derive(Debug, Clone)]
pub struct WeightedGraph {
    offsets: Vec<usize>,
    targets: Vec<u32>,
    weights: Vec<f64>,
    /// Weighted degree of each node (of its members, once aggregated).
    degree: Vec<f64>,
    /// Sum of all degrees (2m).
    total: f64,
}

impl WeightedGraph {
    /// The graph of a [`KnnGraph`]: same nodes, similarity weights.
    pub fn from_knn(graph: &KnnGraph) -> Self {
        let n = graph.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut targets = Vec::with_capacity(graph.edge_count() * 2);
        let mut weights = Vec::with_capacity(graph.edge_count() * 2);
        offsets.push(0);
        for node in 0..n as u32 {
            let (ts, ws) = graph.neighbors(node);
            targets.extend_from_slice(ts);
            weights.extend(ws.iter().map(|&w| f64::from(w)));
            offsets.push(targets.len());
        }
        Self::with_degrees(offsets, targets, weights)
    }

    /// A graph on nodes `0..n` from undirected edges `(a, b, weight)`. Each edge
    /// is stored in both directions; repeated edges add up. Weights must be
    /// finite and positive; self-loops are refused.
    pub fn from_edges(n: usize, edges: &[(u32, u32, f64)]) -> Result<Self> {
        let mut directed: Vec<(u32, u32, f64)> = Vec::with_capacity(edges.len() * 2);
        for &(a, b, w) in edges {
            if a as usize >= n || b as usize >= n {
                return Err(Error::invalid(
                    "edges",
                    format!("edge ({a}, {b}) names a node >= {n}"),
                ));
            }
            if a == b {
                return Err(Error::invalid("edges", format!("self-loop on node {a}")));
            }
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::invalid(
                    "edges",
                    format!("edge ({a}, {b}) has weight {w}; weights must be finite and > 0"),
                ));
            }
            directed.push((a, b, w));
            directed.push((b, a, w));
        }
        directed.sort_unstable_by_key(|&(a, b, _)| (a, b));
        let mut offsets = vec![0usize; n + 1];
        let mut targets: Vec<u32> = Vec::with_capacity(directed.len());
        let mut weights: Vec<f64> = Vec::with_capacity(directed.len());
        let mut last: Option<(u32, u32)> = None;
        for (a, b, w) in directed {
            if last == Some((a, b)) {
                if let Some(x) = weights.last_mut() {
                    *x += w;
                }
                continue;
            }
            last = Some((a, b));
            targets.push(b);
            weights.push(w);
            offsets[a as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        Ok(Self::with_degrees(offsets, targets, weights))
    }

    fn with_degrees(offsets: Vec<usize>, targets: Vec<u32>, weights: Vec<f64>) -> Self {
        let degree: Vec<f64> = offsets
            .windows(2)
            .map(|w| weights[w[0]..w[1]].iter().sum())
            .collect();
        let total = degree.iter().sum();
        WeightedGraph {
            offsets,
            targets,
            weights,
            degree,
            total,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.degree.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.degree.is_empty()
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.targets.len() / 2
    }

    /// Neighbours of `node` with the edge weights.
    pub fn neighbors(&self, node: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.offsets[node]..self.offsets[node + 1];
        self.targets[range.clone()]
            .iter()
            .zip(&self.weights[range])
            .map(|(&t, &w)| (t as usize, w))
    }

    /// Weighted degree of `node`.
    pub fn degree(&self, node: usize) -> f64 {
        self.degree[node]
    }

    /// Modularity of a partition (`membership[node]` = community) at resolution
    /// `gamma`. 0 for a graph without edges.
    pub fn modularity(&self, membership: &[u32], gamma: f64) -> f64 {
        if self.total <= 0.0 || membership.len() != self.len() {
            return 0.0;
        }
        let communities = membership
            .iter()
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0);
        let mut internal = vec![0.0f64; communities];
        let mut strength = vec![0.0f64; communities];
        for i in 0..self.len() {
            let c = membership[i] as usize;
            strength[c] += self.degree[i];
            internal[c] += self
                .neighbors(i)
                .filter(|&(j, _)| membership[j] as usize == c)
                .map(|(_, w)| w)
                .sum::<f64>();
        }
        let m2 = self.total;
        internal
            .iter()
            .zip(&strength)
            .map(|(&inside, &k)| inside - gamma * k * k / m2)
            .sum::<f64>()
            / m2
    }

    /// Communities of `membership` whose members do not form one connected
    /// subgraph (an empty list when every community is connected).
    pub fn disconnected_communities(&self, membership: &[u32]) -> Vec<u32> {
        let n = self.len();
        let communities = membership
            .iter()
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0);
        let mut seen_community = vec![false; communities];
        let mut visited = vec![false; n];
        let mut bad = Vec::new();
        let mut stack = Vec::new();
        for start in 0..n {
            if visited[start] {
                continue;
            }
            let c = membership[start];
            if seen_community[c as usize] {
                // A second component of a community already explored.
                bad.push(c);
            }
            seen_community[c as usize] = true;
            visited[start] = true;
            stack.push(start);
            while let Some(v) = stack.pop() {
                for (j, _) in self.neighbors(v) {
                    if !visited[j] && membership[j] == c {
                        visited[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        bad.sort_unstable();
        bad.dedup();
        bad
    }
}

/// Which algorithm [`detect`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// Leiden: connected, well-separated communities (the default).
    Leiden,
    /// Louvain: the classic; may return disconnected communities.
    Louvain,
}

/// Parameters of [`detect`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommunityConfig {
    /// Leiden (default) or Louvain.
    pub algorithm: Algorithm,
    /// Resolution γ > 0 (default 1.0; at most [`MAX_RESOLUTION`]); larger
    /// values give smaller communities.
    pub resolution: f64,
    /// Passes of the whole algorithm, each starting from the previous partition
    /// (default 2, as leidenalg does; at most [`MAX_COMMUNITY_PASSES`]); stops
    /// early when a pass changes nothing.
    pub iterations: usize,
    /// Randomness θ of the Leiden refinement (default 0.01): a node joins a
    /// sub-community with probability ∝ exp(gain / θ).
    pub randomness: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for CommunityConfig {
    fn default() -> Self {
        CommunityConfig {
            algorithm: Algorithm::Leiden,
            resolution: 1.0,
            iterations: 2,
            randomness: 0.01,
            seed: 42,
        }
    }
}

/// The result of [`detect`].
#[derive(Debug, Clone)]
pub struct Communities {
    /// Community of each node, numbered `0..count` by first appearance.
    pub membership: Vec<u32>,
    /// Number of communities.
    pub count: usize,
    /// Modularity of the partition at the configured resolution.
    pub modularity: f64,
    /// Aggregation levels run over all passes.
    pub levels: usize,
}

/// Finds communities of `graph`, starting from singletons.
pub fn detect(graph: &WeightedGraph, config: &CommunityConfig) -> Result<Communities> {
    let singletons: Vec<u32> = (0..graph.len() as u32).collect();
    detect_from(graph, config, &singletons)
}

/// Finds communities of `graph` starting from the partition `initial`
/// (`initial[node]` = community; any numbering). Warm-starting a rebuild from
/// the previous segments keeps communities stable when the graph changed little.
pub fn detect_from(
    graph: &WeightedGraph,
    config: &CommunityConfig,
    initial: &[u32],
) -> Result<Communities> {
    if !(config.resolution.is_finite()
        && config.resolution > 0.0
        && config.resolution <= MAX_RESOLUTION)
    {
        return Err(Error::invalid(
            "resolution",
            format!("must be finite, > 0 and at most {MAX_RESOLUTION}"),
        ));
    }
    if config.iterations > MAX_COMMUNITY_PASSES {
        return Err(Error::invalid(
            "iterations",
            format!("must be at most {MAX_COMMUNITY_PASSES}"),
        ));
    }
    if !(config.randomness.is_finite() && config.randomness > 0.0) {
        return Err(Error::invalid("randomness", "must be finite and > 0"));
    }
    if initial.len() != graph.len() {
        return Err(Error::invalid(
            "initial",
            format!("has {} entries for {} nodes", initial.len(), graph.len()),
        ));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut membership = initial.to_vec();
    renumber(&mut membership);
    let mut levels = 0;
    for _ in 0..config.iterations.max(1) {
        let (next, pass_levels) = one_pass(graph, &membership, config, &mut rng);
        levels += pass_levels;
        let changed = next != membership;
        membership = next;
        if !changed {
            break;
        }
    }
    let count = renumber(&mut membership);
    Ok(Communities {
        modularity: graph.modularity(&membership, config.resolution),
        membership,
        count,
        levels,
    })
}

/// One run of the algorithm from `start` (a partition of the original nodes).
fn one_pass(
    graph: &WeightedGraph,
    start: &[u32],
    config: &CommunityConfig,
    rng: &mut StdRng,
) -> (Vec<u32>, usize) {
    let gamma = config.resolution;
    // `node_of[v]`: the aggregate node holding original node v.
    let mut node_of: Vec<u32> = (0..graph.len() as u32).collect();
    let mut partition = start.to_vec();
    renumber(&mut partition);
    let mut owned: Option<WeightedGraph> = None;
    let mut levels = 0;
    loop {
        let g = owned.as_ref().unwrap_or(graph);
        levels += 1;
        move_nodes_fast(g, &mut partition, gamma, rng);
        let communities = renumber(&mut partition);
        if communities == g.len() {
            break;
        }
        let basis = match config.algorithm {
            Algorithm::Leiden => {
                let mut refined = refine(g, &partition, gamma, config.randomness, rng);
                renumber(&mut refined);
                refined
            }
            Algorithm::Louvain => partition.clone(),
        };
        let aggregate = aggregate(g, &basis);
        if aggregate.len() == g.len() {
            // Nothing merged: further levels would repeat this one.
            break;
        }
        let mut next = vec![0u32; aggregate.len()];
        for (v, &b) in basis.iter().enumerate() {
            next[b as usize] = partition[v];
        }
        for a in node_of.iter_mut() {
            *a = basis[*a as usize];
        }
        partition = next;
        owned = Some(aggregate);
    }
    let mut membership: Vec<u32> = node_of.iter().map(|&a| partition[a as usize]).collect();
    renumber(&mut membership);
    (membership, levels)
}

/// Renumbers labels (community or segment ids) to `0..count` in order of
/// first appearance; returns the count.
pub fn renumber(membership: &mut [u32]) -> usize {
    let max = membership
        .iter()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut map = vec![u32::MAX; max];
    let mut next = 0u32;
    for c in membership.iter_mut() {
        let m = &mut map[*c as usize];
        if *m == u32::MAX {
            *m = next;
            next += 1;
        }
        *c = *m;
    }
    next as usize
}

/// Sums edge weights from one node into neighbouring communities, reusing its
/// buffers across nodes (no allocation per node).
struct Accumulator {
    weight: Vec<f64>,
    touched: Vec<u32>,
}

impl Accumulator {
    fn new(n: usize) -> Self {
        Accumulator {
            weight: vec![0.0; n],
            touched: Vec::new(),
        }
    }

    fn add(&mut self, community: u32, w: f64) {
        let slot = &mut self.weight[community as usize];
        if *slot == 0.0 {
            self.touched.push(community);
        }
        *slot += w;
    }

    fn clear(&mut self) {
        for &c in &self.touched {
            self.weight[c as usize] = 0.0;
        }
        self.touched.clear();
    }
}

/// Gains below this (relative to the node's degree) count as no gain, so float
/// rounding cannot make nodes move back and forth forever.
const GAIN_EPS: f64 = 1e-12;

/// Leiden's fast local moving: visit nodes from a queue, move each to the
/// neighbouring (or an empty) community with the largest modularity gain, and
/// re-queue the neighbours that ended up outside the node's new community.
fn move_nodes_fast(g: &WeightedGraph, partition: &mut [u32], gamma: f64, rng: &mut StdRng) {
    let n = g.len();
    let m2 = g.total;
    if m2 <= 0.0 {
        return;
    }
    let mut strength = vec![0.0f64; n];
    let mut size = vec![0u32; n];
    for (v, &c) in partition.iter().enumerate() {
        strength[c as usize] += g.degree[v];
        size[c as usize] += 1;
    }
    let mut empty: Vec<u32> = (0..n as u32).filter(|&c| size[c as usize] == 0).collect();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(rng);
    let mut queue: VecDeque<u32> = order.into();
    let mut queued = vec![true; n];
    let mut acc = Accumulator::new(n);
    while let Some(v) = queue.pop_front() {
        let v = v as usize;
        queued[v] = false;
        let own = partition[v];
        let k = g.degree[v];
        for (j, w) in g.neighbors(v) {
            if j != v {
                acc.add(partition[j], w);
            }
        }
        strength[own as usize] -= k;
        size[own as usize] -= 1;
        let gain = |c: u32, acc: &Accumulator| {
            acc.weight[c as usize] - gamma * k * strength[c as usize] / m2
        };
        let mut best = own;
        let mut best_gain = gain(own, &acc);
        for &c in &acc.touched {
            let gc = gain(c, &acc);
            if gc > best_gain + GAIN_EPS * k.max(1.0) {
                best = c;
                best_gain = gc;
            }
        }
        // An empty community has gain 0; when v's old community is now empty
        // it already is one (and staying costs nothing).
        if best_gain < -GAIN_EPS * k.max(1.0) && size[own as usize] > 0 {
            if let Some(e) = empty.pop() {
                best = e;
            }
        }
        acc.clear();
        strength[best as usize] += k;
        size[best as usize] += 1;
        partition[v] = best;
        if best != own {
            if size[own as usize] == 0 {
                empty.push(own);
            }
            for (j, _) in g.neighbors(v) {
                if !queued[j] && partition[j] != best {
                    queued[j] = true;
                    queue.push_back(j as u32);
                }
            }
        }
    }
}

/// Leiden's refinement: within each community of `partition`, start from
/// singletons and merge each still-singleton, well-connected node into a
/// well-connected sub-community of its community, chosen at random with
/// probability ∝ exp(gain / θ) among the non-negative gains.
fn refine(
    g: &WeightedGraph,
    partition: &[u32],
    gamma: f64,
    theta: f64,
    rng: &mut StdRng,
) -> Vec<u32> {
    let n = g.len();
    let m2 = g.total;
    let mut refined: Vec<u32> = (0..n as u32).collect();
    if m2 <= 0.0 {
        return refined;
    }
    let communities = partition.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut community_strength = vec![0.0f64; communities];
    for (v, &c) in partition.iter().enumerate() {
        community_strength[c as usize] += g.degree[v];
    }
    let mut strength: Vec<f64> = g.degree.clone();
    let mut size = vec![1u32; n];
    // external[s]: weight between sub-community s and the rest of its community.
    let mut external: Vec<f64> = (0..n)
        .map(|v| {
            g.neighbors(v)
                .filter(|&(j, _)| j != v && partition[j] == partition[v])
                .map(|(_, w)| w)
                .sum()
        })
        .collect();
    let well_connected =
        |ext: f64, k: f64, total: f64| ext >= gamma * k * (total - k) / m2 - GAIN_EPS * k.max(1.0);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(rng);
    let mut acc = Accumulator::new(n);
    let mut candidates: Vec<(u32, f64)> = Vec::new();
    for v in order {
        let v = v as usize;
        let own = refined[v];
        let c = partition[v] as usize;
        let k = g.degree[v];
        if size[own as usize] != 1 || !well_connected(external[v], k, community_strength[c]) {
            continue;
        }
        for (j, w) in g.neighbors(v) {
            if j != v && partition[j] as usize == c {
                acc.add(refined[j], w);
            }
        }
        strength[own as usize] = 0.0;
        candidates.clear();
        candidates.push((own, 0.0));
        for &s in &acc.touched {
            if s == own
                || !well_connected(
                    external[s as usize],
                    strength[s as usize],
                    community_strength[c],
                )
            {
                continue;
            }
            let gain = acc.weight[s as usize] - gamma * k * strength[s as usize] / m2;
            if gain >= 0.0 {
                candidates.push((s, gain));
            }
        }
        let best = candidates.iter().map(|&(_, g)| g).fold(0.0f64, f64::max);
        let total: f64 = candidates
            .iter()
            .map(|&(_, g)| ((g - best) / theta).exp())
            .sum();
        let mut draw = rng.random::<f64>() * total;
        let mut chosen = own;
        for &(s, g) in &candidates {
            draw -= ((g - best) / theta).exp();
            chosen = s;
            if draw <= 0.0 {
                break;
            }
        }
        if chosen != own {
            let w_to = acc.weight[chosen as usize];
            external[chosen as usize] += external[v] - 2.0 * w_to;
            size[chosen as usize] += 1;
            size[own as usize] = 0;
            refined[v] = chosen;
        }
        strength[chosen as usize] += k;
        acc.clear();
    }
    refined
}

/// The graph whose nodes are the groups of `basis` (numbered `0..count`):
/// degrees add up, edges between groups add up, edges inside a group vanish.
fn aggregate(g: &WeightedGraph, basis: &[u32]) -> WeightedGraph {
    let count = basis.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
    // Members of each group, by counting sort.
    let mut start = vec![0usize; count + 1];
    for &b in basis {
        start[b as usize + 1] += 1;
    }
    for i in 0..count {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut members = vec![0u32; basis.len()];
    for (v, &b) in basis.iter().enumerate() {
        members[fill[b as usize]] = v as u32;
        fill[b as usize] += 1;
    }
    let mut offsets = Vec::with_capacity(count + 1);
    let mut targets = Vec::new();
    let mut weights = Vec::new();
    let mut degree = vec![0.0f64; count];
    let mut acc = Accumulator::new(count);
    offsets.push(0);
    for group in 0..count {
        for &v in &members[start[group]..start[group + 1]] {
            degree[group] += g.degree[v as usize];
            for (j, w) in g.neighbors(v as usize) {
                let other = basis[j];
                if other as usize != group {
                    acc.add(other, w);
                }
            }
        }
        for &other in &acc.touched {
            targets.push(other);
            weights.push(acc.weight[other as usize]);
        }
        acc.clear();
        offsets.push(targets.len());
    }
    WeightedGraph {
        offsets,
        targets,
        weights,
        total: degree.iter().sum(),
        degree,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two triangles joined by one edge.
    fn barbell() -> WeightedGraph {
        let edges = [
            (0, 1, 1.0),
            (1, 2, 1.0),
            (0, 2, 1.0),
            (3, 4, 1.0),
            (4, 5, 1.0),
            (3, 5, 1.0),
            (2, 3, 1.0),
        ];
        WeightedGraph::from_edges(6, &edges).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn modularity_matches_the_hand_computed_value() {
        // m = 7; each triangle has 3 internal edges and total degree 7:
        // Q = 2 · (3/7 − (7/14)²) = 6/7 − 1/2.
        let g = barbell();
        let q = g.modularity(&[0, 0, 0, 1, 1, 1], 1.0);
        assert!((q - (6.0 / 7.0 - 0.5)).abs() < 1e-12, "{q}");
        // All in one community: Q = 1 − 1 = 0.
        assert!(g.modularity(&[0; 6], 1.0).abs() < 1e-12);
    }

    #[test]
    fn both_algorithms_split_the_barbell() -> Result<()> {
        let g = barbell();
        for algorithm in [Algorithm::Leiden, Algorithm::Louvain] {
            for seed in 0..10 {
                let c = detect(
                    &g,
                    &CommunityConfig {
                        algorithm,
                        seed,
                        ..Default::default()
                    },
                )?;
                assert_eq!(c.count, 2, "{algorithm:?} seed {seed}: {:?}", c.membership);
                assert_eq!(c.membership[0], c.membership[2]);
                assert_ne!(c.membership[0], c.membership[3]);
                assert!((c.modularity - (6.0 / 7.0 - 0.5)).abs() < 1e-12);
            }
        }
        Ok(())
    }

    #[test]
    fn edge_lists_are_checked_and_repeated_edges_add_up() -> Result<()> {
        assert!(WeightedGraph::from_edges(2, &[(0, 2, 1.0)]).is_err());
        assert!(WeightedGraph::from_edges(2, &[(1, 1, 1.0)]).is_err());
        assert!(WeightedGraph::from_edges(2, &[(0, 1, f64::NAN)]).is_err());
        let g = WeightedGraph::from_edges(3, &[(0, 1, 1.0), (1, 0, 0.5)])?;
        assert_eq!(g.edge_count(), 1);
        assert_eq!(g.degree(0), 1.5);
        assert_eq!(g.degree(2), 0.0);
        // An isolated node stays alone.
        let c = detect(&g, &CommunityConfig::default())?;
        assert_ne!(c.membership[2], c.membership[0]);
        Ok(())
    }

    #[test]
    fn disconnected_communities_are_found() -> Result<()> {
        let g = barbell();
        assert!(g.disconnected_communities(&[0, 0, 0, 1, 1, 1]).is_empty());
        assert_eq!(g.disconnected_communities(&[0, 1, 0, 1, 1, 0]), vec![0, 1]);
        Ok(())
    }

    #[test]
    fn bad_parameters_are_refused() {
        let g = barbell();
        for (resolution, randomness) in [(0.0, 0.01), (f64::NAN, 0.01), (1.0, 0.0)] {
            let config = CommunityConfig {
                resolution,
                randomness,
                ..Default::default()
            };
            assert!(detect(&g, &config).is_err());
        }
    }
}
