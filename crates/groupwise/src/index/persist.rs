//! The index as serializable data, for snapshots.
//!
//! The vectors, ids and liveness are always stored. The graph is stored too
//! when asked, as its backend's own bytes tagged with the backend and a
//! version (`{backend, version, bytes}`, opaque to the rest of the engine),
//! so loading does not re-insert every user: BENCHMARKS.md has load and
//! rebuild times. Without it the graph is rebuilt from the live vectors.
//!
//! The bytes are borrowed from the decoded snapshot: a snapshot read through
//! a memory map hands a usearch graph its bytes in place (a *view*: the
//! graph is not copied until the first write), so a replica serves within
//! about a second of opening a snapshot of a million users.
//!
//! Nothing stored is trusted: [`UserIndex::from_state`] checks the config,
//! the lengths, that rows in the graph are finite unit vectors and free rows
//! zero, that no user is live twice, and hands the graph bytes to their
//! backend's checker before its loader (see `backend`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::backend::{self, Backend, Bytes};
use super::{graph_of, IndexConfig, Inner, Slot, UserIndex};
use crate::error::{Error, Result};
use crate::limits::MAX_EF;

/// A graph as its backend serialized it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGraph<'a> {
    backend: Backend,
    /// The backend's format version.
    version: u32,
    #[serde(borrow, with = "serde_bytes")]
    bytes: Cow<'a, [u8]>,
}

/// Everything a [`UserIndex`] holds, as serializable data (snapshot format
/// 2). It may borrow its bytes from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexState<'a> {
    config: IndexConfig,
    ef_search: usize,
    rebuilds: u64,
    /// External id of each slot.
    ids: Vec<u64>,
    /// Whether each slot holds a live user.
    alive: Vec<bool>,
    /// Whether each slot is in the stored graph (live users and
    /// tombstones); all false without a graph.
    present: Vec<bool>,
    /// Row-major unit vectors, little-endian f32, one row per slot (zeros
    /// for slots that are neither live nor in the graph).
    #[serde(borrow, with = "serde_bytes")]
    vectors: Cow<'a, [u8]>,
    #[serde(borrow)]
    graph: Option<StoredGraph<'a>>,
}

