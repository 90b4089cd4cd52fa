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

/// The crash-safety test's shared facts: the child `snapshot_writer` saves
/// an engine of `INITIAL` users of dimension `DIM` and adds user `BASE + g`
/// in generation `g`, with one bandit observation on item `g % ITEMS`.
pub mod crash {
    /// Embedding dimension.
    pub const DIM: usize = 16;
    /// Users created with the engine (ids `0..INITIAL`).
    pub const INITIAL: u64 = 3_000;
    /// Users added by the loop are `BASE + g`, `g >= 1`.
    pub const BASE: u64 = 1_000_000;
    /// Distinct bandit items the generations cycle over.
    pub const ITEMS: u64 = 7;

    /// The vector of user `id`: a deterministic function of the id
    /// (SplitMix64 stream mapped to `[-1, 1)`), never all zeros.
    pub fn vector_of(id: u64, dim: usize) -> Vec<f32> {
        let mut state = id ^ 0xC0FF_EE00_5EED_0001;
        (0..dim)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                // 24 high bits → [0, 1) → [-1, 1), offset away from exact 0.
                let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
                unit * 2.0 - 1.0 + 1e-3
            })
            .collect()
    }
}
