//! Spherical k-means (Dhillon & Modha, "Concept decompositions for large sparse
//! text data using clustering", Machine Learning 42, 2001): k-means on unit
//! vectors with cosine similarity, each centroid the normalised mean of its
//! members.
//!
//! Initialisation is greedy k-means++ (Arthur & Vassilvitskii, SODA 2007; the
//! greedy variant samples `2 + ln k` candidates per centre and keeps the one
//! that lowers the potential most, as scikit-learn does). The assignment step
//! scores blocks of users against all centroids as one matrix product, in
//! parallel. A cluster that empties is re-seeded with the user farthest from
//! its centroid. Seeded: the same seed gives the same clusters.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::limits::{MAX_KMEANS_INITS, MAX_KMEANS_ITERATIONS};
use crate::vector::{dot, gemm_abt};

/// Parameters of [`spherical_kmeans`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KMeansConfig {
    /// Number of clusters (≥ 1, at most the number of users).
    pub k: usize,
    /// Maximum Lloyd iterations per run (default 100; at most
    /// [`MAX_KMEANS_ITERATIONS`]).
    pub max_iter: usize,
    /// Stop when at most this share of users changed cluster in an iteration
    /// (default 1e-4; 0 runs until no user moves).
    pub tol: f64,
    /// Independent runs from different initialisations; the one with the
    /// highest mean cosine wins (default 1; at most [`MAX_KMEANS_INITS`]).
    pub n_init: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl KMeansConfig {
    /// Defaults for `k` clusters.
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            max_iter: 100,
            tol: 1e-4,
            n_init: 1,
            seed: 42,
        }
    }
}

/// The result of [`spherical_kmeans`].
#[derive(Debug, Clone)]
pub struct KMeans {
    /// Cluster of each row.
    pub labels: Vec<u32>,
    /// Unit centroids, `k × dim` row-major.
    pub centroids: Vec<f32>,
    /// Mean cosine similarity of the rows to their centroid (higher is better).
    pub objective: f64,
    /// Lloyd iterations of the winning run.
    pub iterations: usize,
}

/// Rows per block of the assignment's matrix product.
const BLOCK: usize = 2048;

/// Clusters the unit rows of `data` (`n × dim`, row-major) into `config.k`
/// clusters. Rows must already be L2-normalised (the user index stores them so).
pub fn spherical_kmeans(data: &[f32], dim: usize, config: &KMeansConfig) -> Result<KMeans> {
    run(data, dim, config, &[])
}

/// Like [`spherical_kmeans`], but starting from given unit centroids
/// (`initial`, `j × dim` with `j ≤ k`; k-means++ adds the remaining `k − j`).
/// Used to warm-start a rebuild from the previous segments, which keeps
/// cluster identities stable when the data changed little.
pub fn spherical_kmeans_from(
    data: &[f32],
    dim: usize,
    config: &KMeansConfig,
    initial: &[f32],
) -> Result<KMeans> {
    if dim == 0 || initial.len() % dim != 0 || initial.len() / dim > config.k {
        return Err(Error::invalid(
            "initial",
            format!(
                "needs at most k = {} centroids of dimension {dim}",
                config.k
            ),
        ));
    }
    crate::vector::check_finite("initial centroids", initial)?;
    run(data, dim, config, initial)
}

fn run(data: &[f32], dim: usize, config: &KMeansConfig, initial: &[f32]) -> Result<KMeans> {
    if dim == 0 || data.len() % dim != 0 {
        return Err(Error::invalid(
            "data",
            format!("length {} is not a multiple of dim {dim}", data.len()),
        ));
    }
    let n = data.len() / dim;
    if config.k == 0 || config.k > n {
        return Err(Error::invalid(
            "k",
            format!(
                "k = {} clusters need 1 <= k <= {n} (the number of users)",
                config.k
            ),
        ));
    }
    if !(config.tol.is_finite() && config.tol >= 0.0) {
        return Err(Error::invalid("tol", "must be finite and >= 0"));
    }
    if config.max_iter > MAX_KMEANS_ITERATIONS || config.n_init > MAX_KMEANS_INITS {
        return Err(Error::invalid(
            "max_iter",
            format!(
                "max_iter must be at most {MAX_KMEANS_ITERATIONS} and n_init at most {MAX_KMEANS_INITS}"
            ),
        ));
    }
    crate::vector::check_finite("data", data)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    // A warm start is deterministic given its centroids: one run is enough.
    let runs = if initial.is_empty() {
        config.n_init.max(1)
    } else {
        1
    };
    let mut best: Option<KMeans> = None;
    for _ in 0..runs {
        let run_seed = rng.random::<u64>();
        let run = lloyd(data, dim, config, initial, run_seed);
        if best.as_ref().is_none_or(|b| run.objective > b.objective) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| Error::invalid("n_init", "no run was made"))
}

