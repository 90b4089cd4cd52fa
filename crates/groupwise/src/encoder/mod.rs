//! ONNX user encoders: behaviour in, user embeddings out.
//!
//! An [`Encoder`] wraps an exported ONNX model that follows the contract in
//! models/README.md ([`ModelContract`]). Two input kinds are supported:
//!
//! * **features**: one dense `float32 [batch, F]` row per user ([`Encoder::encode_features`]);
//! * **item sequences**: each user's item ids, oldest first, with optional
//!   per-item weights ([`Encoder::encode_sequences`]). Ids are the host's stable
//!   `u64` item ids (see [`crate::data::ids`]); the model's vocabulary maps them
//!   to rows.
//!
//! # Unknown items
//!
//! An item the vocabulary does not know maps to the model's `unknown_id` when it
//! declares one, and is dropped otherwise; either way it is counted in
//! [`EncodeStats::unknown_items`]. A row left with no items is an error
//! ([`Error::EmptySequence`]) rather than a meaningless zero embedding.
//!
//! # Threads
//!
//! `Encoder` is `Send + Sync`. It owns a pool of sessions of the same model
//! ([`EncoderOptions::sessions`], default one per core), because
//! `ort::Session::run` needs exclusive access; large batches are split into
//! chunks of [`EncoderOptions::batch_size`] rows that run on several sessions
//! at once.

mod contract;
mod pool;
mod vocab;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};
use rayon::prelude::*;

pub use contract::{InputKind, ModelContract, Truncation};
use pool::SessionPool;

use crate::data::UserHistory;
use crate::error::{Error, Result};
use crate::runtime::{self, RuntimeConfig};
use crate::vector::check_finite;

/// Most rows per model call ([`EncoderOptions::batch_size`]).
const MAX_BATCH: usize = 1 << 20;

/// Most sessions, and most threads per session ([`EncoderOptions`]): each
/// session holds a copy of the model.
const MAX_THREADS: usize = 1024;

/// How to load and run an encoder.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// Where ONNX Runtime is (see [`crate::runtime`]).
    pub runtime: RuntimeConfig,
    /// Rows per model call when a large batch is split (default 256; at
    /// most 2^20).
    pub batch_size: usize,
    /// Sessions in the pool, i.e. model calls that can run at once (default:
    /// the number of cores; at most 1,024).
    pub sessions: usize,
    /// ONNX Runtime intra-op threads per session (default 1: the pool already
    /// runs one call per core; at most 1,024).
    pub intra_op_threads: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            runtime: RuntimeConfig::default(),
            batch_size: 256,
            sessions: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(MAX_THREADS),
            intra_op_threads: 1,
        }
    }
}

/// One user's behaviour as an item sequence.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    /// Item ids, oldest first.
    pub items: &'a [u64],
    /// Optional per-item weights (same length as `items`, finite); 1.0 when absent.
    pub weights: Option<&'a [f32]>,
}

impl<'a> Sequence<'a> {
    /// A sequence without weights.
    pub fn new(items: &'a [u64]) -> Self {
        Sequence {
            items,
            weights: None,
        }
    }

    /// A sequence with weights.
    pub fn weighted(items: &'a [u64], weights: &'a [f32]) -> Self {
        Sequence {
            items,
            weights: Some(weights),
        }
    }
}

/// Counts describing one encode call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Rows encoded.
    pub rows: u64,
    /// Items the vocabulary did not know (mapped to `unknown_id` or dropped).
    pub unknown_items: u64,
    /// Sequences longer than the model's `max_len` that were truncated.
    pub truncated: u64,
}

impl EncodeStats {
    fn add(&mut self, o: &EncodeStats) {
        self.rows += o.rows;
        self.unknown_items += o.unknown_items;
        self.truncated += o.truncated;
    }
}

/// Embeddings produced by an encode call, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// `rows * dim` values; row `i` is the embedding of input `i`.
    pub embeddings: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
    /// What happened while encoding.
    pub stats: EncodeStats,
}

impl Encoded {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.embeddings.len() / self.dim.max(1)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }
}

/// A loaded ONNX user encoder.
pub struct Encoder {
    path: PathBuf,
    contract: ModelContract,
    pool: SessionPool,
    options: EncoderOptions,
    rows: AtomicU64,
    unknown_items: AtomicU64,
    truncated: AtomicU64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("path", &self.path)
            .field("kind", &self.contract.kind)
            .field("embedding_dim", &self.contract.embedding_dim)
            .field("sessions", &self.pool.len())
            .finish()
    }
}

