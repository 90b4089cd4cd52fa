//! The one error type of the core library.
//!
//! Variants are named after what went wrong for the caller, and every message
//! says what to do about it.

use std::path::PathBuf;

/// Result alias used across groupwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in groupwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error(
        "ONNX Runtime is not available: {reason}. Point groupwise at a libonnxruntime.so of \
         version 1.22 or newer: set `RuntimeConfig::library_path` (`gw_runtime_init` from C) \
         or the `ORT_DYLIB_PATH` environment variable"
    )]
    RuntimeUnavailable {
        /// What was tried and what failed.
        reason: String,
    },

    /// ONNX Runtime returned an error while loading or running a model.
    #[error("ONNX Runtime failed while {context}: {message}")]
    Onnx {
        /// What groupwise was doing.
        context: String,
        /// ONNX Runtime's own message.
        message: String,
    },

    /// The model's inputs, outputs or metadata do not follow the encoder contract
    /// (see models/README.md).
    #[error("model {model} does not follow the encoder contract: {problem}")]
    ModelContract {
        /// The model file.
        model: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// An input tensor has the wrong shape.
    #[error("input `{input}` has shape {got}, expected {expected}")]
    ShapeMismatch {
        /// Name of the input (model input name or API argument).
        input: String,
        /// The expected shape, e.g. `[batch, 64]`.
        expected: String,
        /// The shape that was given.
        got: String,
    },

    /// A vector has the wrong number of dimensions.
    #[error("{what} has dimension {got}, expected {expected}")]
    DimensionMismatch {
        /// What the vector is (e.g. "query vector").
        what: String,
        /// The expected dimension.
        expected: usize,
        /// The dimension that was given.
        got: usize,
    },

    /// A value is NaN or infinite.
    #[error("{what} contains a non-finite value (NaN or infinity) at position {position}")]
    NonFinite {
        /// Where the value was found.
        what: String,
        /// Flat index of the first bad value.
        position: usize,
    },

    /// A vector has zero length and cannot be normalised for cosine similarity.
    #[error("{what} is the zero vector; cosine similarity is undefined for it")]
    ZeroVector {
        /// What the vector is.
        what: String,
    },

    /// A behaviour row to encode has nothing in it.
    #[error("row {row} has no items to encode; drop empty histories before encoding")]
    EmptySequence {
        /// Row index in the batch.
        row: usize,
    },

    /// A user id is not in the index.
    #[error("user {0} is not in the index")]
    UnknownUser(u64),

    /// A seed segment has fewer usable seeds than the configured minimum.
    #[error(
        "only {usable} usable seeds (minimum {minimum}; {unknown} seed ids are not in the index); \
         add seeds or lower LookalikeConfig::min_seeds"
    )]
    TooFewSeeds {
        /// Seeds found in the index (or given as vectors).
        usable: usize,
        /// The configured minimum.
        minimum: usize,
        /// Seed ids that are not in the index.
        unknown: usize,
    },

    /// No user is left to score or serve.
    #[error(
        "no candidate users: the index is empty, or seeds, exclusions and filters leave nobody"
    )]
    EmptyPopulation,

    /// A segment id is not served (never existed, retired by a rebuild, or
    /// dissolved under the privacy floor).
    #[error("segment {0} does not exist; list the current segments with `Segments::ids`")]
    UnknownSegment(u32),

    /// Too few users to form even one segment of the minimum (privacy floor) size.
    #[error(
        "{users} users cannot form a segment of at least {floor} users (the privacy floor); \
         add users or lower SegmentConfig::min_size"
    )]
    BelowPrivacyFloor {
        /// Users available.
        users: usize,
        /// The configured minimum segment size.
        floor: usize,
    },

    /// Feedback names a decision the bandit does not hold: never made, already
    /// given feedback, or evicted (see `BanditConfig::max_pending`).
    #[error("decision {0} is unknown, already has feedback, or was evicted; feedback is accepted once per decision")]
    UnknownDecision(u64),

    /// An argument is out of its documented range.
    #[error("invalid argument `{name}`: {problem}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// A configuration setting is outside its documented range (see
    /// [`crate::limits`] and the README's configuration table).
    #[error("invalid config: `{key}` {problem}")]
    InvalidConfig {
        /// The setting, as written in an engine config (e.g. `index.ef_search`).
        key: String,
        /// The range it must lie in, and the value it had.
        problem: String,
    },

    /// A data file has a malformed row.
    #[error("{path}:{line}: {problem}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the row.
        problem: String,
    },

    /// Two different string ids hash to the same numeric id.
    #[error("ids {first:?} and {second:?} both map to numeric id {id}; rename one of them")]
    IdCollision {
        /// The first string id.
        first: String,
        /// The second string id.
        second: String,
        /// The numeric id they share.
        id: u64,
    },

    /// A snapshot (or replica delta) is damaged: truncated, bit-flipped, or
    /// not a groupwise snapshot at all. Nothing was loaded.
    #[error("{path}: not a valid groupwise snapshot: {problem}; restore the previous snapshot or rebuild the engine")]
    CorruptSnapshot {
        /// The file (or `<bytes>` for in-memory input).
        path: PathBuf,
        /// What the check found.
        problem: String,
    },

    /// A snapshot was written by a format version this build cannot read.
    #[error("{path}: snapshot format version {found}, this build reads versions {oldest} to {newest}; {advice}")]
    SnapshotVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The oldest version this build reads (older ones are migrated).
        oldest: u32,
        /// The newest version this build reads (and writes).
        newest: u32,
        /// What to do about it.
        advice: &'static str,
    },

    /// An operation needs an encoder the engine does not have.
    #[error("no encoder named {0:?}; load it with Engine::load_encoder or list it in EngineConfig::encoders")]
    UnknownEncoder(String),

    /// An operation needs data-driven segments and none are built yet.
    #[error("no segments are built yet; call Engine::build_segments first")]
    NoSegments,

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn onnx(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Onnx {
            context: context.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn config(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::InvalidConfig {
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn invalid(name: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            problem: problem.into(),
        }
    }
}