fn lloyd(data: &[f32], dim: usize, config: &KMeansConfig, initial: &[f32], seed: u64) -> KMeans {
    let n = data.len() / dim;
    let k = config.k;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centroids = kmeans_plus_plus(data, dim, k, initial, &mut rng);
    let mut labels = vec![u32::MAX; n];
    let mut sims = vec![0.0f32; n];
    let mut iterations = 0;
    for _ in 0..config.max_iter.max(1) {
        iterations += 1;
        let changed = assign(data, dim, &centroids, k, &mut labels, &mut sims);
        update_centroids(data, dim, k, &labels, &sims, &mut centroids);
        if (changed as f64) <= config.tol * n as f64 {
            break;
        }
    }
    // Final labels and similarities against the final centroids.
    assign(data, dim, &centroids, k, &mut labels, &mut sims);
    let objective = sims.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
    KMeans {
        labels,
        centroids,
        objective,
        iterations,
    }
}

/// Greedy k-means++ on the squared chord distance `‖x − c‖² = 2 − 2·x·c`,
/// continuing from the centroids in `initial` (none for a cold start).
fn kmeans_plus_plus(
    data: &[f32],
    dim: usize,
    k: usize,
    initial: &[f32],
    rng: &mut StdRng,
) -> Vec<f32> {
    let n = data.len() / dim;
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let dist_to = |c: &[f32]| -> Vec<f64> {
        (0..n)
            .into_par_iter()
            .map(|i| f64::from((2.0 - 2.0 * dot(row(i), c)).max(0.0)))
            .collect()
    };
    let mut centres: Vec<f32> = initial.to_vec();
    let mut chosen: Vec<usize> = Vec::new();
    let mut closest = if centres.is_empty() {
        let first = rng.random_range(0..n);
        chosen.push(first);
        centres.extend_from_slice(row(first));
        dist_to(row(first))
    } else {
        let mut closest = vec![f64::INFINITY; n];
        for c in centres.chunks_exact(dim) {
            closest
                .iter_mut()
                .zip(dist_to(c))
                .for_each(|(a, b)| *a = a.min(b));
        }
        closest
    };
    let trials = 2 + (k as f64).ln().floor() as usize;
    while centres.len() < k * dim {
        let potential: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let candidate = if potential > 0.0 {
                sample_proportional(&closest, potential, rng)
            } else {
                // Every row sits on a centre already: any row not yet chosen.
                (0..n).find(|i| !chosen.contains(i)).unwrap_or(0)
            };
            let d = dist_to(row(candidate));
            let merged: Vec<f64> = closest
                .par_iter()
                .zip(&d)
                .map(|(&a, &b)| a.min(b))
                .collect();
            let pot: f64 = merged.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, candidate, merged));
            }
        }
        if let Some((_, c, merged)) = best {
            chosen.push(c);
            centres.extend_from_slice(row(c));
            closest = merged;
        }
    }
    centres
}

/// Index drawn with probability proportional to `weights` (which sum to `total`).
fn sample_proportional(weights: &[f64], total: f64, rng: &mut StdRng) -> usize {
    let mut target = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        target -= w;
        if target < 0.0 {
            return i;
        }
    }
    // Rounding left a sliver: the last row with weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Nearest centroid of every row (ties to the lower cluster); returns how many