impl IndexState<'_> {
    /// Live users.
    pub fn live(&self) -> usize {
        self.alive.iter().filter(|&&a| a).count()
    }

    /// Whether the graph is stored (else it is rebuilt on load).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// The stored graph's backend, if a graph is stored.
    pub fn graph_backend(&self) -> Option<Backend> {
        self.graph.as_ref().map(|g| g.backend)
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Serves the index from `backend` (and keeps a stored graph only if it
    /// is that backend's: another is rebuilt on load).
    pub fn set_backend(&mut self, backend: Backend) {
        self.config.backend = backend;
        if self.graph_backend().is_some_and(|b| b != backend) {
            self.graph = None;
            self.present = vec![false; self.ids.len()];
            // Tombstones of the dropped graph become free slots.
            let row = self.config.dim * 4;
            let dead: Vec<usize> = (0..self.ids.len()).filter(|&s| !self.alive[s]).collect();
            if !dead.is_empty() && self.vectors.len() == self.ids.len() * row {
                let v = self.vectors.to_mut();
                for s in dead {
                    v[s * row..(s + 1) * row].fill(0);
                }
            }
        }
    }
}

/// The format-1 index state (hnsw_rs's two dump files), still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexStateV1 {
    config: IndexConfig,
    ef_search: usize,
    rebuilds: u64,
    ids: Vec<u64>,
    alive: Vec<bool>,
    #[serde(with = "serde_bytes")]
    vectors: Vec<u8>,
    graph: Option<GraphFilesV1>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GraphFilesV1 {
    #[serde(with = "serde_bytes")]
    graph: Vec<u8>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

impl IndexStateV1 {
    /// The same state in format 2. A stored graph was hnsw_rs's, and every
    /// slot was in it: the index is served by hnsw_rs (answers stay the
    /// same); `IndexState::set_backend` moves it to another backend by a
    /// rebuild. Without a graph the config's backend (the default) builds it.
    pub(crate) fn migrate(self) -> IndexState<'static> {
        let mut config = self.config;
        let slots = self.ids.len();
        let (present, graph) = match self.graph {
            Some(files) => {
                config.backend = Backend::HnswRs;
                (
                    vec![true; slots],
                    Some(StoredGraph {
                        backend: Backend::HnswRs,
                        version: backend::format_version(Backend::HnswRs),
                        bytes: Cow::Owned(backend::hnsw_rs_frame(&files.graph, &files.data)),
                    }),
                )
            }
            None => (vec![false; slots], None),
        };
        IndexState {
            config,
            ef_search: self.ef_search,
            rebuilds: self.rebuilds,
            ids: self.ids,
            alive: self.alive,
            present,
            vectors: Cow::Owned(self.vectors),
            graph,
        }
    }
}

fn invalid(problem: impl Into<String>) -> Error {
    Error::invalid("index state", problem)
}

impl UserIndex {
    /// The index as data. With `store_graph` (and a graph built), the graph
    /// is included with every slot it holds; otherwise only live users are
    /// kept and the graph is rebuilt on load. Writers wait while it copies.
    pub fn export_state(&self, store_graph: bool) -> Result<IndexState<'static>> {
        let _writer = self.writer.lock();
        let inner = self.inner.read();
        let graph = self.graph.read();
        let dim = self.config.dim;
        let stored = match graph.as_ref() {
            Some(g) if store_graph && !inner.ids.is_empty() => Some(g),
            _ => None,
        };
        let (ids, alive, present, rows): (Vec<u64>, Vec<bool>, Vec<bool>, Vec<Option<usize>>) =
            if stored.is_some() {
                let n = inner.ids.len();
                let live = |s: usize| inner.state[s] == Slot::Live;
                let in_graph = |s: usize| matches!(inner.state[s], Slot::Live | Slot::Dead);
                (
                    inner.ids.clone(),
                    (0..n).map(live).collect(),
                    (0..n).map(in_graph).collect(),
                    (0..n).map(|s| in_graph(s).then_some(s)).collect(),
                )
            } else {
                let rows: Vec<usize> = (0..inner.ids.len())
                    .filter(|&s| inner.state[s] == Slot::Live)
                    .collect();
                (
                    rows.iter().map(|&s| inner.ids[s]).collect(),
                    vec![true; rows.len()],
                    vec![false; rows.len()],
                    rows.into_iter().map(Some).collect(),
                )
            };
        let mut vectors = Vec::with_capacity(rows.len() * dim * 4);
        for row in &rows {
            match row {
                Some(s) => {
                    for x in inner.row(*s, dim) {
                        vectors.extend_from_slice(&x.to_le_bytes());
                    }
                }
                None => vectors.resize(vectors.len() + dim * 4, 0),
            }
        }
        let graph = match stored {
            Some(g) => Some(StoredGraph {
                backend: g.backend(),
                version: backend::format_version(g.backend()),
                bytes: Cow::Owned(g.to_bytes()?),
            }),
            None => None,
        };
        Ok(IndexState {
            config: self.config.clone(),
            ef_search: self.ef_search(),
            rebuilds: inner.rebuilds,
            ids,
            alive,
            present,
            vectors: Cow::Owned(vectors),
            graph,
        })
    }

    /// An index holding `state`, after checking it (see the module docs).
    /// The stored graph is loaded (copied), or rebuilt when absent.
    pub fn from_state(state: IndexState<'_>) -> Result<UserIndex> {
        Self::from_state_in(state, None)
    }

    /// [`from_state`](Self::from_state) for a state decoded from `map`: a
    /// stored graph whose bytes lie in the map is viewed in place where the
    /// backend can (usearch), not copied.
    pub(crate) fn from_state_in(
        state: IndexState<'_>,
        map: Option<&Arc<memmap2::Mmap>>,
    ) -> Result<UserIndex> {
        let dim = state.config.dim;
        state.config.validate()?;
        if !(1..=MAX_EF).contains(&state.ef_search) {
            return Err(invalid(format!(
                "its search width {} is not in 1..={MAX_EF}",
                state.ef_search
            )));
        }
        let slots = state.ids.len();
        if state.alive.len() != slots
            || state.present.len() != slots
            || state.vectors.len() != slots * dim * 4
        {
            return Err(invalid(format!(
                "{slots} ids, {} liveness flags, {} graph flags and {} vector bytes do not agree (dimension {dim})",
                state.alive.len(),
                state.present.len(),
                state.vectors.len()
            )));
        }
        let mut data: Vec<f32> = state
            .vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let has_graph = state.graph.is_some();
        let mut slot_of = HashMap::with_capacity(slots);
        let mut kinds = Vec::with_capacity(slots);
        for (s, row) in data.chunks_exact(dim.max(1)).enumerate() {
            let (alive, present) = (state.alive[s], state.present[s]);
            if present && !has_graph {
                return Err(invalid(format!(
                    "slot {s} is marked in a graph that is not stored"
                )));
            }
            if alive && has_graph && !present {
                return Err(invalid(format!(
                    "user {} is live but not in the stored graph",
                    state.ids[s]
                )));
            }
            if alive || present {
                let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if !(norm - 1.0).abs().lt(&1e-3) {
                    return Err(invalid(format!(
                        "the vector of slot {s} (user {}) is not a finite unit vector",
                        state.ids[s]
                    )));
                }
            } else if row.iter().any(|&x| x != 0.0) {
                return Err(invalid(format!("free slot {s} holds a vector")));
            }
            if alive && slot_of.insert(state.ids[s], s).is_some() {
                return Err(invalid(format!("user {} is live twice", state.ids[s])));
            }
            kinds.push(match (alive, present) {
                (true, _) => Slot::Live,
                (false, true) => Slot::Dead,
                (false, false) => Slot::Free,
            });
        }
        let config = state.config;
        let graph = match state.graph {
            Some(stored) if config.build_graph => {
                if stored.backend != config.backend {
                    return Err(invalid(format!(
                        "the stored graph is {}'s but the config names {}",
                        stored.backend, config.backend
                    )));
                }
                let version = backend::format_version(stored.backend);
                if stored.version != version {
                    return Err(invalid(format!(
                        "the stored {} graph is format {}; this build reads {version}",
                        stored.backend, stored.version
                    )));
                }
                let bytes = match (&stored.bytes, map) {
                    (Cow::Borrowed(b), Some(map)) => {
                        let base = map.as_ptr() as usize;
                        let start = (b.as_ptr() as usize).wrapping_sub(base);
                        if start <= map.len() && b.len() <= map.len() - start {
                            Bytes::Mapped {
                                map: Arc::clone(map),
                                start,
                                len: b.len(),
                            }
                        } else {
                            Bytes::Owned(b.to_vec())
                        }
                    }
                    (b, _) => Bytes::Owned(b.to_vec()),
                };
                Some(backend::load_graph(
                    config.backend,
                    config.params(),
                    bytes,
                    &data,
                    &state.present,
                )?)
            }
            _ => {
                // No graph stored (or none wanted): build it from the live
                // rows; slots that were tombstones of a graph not kept
                // become free.
                for (s, k) in kinds.iter_mut().enumerate() {
                    if *k == Slot::Dead {
                        *k = Slot::Free;
                        data[s * dim..(s + 1) * dim].fill(0.0);
                    }
                }
                let live: Vec<(usize, &[f32])> = (0..slots)
                    .filter(|&s| kinds[s] == Slot::Live)
                    .map(|s| (s, &data[s * dim..(s + 1) * dim]))
                    .collect();
                graph_of(
                    &config,
                    &live,
                    slots.max(config.capacity_hint.min(slots * 2)),
                )?
            }
        };
        let mut free: Vec<usize> = (0..slots).filter(|&s| kinds[s] == Slot::Free).collect();
        free.reverse();
        let tombstones = kinds.iter().filter(|&&k| k == Slot::Dead).count();
        let inner = Inner {
            data,
            ids: state.ids,
            state: kinds,
            slot_of,
            free,
            tombstones,
            rebuilds: state.rebuilds,
        };
        let index = UserIndex::assemble(config, inner, graph);
        index
            .ef_search
            .store(state.ef_search, std::sync::atomic::Ordering::Relaxed);
        Ok(index)
    }
}

