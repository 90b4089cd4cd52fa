//! The privacy floor (k-anonymity of segments, as LinkedIn's cohorts keep it):
//! no segment smaller than `floor` users is ever served. After clustering,
//! groups below the floor are merged, smallest first, into the group they are
//! most similar to:
//!
//! * with a graph, the group they share the most edge weight with, so a
//!   connected community merged into a neighbour stays connected;
//! * without one (k-means), or for a group with no edges to others, the group
//!   whose centroid (normalised sum of members) is closest in cosine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::community::WeightedGraph;

/// What enforcing the floor changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FloorReport {
    /// Groups before merging.
    pub groups_before: usize,
    /// Groups merged away.
    pub merged_groups: usize,
    /// Users whose group was merged away, each counted once however many
    /// merges their group went through.
    pub merged_users: usize,
}

/// Merges groups of `labels` (any numbering) smaller than `floor` and
/// renumbers the result `0..groups`. `data` holds each node's unit vector
/// (`labels.len() × dim`); `graph`, when given, has the same nodes.
/// The caller guarantees `labels.len() >= floor`, so one group can always hold
/// everyone.
pub(crate) fn enforce(
    labels: &mut [u32],
    data: &[f32],
    dim: usize,
    floor: usize,
    graph: Option<&WeightedGraph>,
) -> FloorReport {
    let groups = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut size = vec![0usize; groups];
    let mut sum = vec![0.0f64; groups * dim];
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); groups];
    for (v, &l) in labels.iter().enumerate() {
        let l = l as usize;
        size[l] += 1;
        members[l].push(v as u32);
        for (s, &x) in sum[l * dim..(l + 1) * dim]
            .iter_mut()
            .zip(&data[v * dim..(v + 1) * dim])
        {
            *s += f64::from(x);
        }
    }
    let mut report = FloorReport {
        groups_before: size.iter().filter(|&&s| s > 0).count(),
        ..Default::default()
    };
    // parent[g] = the group g was merged into (itself while alive).
    let mut parent: Vec<u32> = (0..groups as u32).collect();
    let mut heap: BinaryHeap<Reverse<(usize, u32)>> = (0..groups)
        .filter(|&g| size[g] > 0 && size[g] < floor)
        .map(|g| Reverse((size[g], g as u32)))
        .collect();
    let mut weight_to = vec![0.0f64; groups];
    while let Some(Reverse((s, g))) = heap.pop() {
        let g = g as usize;
        if parent[g] as usize != g || size[g] != s || s >= floor {
            continue; // stale entry
        }
        let mut target: Option<usize> = None;
        if let Some(graph) = graph {
            let mut touched: Vec<usize> = Vec::new();
            for &v in &members[g] {
                for (j, w) in graph.neighbors(v as usize) {
                    let t = root(&mut parent, labels[j] as usize);
                    if t != g {
                        if weight_to[t] == 0.0 {
                            touched.push(t);
                        }
                        weight_to[t] += w;
                    }
                }
            }
            // Most shared weight; ties to the lower group for determinism.
            touched.sort_unstable();
            target = touched
                .iter()
                .copied()
                .max_by(|&a, &b| weight_to[a].total_cmp(&weight_to[b]).then(b.cmp(&a)));
            for t in touched {
                weight_to[t] = 0.0;
            }
        }
        if target.is_none() {
            target = closest_centroid(&sum, dim, g, |t| parent[t] as usize == t && size[t] > 0);
        }
        let Some(t) = target else { break };
        parent[g] = t as u32;
        size[t] += s;
        size[g] = 0;
        let moved = std::mem::take(&mut members[g]);
        members[t].extend(moved);
        for i in 0..dim {
            sum[t * dim + i] += sum[g * dim + i];
        }
        report.merged_groups += 1;
        if size[t] < floor {
            heap.push(Reverse((size[t], t as u32)));
        }
    }
    for l in labels.iter_mut() {
        let r = root(&mut parent, *l as usize) as u32;
        // A user moved when their original group did not survive: counted
        // here, once, rather than at each merge (a group merged into a group
        // that is itself merged later would count its users twice).
        if r != *l {
            report.merged_users += 1;
        }
        *l = r;
    }
    super::renumber(labels);
    report
}

fn root(parent: &mut [u32], g: usize) -> usize {
    let mut r = g;
    while parent[r] as usize != r {
        r = parent[r] as usize;
    }
    // Path compression.
    let mut x = g;
    while parent[x] as usize != r {
        let next = parent[x] as usize;
        parent[x] = r as u32;
        x = next;
    }
    r
}

