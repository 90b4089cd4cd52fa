//! # groupwise
//!
//! An embeddable engine for *group personalisation* in recommender systems.
//! Host recommenders link it in-process to turn user behaviour into embeddings,
//! find behaviourally similar users, expand seed segments, discover segments
//! of shared taste, and serve slates with Thompson sampling blended with the
//! host's own scores.
//!
//! Most hosts hold one [`Engine`] ([`engine`]): it owns the encoders, the
//! user index, the segments and the slate bandit behind one `Send + Sync`
//! handle, and saves all of it in one crash-safe, versioned snapshot. The
//! pieces it is made of are usable on their own:
//!
//! * [`runtime`]: finds and loads the ONNX Runtime shared library (once per process).
//! * [`encoder`]: ONNX user encoders (dense features or item-id sequences → embeddings).
//! * [`index`]: the user index (HNSW via hnsw_rs, plus an exact path), with upsert,
//!   delete, filters and batch search.
//! * [`lookalike`]: seed-segment expansion (centroid, kNN density, classifier,
//!   graph diffusion, rank fusion) and its held-out evaluation.
//! * [`graph`]: the kNN graph of users (petgraph), for diffusion and communities.
//! * [`bandit`]: slate Thompson sampling (in-slate, standard), click models,
//!   the pooled → segment → user hierarchy and host-score blending.
//! * [`segments`]: data-driven segments (Leiden/Louvain communities or spherical
//!   k-means) with a privacy floor, profiles, online assignment and stable ids.
//! * [`data`]: loaders for interaction logs and item metadata.
//! * [`io`]: the embeddings file format (`.npy` + ids) the command-line tool writes.
//! * [`limits`]: the documented range of every setting, and of what is read
//!   from files.
//!
//! ```no_run
//! use groupwise::data::{Interactions, InteractionsSpec};
//! use groupwise::{Encoder, EncoderOptions, IndexConfig, SearchOptions, UserIndex};
//!
//! # fn main() -> groupwise::Result<()> {
//! let log = Interactions::load("logs.csv", &InteractionsSpec {
//!     user_col: "uid".into(),
//!     item_col: "sku".into(),
//!     time_col: Some("ts".into()),
//!     ..Default::default()
//! })?;
//! let histories = log.histories(); // time-ordered, one per user
//! let encoder = Encoder::load("models/ml100k-seq.onnx", &EncoderOptions::default())?;
//! let embedded = encoder.encode_histories(&histories, false)?;
//!
//! let index = UserIndex::new(IndexConfig::new(encoder.dim()))?;
//! let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
//! index.upsert_batch(&ids, &embedded.embeddings)?;
//! let similar = index.neighbors(ids[0], 10, &SearchOptions::default())?;
//! # let _ = similar;
//! # Ok(())
//! # }
//! ```

pub mod bandit;
pub mod data;
pub mod encoder;
pub mod engine;
pub mod error;
mod files;
mod frame;
pub mod graph;
pub mod index;
pub mod io;
pub mod limits;
pub mod lookalike;
pub mod runtime;
pub mod segments;
pub mod vector;

pub use encoder::{
    EncodeStats, Encoded, Encoder, EncoderOptions, InputKind, ModelContract, Sequence,
};
pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};
pub use index::{Filter, IndexConfig, Neighbor, SearchMode, SearchOptions, UserIndex};
pub use runtime::RuntimeConfig;
pub use segments::{Method, SegmentConfig, SegmentId, Segments};
