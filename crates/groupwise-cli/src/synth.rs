//! `groupwise synth`: clustered synthetic unit vectors for index benchmarks.
//!
//! A Gaussian mixture: `clusters` centres drawn from N(0, I), each point a
//! centre plus N(0, spread² I) noise, normalised to unit length. Queries are
//! fresh draws from the same mixture (not copies of indexed points).

use std::path::PathBuf;

use groupwise::io::write_npy;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Arguments of `groupwise synth`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of vectors.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Number of clusters.
    #[arg(long, default_value_t = 100)]
    pub clusters: usize,
    /// Noise around the centres, relative to a centre's scale.
    #[arg(long, default_value_t = 0.6)]
    pub spread: f32,
    /// Number of query vectors.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output `.npy` for the vectors.
    #[arg(long)]
    pub out: PathBuf,
    /// Output `.npy` for the queries.
    #[arg(long)]
    pub queries_out: PathBuf,
    /// Also write each vector's cluster (one per line) here.
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
}

/// `n` unit vectors from the mixture, row-major.
pub fn clustered(
    n: usize,
    dim: usize,
    centres: &[f32],
    spread: f32,
    rng: &mut impl Rng,
) -> Vec<f32> {
    clustered_with_labels(n, dim, centres, spread, rng).0
}

/// `n` unit vectors from the mixture, row-major, and the cluster of each.
pub fn clustered_with_labels(
    n: usize,
    dim: usize,
    centres: &[f32],
    spread: f32,
    rng: &mut impl Rng,
) -> (Vec<f32>, Vec<usize>) {
    let k = centres.len() / dim;
    let noise =
        Normal::new(0.0f32, spread).unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("valid"));
    let mut out = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        labels.push(c);
        let start = out.len();
        for d in 0..dim {
            out.push(centres[c * dim + d] + noise.sample(rng));
        }
        let norm = out[start..]
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        for x in &mut out[start..] {
            *x /= norm;
        }
    }
    (out, labels)
}

/// Mixture centres, row-major.
pub fn centres(clusters: usize, dim: usize, rng: &mut impl Rng) -> Vec<f32> {
    let std = Normal::new(0.0f32, 1.0).expect("valid normal");
    (0..clusters * dim).map(|_| std.sample(rng)).collect()
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if a.n == 0 || a.dim == 0 || a.clusters == 0 || !(a.spread.is_finite() && a.spread > 0.0) {
        return Err("n, dim and clusters must be positive and spread a positive number".into());
    }
    crate::paths::prepare_output("--out", &a.out)?;
    crate::paths::prepare_output("--queries-out", &a.queries_out)?;
    if let Some(p) = &a.labels_out {
        crate::paths::prepare_output("--labels-out", p)?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let c = centres(a.clusters, a.dim, &mut rng);
    let (data, labels) = clustered_with_labels(a.n, a.dim, &c, a.spread, &mut rng);
    write_npy(&a.out, &data, a.n, a.dim)?;
    if let Some(p) = &a.labels_out {
        let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
        crate::paths::write_output("--labels-out", p, text)?;
    }
    let q = clustered(a.queries, a.dim, &c, a.spread, &mut rng);
    write_npy(&a.queries_out, &q, a.queries, a.dim)?;
    eprintln!(
        "wrote {} x {} vectors to {} and {} queries to {}",
        a.n,
        a.dim,
        a.out.display(),
        a.queries,
        a.queries_out.display()
    );
    Ok(())
}