/// The live group (other than `g`) whose summed vector is closest in cosine to
/// `g`'s; ties to the lower group.
fn closest_centroid(
    sum: &[f64],
    dim: usize,
    g: usize,
    alive: impl Fn(usize) -> bool,
) -> Option<usize> {
    let groups = sum.len() / dim.max(1);
    let own = &sum[g * dim..(g + 1) * dim];
    let own_norm = super::norm64(own);
    let mut best: Option<(f64, usize)> = None;
    for t in (0..groups).filter(|&t| t != g && alive(t)) {
        let other = &sum[t * dim..(t + 1) * dim];
        let norm = super::norm64(other);
        let cos = own.iter().zip(other).map(|(a, b)| a * b).sum::<f64>() / (own_norm * norm);
        if best.is_none_or(|(b, _)| cos > b) {
            best = Some((cos, t));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_join_their_best_connected_neighbour() -> crate::Result<()> {
        // Group 0: nodes 0-3, group 1: nodes 4-7, group 2: node 8 linked to group 1.
        let mut edges = vec![
            (0, 1, 1.0),
            (1, 2, 1.0),
            (2, 3, 1.0),
            (4, 5, 1.0),
            (5, 6, 1.0),
        ];
        edges.extend([(6, 7, 1.0), (8, 7, 1.0), (8, 0, 0.2), (3, 4, 0.1)]);
        let g = WeightedGraph::from_edges(9, &edges)?;
        // Vectors point group 2 towards group 0, so only the graph sends it to group 1.
        let mut data = Vec::new();
        for v in 0..9 {
            data.extend(if v < 4 || v == 8 {
                [1.0f32, 0.0]
            } else {
                [0.0, 1.0]
            });
        }
        let mut labels = vec![0, 0, 0, 0, 1, 1, 1, 1, 2];
        let report = enforce(&mut labels, &data, 2, 3, Some(&g));
        assert_eq!(labels, vec![0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(report.merged_groups, 1);
        assert_eq!(report.merged_users, 1);
        // Without the graph the centroid decides.
        let mut labels = vec![0, 0, 0, 0, 1, 1, 1, 1, 2];
        enforce(&mut labels, &data, 2, 3, None);
        assert_eq!(labels, vec![0, 0, 0, 0, 1, 1, 1, 1, 0]);
        Ok(())
    }

    #[test]
    fn merging_repeats_until_every_group_reaches_the_floor() {
        let data: Vec<f32> = (0..10).flat_map(|i| [1.0f32, i as f32 * 0.1]).collect();
        let mut labels: Vec<u32> = (0..10).collect();
        let report = enforce(&mut labels, &data, 2, 4, None);
        let mut sizes = std::collections::HashMap::new();
        for &l in &labels {
            *sizes.entry(l).or_insert(0) += 1;
        }
        assert!(sizes.values().all(|&s| s >= 4), "{sizes:?}");
        assert_eq!(report.groups_before, 10);
        assert_eq!(report.merged_groups, 10 - sizes.len());
        // Every user was a group of one: all but one user per final segment moved.
        assert_eq!(report.merged_users, 10 - sizes.len());
    }

    #[test]
    fn cascading_merges_count_each_moved_user_once() {
        // A (1 user) points at B (2 users), B at C (5 users); floor 4.
        // A joins B (3 users, still below the floor), then B joins C: the
        // 3 users of A and B moved, once each (counting B's size at its
        // merge would count A's user a second time).
        let data: Vec<f32> = [
            [1.0f32, 0.0],
            [1.0, 0.1],
            [1.0, 0.2],
            [0.0, 1.0],
            [0.1, 1.0],
            [0.0, 1.0],
            [0.1, 1.0],
            [0.0, 1.0],
        ]
        .concat();
        let mut labels = vec![0, 1, 1, 2, 2, 2, 2, 2];
        let original = labels.clone();
        let report = enforce(&mut labels, &data, 2, 4, None);
        assert_eq!(labels, vec![0; 8]);
        assert_eq!(report.merged_groups, 2);
        // The distinct users moved: those whose original group is not the
        // one that survived (C, which holds users 3..8).
        let survivor = original[3];
        let moved = original.iter().filter(|&&l| l != survivor).count();
        assert_eq!(moved, 3);
        assert_eq!(report.merged_users, moved);
    }
}
