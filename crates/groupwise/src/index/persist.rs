//! The index as serializable data, for snapshots.
//!
//! The vectors, ids and tombstones are always stored. The HNSW graph is
//! stored too when asked (hnsw_rs's own dump, two files carried as byte
//! blobs), so loading does not re-insert every user: at 100k users loading
//! the graph takes seconds where rebuilding it takes minutes (numbers in
//! BENCHMARKS.md). Without it the graph is rebuilt from the live vectors.
//!
//! hnsw_rs parses its dump with assertions and, on a malformed data record,
//! exits the process. It only ever sees bytes whose checksum the snapshot
//! verified (see [`crate::engine`]), so damaged files are refused before that;
//! a file crafted to carry a valid checksum over a malformed graph is outside
//! what a checksum can catch, and is why snapshots are trusted input.

use std::collections::HashMap;
use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;
use serde::{Deserialize, Serialize};

use super::{new_graph, CosineDistance, IndexConfig, Inner, UserIndex};
use crate::error::{Error, Result};

/// hnsw_rs's two dump files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GraphFiles {
    #[serde(with = "serde_bytes")]
    graph: Vec<u8>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Everything a [`UserIndex`] holds, as serializable data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexState {
    config: IndexConfig,
    ef_search: usize,
    rebuilds: u64,
    /// External id of each slot (slot = hnsw_rs data id).
    ids: Vec<u64>,
    /// Whether each slot is live.
    alive: Vec<bool>,
    /// Row-major unit vectors, little-endian f32, one row per slot.
    #[serde(with = "serde_bytes")]
    vectors: Vec<u8>,
    /// The HNSW graph over the slots, when stored.
    graph: Option<GraphFiles>,
}

impl IndexState {
    /// Live users.
    pub fn live(&self) -> usize {
        self.alive.iter().filter(|&&a| a).count()
    }

    /// Whether the HNSW graph is stored (else it is rebuilt on load).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }
}

fn invalid(problem: impl Into<String>) -> Error {
    Error::invalid("index state", problem)
}

const BASENAME: &str = "graph";

impl UserIndex {
    /// The index as data. With `store_graph` (and a graph built), the HNSW
    /// graph is included; otherwise only live users are kept and the graph is
    /// rebuilt on load. Holds the read lock while copying.
    pub fn export_state(&self, store_graph: bool) -> Result<IndexState> {
        let inner = self.inner.read();
        let dim = self.config.dim;
        let store_graph = store_graph && self.config.build_graph && !inner.ids.is_empty();
        let (ids, alive, rows): (Vec<u64>, Vec<bool>, Vec<usize>) = if store_graph {
            // The graph refers to every slot, tombstones included.
            (
                inner.ids.clone(),
                inner.alive.clone(),
                (0..inner.ids.len()).collect(),
            )
        } else {
            let rows: Vec<usize> = (0..inner.ids.len()).filter(|&s| inner.alive[s]).collect();
            (
                rows.iter().map(|&s| inner.ids[s]).collect(),
                vec![true; rows.len()],
                rows,
            )
        };
        let mut vectors = Vec::with_capacity(rows.len() * dim * 4);
        for &s in &rows {
            for x in &inner.data[s * dim..(s + 1) * dim] {
                vectors.extend_from_slice(&x.to_le_bytes());
            }
        }
        let graph = if store_graph {
            Some(dump_graph(&inner.graph)?)
        } else {
            None
        };
        Ok(IndexState {
            config: self.config.clone(),
            ef_search: self.ef_search(),
            rebuilds: inner.rebuilds,
            ids,
            alive,
            vectors,
            graph,
        })
    }

    /// An index holding `state`, after checking it: lengths agree, vectors
    /// are finite and unit-length, live ids are unique. The stored graph is
    /// loaded, or rebuilt when absent.
    pub fn from_state(state: IndexState) -> Result<UserIndex> {
        let dim = state.config.dim;
        let index = UserIndex::new(state.config)?;
        let slots = state.ids.len();
        if state.alive.len() != slots || state.vectors.len() != slots * dim * 4 {
            return Err(invalid(format!(
                "{slots} ids, {} liveness flags and {} vector bytes do not agree (dimension {dim})",
                state.alive.len(),
                state.vectors.len()
            )));
        }
        let data: Vec<f32> = state
            .vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut slot_of = HashMap::with_capacity(slots);
        for (s, row) in data.chunks_exact(dim.max(1)).enumerate() {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if !(norm - 1.0).abs().lt(&1e-3) {
                return Err(invalid(format!(
                    "the vector of slot {s} (user {}) is not a finite unit vector",
                    state.ids[s]
                )));
            }
            if state.alive[s] && slot_of.insert(state.ids[s], s).is_some() {
                return Err(invalid(format!("user {} is live twice", state.ids[s])));
            }
        }
        let tombstones = slots - slot_of.len();
        let mut inner = index.inner.write();
        inner.ids = state.ids;
        inner.alive = state.alive;
        inner.data = data;
        inner.slot_of = slot_of;
        inner.tombstones = tombstones;
        inner.rebuilds = state.rebuilds;
        match state.graph {
            Some(files) if index.config.build_graph => {
                inner.graph = load_graph(&files, slots)?;
            }
            _ => rebuild_graph(&index.config, &mut inner),
        }
        drop(inner);
        index
            .ef_search
            .store(state.ef_search.max(1), std::sync::atomic::Ordering::Relaxed);
        Ok(index)
    }
}