impl Encoder {
    /// Loads a model and checks it against the contract. `path` must be a
    /// regular file (a directory, FIFO or device is an [`Error::Io`] saying
    /// what it is).
    pub fn load(path: impl AsRef<Path>, options: &EncoderOptions) -> Result<Self> {
        let path = path.as_ref();
        if !(1..=MAX_BATCH).contains(&options.batch_size) {
            return Err(Error::invalid(
                "batch_size",
                format!("must be in 1..={MAX_BATCH}, got {}", options.batch_size),
            ));
        }
        if !(1..=MAX_THREADS).contains(&options.sessions)
            || !(1..=MAX_THREADS).contains(&options.intra_op_threads)
        {
            return Err(Error::invalid(
                "sessions",
                format!(
                    "sessions and intra_op_threads must be in 1..={MAX_THREADS}, got {} and {}",
                    options.sessions, options.intra_op_threads
                ),
            ));
        }
        // A missing file says so; a directory, FIFO or device is refused by
        // what it is, before the runtime is loaded.
        let (file, _) = crate::files::open_regular(path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model file not found"),
            ),
            e => e,
        })?;
        drop(file);
        let env = runtime::environment(&options.runtime)?;
        let bytes = crate::files::read_regular(path, None)?;
        let mut sessions = Vec::with_capacity(options.sessions);
        for _ in 0..options.sessions {
            let session = Session::builder(env)
                .and_then(|b| {
                    b.with_optimization_level(GraphOptimizationLevel::All)
                        .map_err(Into::into)
                })
                .and_then(|b| {
                    b.with_intra_threads(options.intra_op_threads)
                        .map_err(Into::into)
                })
                .and_then(|mut b| b.commit_from_memory(&bytes))
                .map_err(|e| Error::onnx(format!("loading {}", path.display()), e))?;
            sessions.push(session);
        }
        let pool = SessionPool::new(sessions);
        let contract = ModelContract::read(&pool.first(), path)?;
        Ok(Encoder {
            path: path.to_path_buf(),
            contract,
            pool,
            options: options.clone(),
            rows: AtomicU64::new(0),
            unknown_items: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
        })
    }

    /// The model's contract.
    pub fn contract(&self) -> &ModelContract {
        &self.contract
    }

    /// Output embedding dimension.
    pub fn dim(&self) -> usize {
        self.contract.embedding_dim
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Totals over every call so far.
    pub fn stats(&self) -> EncodeStats {
        EncodeStats {
            rows: self.rows.load(Ordering::Relaxed),
            unknown_items: self.unknown_items.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }

    fn record(&self, s: &EncodeStats) {
        self.rows.fetch_add(s.rows, Ordering::Relaxed);
        self.unknown_items
            .fetch_add(s.unknown_items, Ordering::Relaxed);
        self.truncated.fetch_add(s.truncated, Ordering::Relaxed);
    }

    /// Encodes dense feature rows (`rows * F` values, row-major).
    pub fn encode_features(&self, features: &[f32]) -> Result<Encoded> {
        let (name, f) = match (&self.contract.features_input, self.contract.feature_dim) {
            (Some(n), Some(f)) => (n.as_str(), f),
            _ => {
                return Err(Error::invalid(
                    "features",
                    "this model takes item sequences; use encode_sequences",
                ))
            }
        };
        if features.len() % f != 0 {
            return Err(Error::ShapeMismatch {
                input: name.to_string(),
                expected: format!("[batch, {f}] (a multiple of {f} values)"),
                got: format!("{} values", features.len()),
            });
        }
        check_finite(&format!("input `{name}`"), features)?;
        let rows = features.len() / f;
        let chunk = self.options.batch_size * f;
        // The features are passed to ONNX Runtime in place, without a copy.
        let run_chunk = |c: &[f32]| -> Result<Vec<f32>> {
            let n = c.len() / f;
            let tensor = TensorRef::from_array_view(([n, f], c))
                .map_err(|e| Error::onnx("building the features tensor", e))?;
            self.run(vec![(name.to_string(), tensor.into())], n)
        };
        let parts: Vec<Vec<f32>> = if rows <= self.options.batch_size {
            vec![run_chunk(features)?]
        } else {
            features
                .par_chunks(chunk.max(1))
                .map(run_chunk)
                .collect::<Result<_>>()?
        };
        let stats = EncodeStats {
            rows: rows as u64,
            ..Default::default()
        };
        self.record(&stats);
        Ok(Encoded {
            embeddings: parts.concat(),
            dim: self.dim(),
            stats,
        })
    }

    /// Encodes item sequences, one user per sequence.
    pub fn encode_sequences(&self, sequences: &[Sequence<'_>]) -> Result<Encoded> {
        if self.contract.kind != InputKind::ItemSequence {
            return Err(Error::invalid(
                "sequences",
                "this model takes dense features; use encode_features",
            ));
        }
        let bs = self.options.batch_size;
        let parts: Vec<(Vec<f32>, EncodeStats)> = if sequences.len() <= bs {
            vec![self.encode_chunk(0, sequences)?]
        } else {
            sequences
                .par_chunks(bs)
                .enumerate()
                .map(|(i, chunk)| self.encode_chunk(i * bs, chunk))
                .collect::<Result<_>>()?
        };
        let mut stats = EncodeStats::default();
        let mut embeddings = Vec::with_capacity(sequences.len() * self.dim());
        for (emb, s) in &parts {
            stats.add(s);
            embeddings.extend_from_slice(emb);
        }
        self.record(&stats);
        Ok(Encoded {
            embeddings,
            dim: self.dim(),
            stats,
        })
    }

    /// Encodes users from their interaction histories, whatever the model's
    /// input kind: item-sequence models get the history as a sequence; features
    /// models whose metadata says `groupwise.feature_layout = item_bag` get a bag
    /// of items (column = model index, value = summed weight). With
    /// `use_weights` false every interaction weighs 1.0.
    pub fn encode_histories(
        &self,
        histories: &[UserHistory],
        use_weights: bool,
    ) -> Result<Encoded> {
        match self.contract.kind {
            InputKind::ItemSequence => {
                let seqs: Vec<Sequence<'_>> = histories
                    .iter()
                    .map(|h| Sequence {
                        items: &h.items,
                        weights: use_weights.then_some(h.weights.as_slice()),
                    })
                    .collect();
                self.encode_sequences(&seqs)
            }
            InputKind::Features => {
                let c = &self.contract;
                let f = c.feature_dim.unwrap_or(0);
                if c.metadata
                    .get("groupwise.feature_layout")
                    .map(String::as_str)
                    != Some("item_bag")
                {
                    return Err(Error::invalid(
                        "histories",
                        "this features model does not declare groupwise.feature_layout = item_bag; \
                         build its feature rows yourself and call encode_features",
                    ));
                }
                let mut rows = vec![0.0f32; histories.len() * f];
                let mut unknown = 0u64;
                for (r, h) in histories.iter().enumerate() {
                    let row = &mut rows[r * f..(r + 1) * f];
                    let mut any = false;
                    for (i, &item) in h.items.iter().enumerate() {
                        let w = if use_weights { h.weights[i] } else { 1.0 };
                        let (col, unknown_item) = c.feed_index(item);
                        unknown += u64::from(unknown_item);
                        if let Some(col) =
                            col.and_then(|x| usize::try_from(x).ok()).filter(|&x| x < f)
                        {
                            row[col] += w;
                            any = true;
                        }
                    }
                    if !any {
                        return Err(Error::EmptySequence { row: r });
                    }
                }
                let mut out = self.encode_features(&rows)?;
                out.stats.unknown_items = unknown;
                self.unknown_items.fetch_add(unknown, Ordering::Relaxed);
                Ok(out)
            }
        }
    }

    /// Maps one chunk of sequences to model indices (unknown-item and
    /// truncation rules), pads it into the model's input tensors and runs it.
    /// `first_row` numbers the rows in error messages.
    fn encode_chunk(
        &self,
        first_row: usize,
        seqs: &[Sequence<'_>],
    ) -> Result<(Vec<f32>, EncodeStats)> {
        let c = &self.contract;
        let mut stats = EncodeStats {
            rows: seqs.len() as u64,
            ..Default::default()
        };
        // Mapped rows, back to back in one buffer each (no allocation per row).
        let total: usize = seqs.iter().map(|s| s.items.len()).sum();
        let mut flat_ids: Vec<i64> = Vec::with_capacity(total);
        let mut flat_w: Vec<f32> = Vec::with_capacity(total);
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter().enumerate() {
            let row = first_row + i;
            if let Some(w) = s.weights {
                if w.len() != s.items.len() {
                    return Err(Error::ShapeMismatch {
                        input: format!("weights of row {row}"),
                        expected: format!("[{}] (one per item)", s.items.len()),
                        got: format!("[{}]", w.len()),
                    });
                }
                check_finite(&format!("weights of row {row}"), w)?;
            }
            let start = flat_ids.len();
            for (j, &item) in s.items.iter().enumerate() {
                let w = s.weights.map_or(1.0, |w| w[j]);
                let (ix, unknown_item) = c.feed_index(item);
                stats.unknown_items += u64::from(unknown_item);
                if let Some(ix) = ix {
                    flat_ids.push(ix);
                    flat_w.push(w);
                }
            }
            let mut span = (start, flat_ids.len());
            if span.0 == span.1 {
                return Err(Error::EmptySequence { row });
            }
            if let Some(max) = c.max_len {
                if span.1 - span.0 > max {
                    stats.truncated += 1;
                    span = match c.truncation {
                        Truncation::KeepLast => (span.1 - max, span.1),
                        Truncation::KeepFirst => (span.0, span.0 + max),
                    };
                }
            }
            spans.push(span);
        }

        let n = seqs.len();
        let longest = spans.iter().map(|(a, b)| b - a).max().unwrap_or(1);
        // A model with a static sequence length takes exactly that length.
        let len = match c.max_len {
            Some(m) if c.fixed_len => m,
            _ => longest,
        };
        let mut ids = vec![c.padding_id; n * len];
        let mut weights = vec![0.0f32; n * len];
        let mut lengths = Vec::with_capacity(n);
        for (r, &(a, b)) in spans.iter().enumerate() {
            ids[r * len..r * len + (b - a)].copy_from_slice(&flat_ids[a..b]);
            weights[r * len..r * len + (b - a)].copy_from_slice(&flat_w[a..b]);
            lengths.push((b - a) as i64);
        }
        let onnx = |e: ort::Error| Error::onnx("building the input tensors", e);
        let ids_name = c.ids_input.clone().unwrap_or_default();
        let mut inputs: Vec<(String, SessionInputValue<'static>)> = vec![(
            ids_name,
            Tensor::from_array(([n, len], ids)).map_err(onnx)?.into(),
        )];
        if let Some(w) = &c.weights_input {
            inputs.push((
                w.clone(),
                Tensor::from_array(([n, len], weights))
                    .map_err(onnx)?
                    .into(),
            ));
        }
        if let Some(l) = &c.lengths_input {
            inputs.push((
                l.clone(),
                Tensor::from_array(([n], lengths)).map_err(onnx)?.into(),
            ));
        }
        Ok((self.run(inputs, n)?, stats))
    }

    /// Runs the model on one chunk and checks the output.
    fn run(&self, inputs: Vec<(String, SessionInputValue<'_>)>, rows: usize) -> Result<Vec<f32>> {
        let c = &self.contract;
        let mut session = self.pool.get();
        let outputs = session
            .run(inputs)
            .map_err(|e| Error::onnx(format!("running {}", self.path.display()), e))?;
        let value = outputs.get(&c.output).ok_or_else(|| Error::ModelContract {
            model: self.path.clone(),
            problem: format!("the model produced no output `{}`", c.output),
        })?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::onnx(format!("reading output `{}`", c.output), e))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims != [rows as i64, c.embedding_dim as i64] {
            return Err(Error::ShapeMismatch {
                input: format!("output `{}`", c.output),
                expected: format!("[{rows}, {}]", c.embedding_dim),
                got: format!("{dims:?}"),
            });
        }
        check_finite(&format!("output `{}` of the model", c.output), data)?;
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_path_that_is_not_a_regular_file_is_named_before_anything_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("model.onnx");
        crate::files::tests::mkfifo(&fifo);
        let options = EncoderOptions::default();
        for (path, says) in [
            (dir.path().to_path_buf(), "is a directory"),
            (fifo.clone(), "is a FIFO"),
            (PathBuf::from("/dev/zero"), "is a character device"),
            (dir.path().join("missing.onnx"), "model file not found"),
        ] {
            match Encoder::load(&path, &options) {
                Err(Error::Io { path: p, source }) => {
                    assert_eq!(p, path);
                    assert!(source.to_string().contains(says), "{source}");
                }
                Err(e) => panic!("{}: expected an I/O error, got {e}", path.display()),
                Ok(_) => panic!("{}: loaded", path.display()),
            }
        }
        assert!(crate::files::tests::is_fifo(&fifo));
        // Options that would allocate for their size are refused first.
        for options in [
            EncoderOptions {
                sessions: usize::MAX,
                ..EncoderOptions::default()
            },
            EncoderOptions {
                intra_op_threads: 0,
                ..EncoderOptions::default()
            },
            EncoderOptions {
                batch_size: usize::MAX,
                ..EncoderOptions::default()
            },
        ] {
            assert!(matches!(
                Encoder::load(&fifo, &options),
                Err(Error::InvalidArgument { .. })
            ));
        }
    }
}
