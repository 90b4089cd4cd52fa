//! Shared helpers of the end-to-end tests: where the repository, the committed
//! models and the fetched data are, and small generators with known answers.
//!
//! The real data is installed by `scripts/setup.sh` (the README's test command
//! runs it first). When it is missing the tests fail with that instruction;
//! they never skip.

use std::path::{Path, PathBuf};

use groupwise::data::UserHistory;
use groupwise::{Encoder, EncoderOptions, IndexConfig, UserIndex};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A file under models/.
pub fn model(rel: &str) -> PathBuf {
    repo_root().join("models").join(rel)
}

/// The MovieLens 100K folder installed by scripts/setup.sh.
///
/// # Panics
/// When the data is not installed: a test that needs it must fail, not skip.
pub fn movielens_dir() -> PathBuf {
    let dir = std::env::var_os("GROUPWISE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".groupwise"))
        .join("data")
        .join("ml-100k");
    assert!(
        dir.join("ml-100k.inter").is_file(),
        "MovieLens 100K is not installed at {}; run scripts/setup.sh (scripts/test does it for you)",
        dir.display()
    );
    dir
}

/// `n` unit vectors in `clusters` well-separated Gaussian clusters, with the
/// cluster of each vector. Deterministic for a seed.
pub fn clustered_vectors(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let unit = Normal::new(0.0f32, 1.0).expect("valid normal");
    let noise = Normal::new(0.0f32, spread).expect("spread must be positive and finite");
    let centres: Vec<f32> = (0..clusters * dim).map(|_| unit.sample(&mut rng)).collect();
    let mut data = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        let start = data.len();
        for d in 0..dim {
            data.push(centres[c * dim + d] + noise.sample(&mut rng));
        }
        let norm = data[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
        data[start..].iter_mut().for_each(|x| *x /= norm);
        labels.push(c);
    }
    (data, labels)
}

/// Every history encoded with the reference encoder (models/ml100k-seq.onnx)
/// and indexed under its user id.
///
/// # Panics
/// When ONNX Runtime or the model is missing: a test that needs them must fail.
pub fn reference_index(histories: &[UserHistory]) -> UserIndex {
    let encoder = Encoder::load(model("ml100k-seq.onnx"), &EncoderOptions::default())
        .expect("the reference encoder loads (run scripts/setup.sh)");
    let embedded = encoder
        .encode_histories(histories, false)
        .expect("histories encode");
    let index = UserIndex::new(IndexConfig::new(encoder.dim())).expect("index config");
    let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
    index
        .upsert_batch(&ids, &embedded.embeddings)
        .expect("embeddings are finite");
    index
}