/// Inserts every slot into a new graph (tombstones included, so slots keep
/// their meaning).
fn rebuild_graph(config: &IndexConfig, inner: &mut Inner) {
    let dim = config.dim;
    let graph = new_graph(config, inner.ids.len().max(config.capacity_hint));
    if config.build_graph && !inner.ids.is_empty() {
        let batch: Vec<(&[f32], usize)> = (0..inner.ids.len())
            .map(|s| (&inner.data[s * dim..(s + 1) * dim], s))
            .collect();
        graph.parallel_insert_slice(&batch);
    }
    inner.graph = graph;
}

/// A scratch folder for hnsw_rs's dump files, named so that the next one
/// removes those left by crashed processes.
fn scratch_dir() -> Result<tempfile::TempDir> {
    let tmp = std::env::temp_dir();
    crate::frame::sweep_leftovers(&tmp, SCRATCH);
    tempfile::Builder::new()
        .prefix(&crate::frame::temp_prefix(SCRATCH))
        .tempdir()
        .map_err(|e| Error::io(tmp, e))
}

const SCRATCH: &str = "groupwise-hnsw";

fn dump_graph(graph: &Hnsw<'static, f32, CosineDistance>) -> Result<GraphFiles> {
    let dir = scratch_dir()?;
    let name = graph
        .file_dump(dir.path(), BASENAME)
        .map_err(|e| invalid(format!("hnsw_rs could not dump the graph: {e}")))?;
    let read = |ext: &str| {
        let p = dir.path().join(format!("{name}.hnsw.{ext}"));
        std::fs::read(&p).map_err(|e| Error::io(p, e))
    };
    Ok(GraphFiles {
        graph: read("graph")?,
        data: read("data")?,
    })
}

fn load_graph(files: &GraphFiles, slots: usize) -> Result<Hnsw<'static, f32, CosineDistance>> {
    let dir = scratch_dir()?;
    let write = |ext: &str, bytes: &[u8]| {
        let p = dir.path().join(format!("{BASENAME}.hnsw.{ext}"));
        std::fs::write(&p, bytes).map_err(|e| Error::io(p, e))
    };
    write("graph", &files.graph)?;
    write("data", &files.data)?;
    let loaded = std::panic::catch_unwind(|| load_from_dir(dir.path())).map_err(|_| {
        invalid("hnsw_rs refused the stored graph (it panicked while reading it)")
    })??;
    let points = loaded.get_nb_point();
    if points != slots {
        return Err(invalid(format!(
            "the stored graph has {points} points for {slots} slots"
        )));
    }
    Ok(loaded)
}

fn load_from_dir(dir: &Path) -> Result<Hnsw<'static, f32, CosineDistance>> {
    let mut io = HnswIo::new(dir, BASENAME);
    let graph: Hnsw<'_, f32, CosineDistance> = io
        .load_hnsw()
        .map_err(|e| invalid(format!("hnsw_rs could not read the stored graph: {e}")))?;
    // SAFETY: `Hnsw<'b, ..>` only borrows from the loader when it reloads
    // through a memory map (`ReloadOptions::datamap`); `HnswIo::new` uses the
    // default options (no map), so every point owns its vector
    // (`PointData::V`) and nothing in `graph` refers to `io`. The two types
    // differ only in that lifetime, so the layout is the same. hnsw_rs is
    // pinned to an exact version (=0.3.5) whose loader was read for this.
    Ok(unsafe {
        std::mem::transmute::<Hnsw<'_, f32, CosineDistance>, Hnsw<'static, f32, CosineDistance>>(
            graph,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn round_trip_with_and_without_the_graph_answers_the_same() {
        let dim = 8;
        let mut config = IndexConfig::new(dim);
        config.exact_below = 0; // force the graph path
        let index = UserIndex::new(config).expect("config");
        let (ids, v) = population(600, dim);
        index.upsert_batch(&ids, &v).expect("upsert");
        index.delete(ids[5]).expect("delete");
        let opts = SearchOptions::default();
        let before: Vec<_> = ids[10..60]
            .iter()
            .map(|&u| index.neighbors(u, 10, &opts).ok())
            .collect();
        for store in [true, false] {
            let state = index.export_state(store).expect("export");
            assert_eq!(state.has_graph(), store);
            let bytes = rmp_serde::to_vec(&state).expect("serialize");
            let back: IndexState = rmp_serde::from_slice(&bytes).expect("decode");
            let loaded = UserIndex::from_state(back).expect("load");
            assert_eq!(loaded.len(), index.len());
            assert!(!loaded.contains(ids[5]));
            let after: Vec<_> = ids[10..60]
                .iter()
                .map(|&u| loaded.neighbors(u, 10, &opts).ok())
                .collect();
            if store {
                // Same graph, same vectors: identical answers.
                assert_eq!(after, before);
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
                assert!(same as f64 >= 0.9 * 500.0, "{same} of 500 neighbours kept");
            }
        }
    }

    #[test]
    fn from_state_refuses_inconsistent_states() {
        let index = UserIndex::new(IndexConfig::new(4)).expect("config");
        index
            .upsert_batch(&[1, 2], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
            .expect("upsert");
        let state = index.export_state(true).expect("export");
        let mut short = state.clone();
        short.vectors.pop();
        assert!(UserIndex::from_state(short).is_err());
        let mut dup = state.clone();
        dup.ids[1] = 1;
        assert!(UserIndex::from_state(dup).is_err());
        let mut nan = state.clone();
        nan.vectors[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(UserIndex::from_state(nan).is_err());
        let mut graph = state;
        if let Some(g) = graph.graph.as_mut() {
            g.graph.truncate(g.graph.len() / 2);
        }
        assert!(UserIndex::from_state(graph).is_err());
    }
}
