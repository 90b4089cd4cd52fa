//! Quality measures for partitions: agreement between two labelings
//! (normalised mutual information, adjusted Rand index) and cohesion against
//! separation on the embeddings (silhouette). Definitions follow scikit-learn's
//! `normalized_mutual_info_score` (arithmetic-mean normalisation),
//! `adjusted_rand_score` and `silhouette_score(metric="cosine")`, and the tests
//! check the numbers against it. Modularity lives with the graph
//! ([`WeightedGraph::modularity`](super::WeightedGraph::modularity)).

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::vector::dot;

/// Counts of the joint labeling: `cells[(a, b)]`, row and column totals.
struct Contingency {
    cells: HashMap<(u32, u32), u64>,
    rows: HashMap<u32, u64>,
    cols: HashMap<u32, u64>,
    n: u64,
}

impl Contingency {
    fn new(a: &[u32], b: &[u32]) -> Self {
        let mut cells = HashMap::new();
        let mut rows = HashMap::new();
        let mut cols = HashMap::new();
        for (&x, &y) in a.iter().zip(b) {
            *cells.entry((x, y)).or_insert(0) += 1;
            *rows.entry(x).or_insert(0) += 1;
            *cols.entry(y).or_insert(0) += 1;
        }
        Contingency {
            cells,
            rows,
            cols,
            n: a.len().min(b.len()) as u64,
        }
    }
}

fn entropy(counts: impl Iterator<Item = u64>, n: f64) -> f64 {
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Normalised mutual information `I(a; b) / ((H(a) + H(b)) / 2)`, in [0, 1].
/// 1 when both labelings are the same partition (including when both put
/// everyone in one group); 0 when independent. Labelings of unequal length are
/// compared on their common prefix.
pub fn nmi(a: &[u32], b: &[u32]) -> f64 {
    let t = Contingency::new(a, b);
    if t.n == 0 {
        return 1.0;
    }
    let n = t.n as f64;
    let ha = entropy(t.rows.values().copied(), n);
    let hb = entropy(t.cols.values().copied(), n);
    if ha == 0.0 && hb == 0.0 {
        return 1.0;
    }
    let mi: f64 = t
        .cells
        .iter()
        .map(|(&(x, y), &c)| {
            let c = c as f64;
            let (rx, cy) = (t.rows[&x] as f64, t.cols[&y] as f64);
            c / n * (c * n / (rx * cy)).ln()
        })
        .sum();
    let denom = (ha + hb) / 2.0;
    (mi / denom).clamp(0.0, 1.0)
}

/// Adjusted Rand index: pair agreement corrected for chance; 1 for identical
/// partitions, about 0 for random ones, negative below chance.
pub fn ari(a: &[u32], b: &[u32]) -> f64 {
    let t = Contingency::new(a, b);
    let pairs = |c: u64| (c as f64) * (c as f64 - 1.0) / 2.0;
    let sum_cells: f64 = t.cells.values().map(|&c| pairs(c)).sum();
    let sum_rows: f64 = t.rows.values().map(|&c| pairs(c)).sum();
    let sum_cols: f64 = t.cols.values().map(|&c| pairs(c)).sum();
    let total = pairs(t.n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_rows * sum_cols / total;
    let max = (sum_rows + sum_cols) / 2.0;
    if max == expected {
        // Both are the trivial partition (all together or all apart).
        return 1.0;
    }
    (sum_cells - expected) / (max - expected)
}

/// Mean silhouette with cosine distance `1 − cos` over the rows of `data`
/// (unit vectors, `n × dim`). With `sample = Some(s)` and `s < n`, the mean is
/// over `s` rows drawn with `seed`, each still compared with every row (as
/// scikit-learn's `sample_size` does on the sampled rows only, this is a
/// slightly different but unbiased estimate of the full score). Rows in
/// single-member groups score 0. Needs at least two groups; returns 0 otherwise.
pub fn silhouette(
    data: &[f32],
    dim: usize,
    labels: &[u32],
    sample_size: Option<usize>,
    seed: u64,
) -> f64 {
    let n = labels.len().min(data.len() / dim.max(1));
    let groups = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut sizes = vec![0usize; groups];
    for &l in &labels[..n] {
        sizes[l as usize] += 1;
    }
    if sizes.iter().filter(|&&s| s > 0).count() < 2 {
        return 0.0;
    }
    let rows: Vec<usize> = match sample_size {
        Some(s) if s < n => {
            let mut rows = sample(&mut StdRng::seed_from_u64(seed), n, s).into_vec();
            rows.sort_unstable();
            rows
        }
        _ => (0..n).collect(),
    };
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let total: f64 = rows
        .par_iter()
        .map(|&i| {
            let own = labels[i] as usize;
            if sizes[own] < 2 {
                return 0.0;
            }
            let mut dist = vec![0.0f64; groups];
            for j in 0..n {
                if j != i {
                    dist[labels[j] as usize] += f64::from(1.0 - dot(row(i), row(j)));
                }
            }
            let a = dist[own] / (sizes[own] - 1) as f64;
            let b = (0..groups)
                .filter(|&g| g != own && sizes[g] > 0)
                .map(|g| dist[g] / sizes[g] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 {
                (b - a) / m
            } else {
                0.0
            }
        })
        .sum();
    total / rows.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_relabelled_partitions_agree_fully() {
        let a = [0, 0, 1, 1, 2, 2];
        let b = [5, 5, 3, 3, 9, 9];
        assert!((nmi(&a, &b) - 1.0).abs() < 1e-12);
        assert!((ari(&a, &b) - 1.0).abs() < 1e-12);
        assert_eq!(nmi(&[0, 0, 0], &[1, 1, 1]), 1.0);
    }

    /// Reference values from scikit-learn 1.5:
    /// `normalized_mutual_info_score([0,0,0,1,1,1], [0,0,1,1,2,2])` and
    /// `adjusted_rand_score` of the same.
    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        let a = [0, 0, 0, 1, 1, 1];
        let b = [0, 0, 1, 1, 2, 2];
        assert!(
            (nmi(&a, &b) - 0.5158037429793889).abs() < 1e-12,
            "{}",
            nmi(&a, &b)
        );
        assert!(
            (ari(&a, &b) - 0.24242424242424246).abs() < 1e-12,
            "{}",
            ari(&a, &b)
        );
    }

    #[test]
    fn silhouette_of_two_tight_groups_is_high_and_of_a_mixed_labeling_low() {
        let data = [1.0f32, 0.0, 0.995, 0.0998, 0.0, 1.0, 0.0998, 0.995];
        let good = silhouette(&data, 2, &[0, 0, 1, 1], None, 0);
        let bad = silhouette(&data, 2, &[0, 1, 0, 1], None, 0);
        assert!(good > 0.9, "{good}");
        assert!(bad < 0.0, "{bad}");
        assert_eq!(silhouette(&data, 2, &[0, 0, 0, 0], None, 0), 0.0);
    }
}