/// Ways to damage a state, for the tests of the checks above (here and in
/// the engine's snapshot tests).
#[cfg(test)]
impl<'a> IndexState<'a> {
    pub(crate) fn ids_mut(&mut self) -> &mut Vec<u64> {
        &mut self.ids
    }

    pub(crate) fn alive_mut(&mut self) -> &mut Vec<bool> {
        &mut self.alive
    }

    pub(crate) fn vectors_mut(&mut self) -> &mut Vec<u8> {
        self.vectors.to_mut()
    }

    pub(crate) fn ef_search_mut(&mut self) -> &mut usize {
        &mut self.ef_search
    }

    fn graph_mut(&mut self) -> &mut StoredGraph<'a> {
        self.graph.as_mut().expect("a stored graph")
    }

    pub(crate) fn graph_bytes_mut(&mut self) -> &mut Vec<u8> {
        self.graph_mut().bytes.to_mut()
    }

    pub(crate) fn graph_backend_mut(&mut self) -> &mut Backend {
        &mut self.graph_mut().backend
    }

    pub(crate) fn graph_version_mut(&mut self) -> &mut u32 {
        &mut self.graph_mut().version
    }

    /// Points the first link of the first node of a stored usearch graph
    /// past the last node.
    pub(crate) fn break_a_graph_link(&mut self) {
        let bytes = self.graph_bytes_mut();
        let rows = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let bytes_per_vector =
            u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let first_node = 8 + rows * bytes_per_vector + 64 + 40 + rows * 2;
        let link = first_node + 8 + 2 + 4;
        bytes[first_node + 10..first_node + 14].copy_from_slice(&1u32.to_le_bytes());
        bytes[link..link + 4].copy_from_slice(&(rows as u32 + 5).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Precision;
    use crate::SearchOptions;

    fn population(n: usize, dim: usize) -> (Vec<u64>, Vec<f32>) {
        let mut x = 12345u64;
        let mut v = Vec::with_capacity(n * dim);
        for _ in 0..n * dim {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.push(((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5);
        }
        ((0..n as u64).map(|i| i * 7 + 3).collect(), v)
    }

    fn configs() -> Vec<IndexConfig> {
        let mut out = Vec::new();
        for backend in Backend::ALL {
            for precision in Precision::ALL {
                if backend == Backend::HnswRs && precision != Precision::F32 {
                    continue;
                }
                let mut c = IndexConfig::new(8);
                c.exact_below = 0; // force the graph path
                c.backend = backend;
                c.graph_precision = precision;
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn round_trip_with_and_without_the_graph_answers_the_same() {
        for config in configs() {
            let what = format!("{} {}", config.backend, config.graph_precision);
            let index = UserIndex::new(config).expect("config");
            let (ids, v) = population(600, 8);
            index.upsert_batch(&ids, &v).expect("upsert");
            index.delete(ids[5]).expect("delete");
            index.upsert(ids[6], &v[..8]).expect("replace");
            let opts = SearchOptions::default();
            let before: Vec<_> = ids[10..60]
                .iter()
                .map(|&u| index.neighbors(u, 10, &opts).ok())
                .collect();
            for store in [true, false] {
                let state = index.export_state(store).expect("export");
                assert_eq!(state.has_graph(), store);
                let bytes = rmp_serde::to_vec(&state).expect("serialize");
                let back: IndexState<'_> = rmp_serde::from_slice(&bytes).expect("decode");
                let loaded = UserIndex::from_state(back).expect("load");
                assert_eq!(loaded.len(), index.len(), "{what}");
                assert!(!loaded.contains(ids[5]));
                assert_eq!(loaded.vector(ids[6]), index.vector(ids[6]));
                let after: Vec<_> = ids[10..60]
                    .iter()
                    .map(|&u| loaded.neighbors(u, 10, &opts).ok())
                    .collect();
                if store {
                    // Same graph, same vectors: identical answers.
                    assert_eq!(after, before, "{what}");
                } else {
                    // A rebuilt graph may differ slightly; the users agree mostly.
                    let same: usize = before
                        .iter()
                        .zip(&after)
                        .map(|(b, a)| {
                            let (b, a) = (b.as_ref().expect("known"), a.as_ref().expect("known"));
                            b.iter().filter(|n| a.iter().any(|m| m.id == n.id)).count()
                        })
                        .sum();
                    assert!(same as f64 >= 0.9 * 500.0, "{what}: {same} of 500 kept");
                }
                // Written again, the loaded index gives the same state.
                let again = loaded.export_state(store).expect("export");
                assert_eq!(again.live(), state.live());
            }
        }
    }

    #[test]
    fn from_state_refuses_inconsistent_states() {
        for config in configs() {
            let index = UserIndex::new(config).expect("config");
            let (ids, v) = population(50, 8);
            index.upsert_batch(&ids, &v).expect("upsert");
            index.delete(ids[3]).expect("delete");
            let state = index.export_state(true).expect("export");
            UserIndex::from_state(state.clone()).expect("intact");
            let mut short = state.clone();
            short.vectors_mut().pop();
            assert!(UserIndex::from_state(short).is_err());
            let mut dup = state.clone();
            dup.ids[1] = dup.ids[0];
            assert!(UserIndex::from_state(dup).is_err());
            let mut nan = state.clone();
            nan.vectors_mut()[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
            assert!(UserIndex::from_state(nan).is_err());
            let mut cut = state.clone();
            let g = cut.graph_bytes_mut();
            g.truncate(g.len() / 2);
            assert!(UserIndex::from_state(cut).is_err());
            let mut absent = state.clone();
            absent.present[0] = false;
            assert!(UserIndex::from_state(absent).is_err());
            for ef in [0, MAX_EF + 1] {
                let mut s = state.clone();
                s.ef_search = ef;
                assert!(UserIndex::from_state(s).is_err());
            }
            let mut other = state.clone();
            *other.graph_backend_mut() = match state.config.backend {
                Backend::Usearch => Backend::HnswRs,
                Backend::HnswRs => Backend::Usearch,
            };
            assert!(UserIndex::from_state(other).is_err());
            // Asking for the other backend drops the graph and rebuilds.
            let mut moved = state.clone();
            let target = match state.config.backend {
                Backend::Usearch => Backend::HnswRs,
                Backend::HnswRs => Backend::Usearch,
            };
            moved.set_backend(target);
            let moved = UserIndex::from_state(moved).expect("rebuilt");
            assert_eq!(moved.stats().backend, target);
            assert_eq!(moved.len(), 49);
        }
    }
}
