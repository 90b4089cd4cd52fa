//! The approximate part of the user index, behind one seam.
//!
//! A [`Graph`] is an HNSW graph over the index's *slots* (positions in the
//! index's own vector store). It knows nothing of user ids, filters or
//! tombstones: [`UserIndex`](super::UserIndex) keeps the id ↔ slot map, the
//! vectors (stored once, as f32, by the index), the exact path and the
//! rebuild policy, and re-scores every candidate a graph returns exactly
//! against its own vectors. Two backends implement it:
//!
//! * [`Backend::Usearch`] (the default): usearch's C++ HNSW, with real
//!   deletes, filtered search, and snapshots loaded as a memory-mapped view.
//!   The graph keeps its own navigation copy of each vector at
//!   [`Precision`] (f16 by default: half the size of f32, and the exact
//!   re-scoring makes up the precision lost).
//! * [`Backend::HnswRs`]: the pure-Rust hnsw_rs, for hosts that want no C++
//!   in their build. It cannot remove a point: deleted users stay as
//!   tombstones until the index rebuilds the graph.
//!
//! BENCHMARKS.md compares them with hnswlib and faiss.

mod distance;
mod hnsw;
mod usearch;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use distance::CosineDistance;

use crate::error::{Error, Result};

/// Which HNSW implementation serves the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// usearch (C++, built from the `usearch` crate): the fastest here,
    /// real deletes, memory-mapped snapshots. The default.
    #[default]
    Usearch,
    /// hnsw_rs (pure Rust): deletes are tombstones until a rebuild; the
    /// graph is copied (not mapped) on load.
    HnswRs,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 2] = [Backend::Usearch, Backend::HnswRs];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Usearch => "usearch",
            Backend::HnswRs => "hnsw_rs",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "usearch" => Ok(Backend::Usearch),
            "hnsw_rs" | "hnsw-rs" => Ok(Backend::HnswRs),
            _ => Err(Error::invalid(
                "index.backend",
                format!("unknown backend {s:?} (expected usearch or hnsw_rs)"),
            )),
        }
    }
}

/// The precision of the graph's own copy of the vectors, which it uses to
/// navigate (usearch; hnsw_rs always keeps f32). Results are re-scored
/// exactly from the index's f32 vectors whatever the precision, so a lower
/// one costs a little recall at a given `ef`, not accuracy of the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 4 bytes per dimension.
    F32,
    /// 2 bytes per dimension (the default).
    #[default]
    F16,
    /// 1 byte per dimension (each vector scaled by its largest component).
    I8,
}

impl Precision {
    /// Every precision.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::I8];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::I8 => "i8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "i8" => Ok(Precision::I8),
            _ => Err(Error::invalid(
                "index.graph_precision",
                format!("unknown precision {s:?} (expected f32, f16 or i8)"),
            )),
        }
    }
}

/// What a graph is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub dim: usize,
    /// Links per node and layer (`M`; the base layer has `2 M`).
    pub m: usize,
    pub ef_construction: usize,
    pub precision: Precision,
}

/// Bytes of a stored graph: owned, or a range of a memory-mapped snapshot.
#[derive(Clone)]
pub(crate) enum Bytes {
    Owned(Vec<u8>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

/// An HNSW graph over slots. Searches and inserts take `&self` and may run
/// concurrently; [`prepare_write`](Graph::prepare_write) takes `&mut self`
/// and is called (under the index's exclusive graph lock) before any insert
/// or remove.
pub(crate) trait Graph: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Makes the graph writable (a mapped graph is copied into memory) with
    /// room for slots `0..slots`.
    fn prepare_write(&mut self, slots: usize) -> Result<()>;

    /// Inserts `slot` with its unit vector. Thread-safe after
    /// [`prepare_write`](Graph::prepare_write) made room for it.
    fn insert(&self, slot: usize, vector: &[f32]) -> Result<()>;

    /// Removes `slot`; `false` when the backend cannot remove points (the
    /// slot stays in the graph and the index filters it out).
    fn remove(&self, slot: usize) -> Result<bool>;

    /// Candidate slots for `query`: about `ef` of them, best first by the
    /// graph's own distance, each passing `keep` (at least `k` when the
    /// graph has them). The caller re-scores them.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<usize>>;

    /// The base-layer neighbours of every slot in the graph (`out[slot]`;
    /// empty for slots not in it). `out` has `slots` entries.
    fn base_layer(&self, slots: usize) -> Vec<Vec<u32>>;

    /// Bytes of memory the graph holds (its links and its copy of the
    /// vectors); 0 for a mapped graph's file-backed part.
    fn memory_bytes(&self) -> usize;

    /// Whether the graph reads a memory-mapped snapshot.
    fn is_mapped(&self) -> bool;

    /// The graph as bytes, for a snapshot (`load` reads them back).
    fn to_bytes(&self) -> Result<Vec<u8>>;
}

/// An empty graph.
pub(crate) fn new_graph(
    backend: Backend,
    params: Params,
    capacity: usize,
) -> Result<Box<dyn Graph>> {
    Ok(match backend {
        Backend::Usearch => Box::new(usearch::UsearchGraph::new(params, capacity)?),
        Backend::HnswRs => Box::new(hnsw::HnswRsGraph::new(params, capacity)),
    })
}

/// A graph from stored bytes, after checking them against the index's
/// vectors: `rows` (row-major, `slots` rows) with `present[slot]` telling
/// which slots the graph must hold. Malformed bytes are an error, never a
/// crash: neither library's loader is given bytes that were not checked.
pub(crate) fn load_graph(
    backend: Backend,
    params: Params,
    bytes: Bytes,
    rows: &[f32],
    present: &[bool],
) -> Result<Box<dyn Graph>> {
    Ok(match backend {
        Backend::Usearch => Box::new(usearch::UsearchGraph::load(params, bytes, rows, present)?),
        Backend::HnswRs => Box::new(hnsw::HnswRsGraph::load(
            params,
            bytes.as_slice(),
            rows,
            present,
        )?),
    })
}

/// hnsw_rs's two dump files framed as the hnsw_rs backend stores them
/// (for format-1 snapshots, which stored them apart).
pub(crate) fn hnsw_rs_frame(graph: &[u8], data: &[u8]) -> Vec<u8> {
    hnsw::HnswRsGraph::frame(graph, data)
}

/// A graph version this build writes for `backend` (stored with the bytes).
pub(crate) fn format_version(backend: Backend) -> u32 {
    match backend {
        Backend::Usearch => usearch::FORMAT,
        Backend::HnswRs => hnsw::FORMAT,
    }
}

pub(crate) fn invalid(problem: impl Into<String>) -> Error {
    Error::invalid("stored graph", problem)
}