/// labels changed.
fn assign(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    k: usize,
    labels: &mut [u32],
    sims: &mut [f32],
) -> usize {
    labels
        .par_chunks_mut(BLOCK)
        .zip(sims.par_chunks_mut(BLOCK))
        .enumerate()
        .map(|(b, (labels, sims))| {
            let rows = labels.len();
            let x = &data[b * BLOCK * dim..(b * BLOCK + rows) * dim];
            let mut scores = vec![0.0f32; rows * k];
            gemm_abt(x, rows, centroids, k, dim, &mut scores);
            let mut changed = 0;
            for (i, s) in scores.chunks_exact(k).enumerate() {
                let (mut arg, mut top) = (0usize, f32::NEG_INFINITY);
                for (c, &v) in s.iter().enumerate() {
                    if v > top {
                        arg = c;
                        top = v;
                    }
                }
                if labels[i] != arg as u32 {
                    changed += 1;
                    labels[i] = arg as u32;
                }
                sims[i] = top;
            }
            changed
        })
        .sum()
}

/// Centroids become the normalised sums of their members; an empty cluster
/// takes the row farthest from its own centroid (each such row used once).
fn update_centroids(
    data: &[f32],
    dim: usize,
    k: usize,
    labels: &[u32],
    sims: &[f32],
    centroids: &mut [f32],
) {
    let sums = labels
        .par_iter()
        .enumerate()
        .fold(
            || vec![0.0f64; k * dim],
            |mut acc, (i, &c)| {
                let dst = &mut acc[c as usize * dim..(c as usize + 1) * dim];
                for (d, &x) in dst.iter_mut().zip(&data[i * dim..(i + 1) * dim]) {
                    *d += f64::from(x);
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; k * dim],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut far: Vec<usize> = Vec::new();
    for c in 0..k {
        let sum = &sums[c * dim..(c + 1) * dim];
        let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dst = &mut centroids[c * dim..(c + 1) * dim];
        if norm > 0.0 {
            for (d, &s) in dst.iter_mut().zip(sum) {
                *d = (s / norm) as f32;
            }
            continue;
        }
        if far.is_empty() {
            far = (0..labels.len()).collect();
            // Farthest last, so `pop` takes it; ties by row for determinism.
            far.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(b.cmp(&a)));
        }
        if let Some(r) = far.pop() {
            dst.copy_from_slice(&data[r * dim..(r + 1) * dim]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn separates_three_directions_and_is_deterministic() -> Result<()> {
        let axes = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let mut data = Vec::new();
        let mut truth = Vec::new();
        for i in 0..90 {
            let a = axes[i % 3];
            let jitter = (i as f32 * 0.37).sin() * 0.1;
            data.extend(unit(&[a[0] + jitter, a[1] + 0.05, a[2] - jitter * 0.5]));
            truth.push(i % 3);
        }
        let km = spherical_kmeans(&data, 3, &KMeansConfig::new(3))?;
        for i in 0..90 {
            for j in 0..90 {
                assert_eq!(truth[i] == truth[j], km.labels[i] == km.labels[j]);
            }
        }
        assert!(km.objective > 0.98, "{}", km.objective);
        let again = spherical_kmeans(&data, 3, &KMeansConfig::new(3))?;
        assert_eq!(km.labels, again.labels);
        assert_eq!(km.centroids, again.centroids);
        Ok(())
    }

    #[test]
    fn bad_input_is_refused() {
        let data = [1.0f32, 0.0, 0.0, 1.0];
        assert!(spherical_kmeans(&data, 2, &KMeansConfig::new(0)).is_err());
        assert!(spherical_kmeans(&data, 2, &KMeansConfig::new(3)).is_err());
        assert!(spherical_kmeans(&data, 3, &KMeansConfig::new(1)).is_err());
        assert!(spherical_kmeans(&[f32::NAN, 1.0], 2, &KMeansConfig::new(1)).is_err());
    }

    #[test]
    fn duplicate_rows_still_give_k_distinct_labels_when_possible() -> Result<()> {
        // Four copies of one point and one other point, k = 2.
        let data = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let km = spherical_kmeans(&data, 2, &KMeansConfig::new(2))?;
        assert_ne!(km.labels[0], km.labels[4]);
        assert!((km.objective - 1.0).abs() < 1e-6);
        Ok(())
    }
}
