//! The index as serializable data, for snapshots.
//!
//! The vectors, ids and tombstones are always stored. The HNSW graph is
//! stored too when asked (hnsw_rs's own dump, two files carried as byte
//! blobs), so loading does not re-insert every user: at 100k users loading
//! the graph takes seconds where rebuilding it takes minutes (numbers in
//! BENCHMARKS.md). Without it the graph is rebuilt from the live vectors.
//!
//! hnsw_rs parses its dump trusting every length in it: a malformed dump
//! makes it allocate what a length says (aborting the process when that is
//! absurd) or exit the process. Damaged snapshots are refused by their
//! checksum before that; and because a checksum is no defence against a
//! crafted file, [`check_dump`] walks both dump files first with every
//! length, count and reference bounds-checked, so hnsw_rs only ever reads a
//! well-formed dump (its remaining assertions are caught as errors).

use std::collections::HashMap;
use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;
use serde::{Deserialize, Serialize};

use super::{graph_of, CosineDistance, IndexConfig, UserIndex};
use crate::error::{Error, Result};
use crate::limits::MAX_EF;

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

    /// An index holding `state`, after checking it: the config in its
    /// ranges, lengths agree, vectors are finite and unit-length, live ids
    /// are unique, and a stored graph is well formed and holds the same
    /// vectors. The stored graph is loaded, or rebuilt when absent.
    pub fn from_state(state: IndexState) -> Result<UserIndex> {
        let dim = state.config.dim;
        state.config.validate()?;
        if !(1..=MAX_EF).contains(&state.ef_search) {
            return Err(invalid(format!(
                "its search width {} is not in 1..={MAX_EF}",
                state.ef_search
            )));
        }
        // The empty graph made here is replaced below: reserve nothing for it.
        let config = state.config.clone();
        let mut index = UserIndex::new(IndexConfig {
            capacity_hint: 1,
            ..state.config
        })?;
        index.config = config;
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
                inner.graph = load_graph(&files, &inner.data, slots, dim)?;
            }
            // Every slot, tombstones included, so slots keep their meaning.
            _ => inner.graph = graph_of(&index.config, &inner.data, inner.ids.len()),
        }
        drop(inner);
        index
            .ef_search
            .store(state.ef_search, std::sync::atomic::Ordering::Relaxed);
        Ok(index)
    }
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

fn load_graph(
    files: &GraphFiles,
    vectors: &[f32],
    slots: usize,
    dim: usize,
) -> Result<Hnsw<'static, f32, CosineDistance>> {
    check_dump(&files.graph, &files.data, vectors, slots, dim)?;
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

/// hnsw_rs 0.3.5's dump format constants (`hnswio.rs`).
const MAGIC_DESCR: [u32; 3] = [0x002a_677f, 0x002a_6771, 0x002a_6779];
const MAGIC_DESCR_4: u32 = 0x002a_6779;
const MAGIC_LAYER: u32 = 0x000a_676f;
const MAGIC_POINT: u32 = 0x000a_678f;
const MAGIC_DATA: u32 = 0xa67f_0000;
const LAYERS: u8 = 16;

/// A bounds-checked reader over one dump file.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(invalid(format!(
                "the stored graph's {} file ends early (at byte {})",
                self.what, self.at
            )));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_ne_bytes(a))
    }

    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| invalid("a length does not fit in memory"))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// A count of records of at least `record` bytes each that must fit in
    /// what is left of the file.
    fn count(&mut self, record: usize, of: &str) -> Result<usize> {
        let n = self.usize()?;
        if n.checked_mul(record).is_none_or(|b| b > self.remaining()) {
            return Err(invalid(format!(
                "the stored graph claims {n} {of}, more than its {} file holds",
                self.what
            )));
        }
        Ok(n)
    }
}

/// Checks that hnsw_rs's two dump files are well formed, for `slots`
/// points of dimension `dim` whose vectors are `vectors` (row-major, the
/// index's own copy, already checked), before hnsw_rs reads them (see the
/// module docs). The dump's copy of each vector must be the index's, bit for
/// bit: the graph searches with it.
fn check_dump(graph: &[u8], data: &[u8], vectors: &[f32], slots: usize, dim: usize) -> Result<()> {
    if vectors.len() != slots * dim {
        return Err(invalid(
            "the stored graph does not match the index's vectors",
        ));
    }
    let mut g = Cursor {
        bytes: graph,
        at: 0,
        what: "graph",
    };
    let mut d = Cursor {
        bytes: data,
        at: 0,
        what: "data",
    };
    let bad = |problem: &str| Err(invalid(format!("the stored graph is malformed: {problem}")));
    // Description.
    let magic = g.u32()?;
    if !MAGIC_DESCR.contains(&magic) {
        return bad("bad description magic");
    }
    let mode = g.u8()?;
    g.u8()?; // max connections
    if magic == MAGIC_DESCR_4 {
        g.take(8)?; // level scale
    }
    let layers = g.u8()?;
    g.usize()?; // ef
    let points = g.usize()?;
    let dimension = g.usize()?;
    if layers != LAYERS || points != slots || dimension != dim || magic != MAGIC_DESCR_4 {
        return bad("its description does not match the index");
    }
    for _ in 0..2 {
        // Distance and type names.
        let len = g.usize()?;
        if len > 256 || std::str::from_utf8(g.take(len)?).is_err() {
            return bad("a name in its description");
        }
    }
    if d.u32()? != MAGIC_DATA || d.usize()? != dim {
        return bad("the data file's header");
    }
    // Points, layer by layer; the data file lists them in the same order.
    let link = 8 + if mode == 1 { 5 } else { 0 } + 4;
    let stored_layers = g.u8()?;
    if stored_layers > LAYERS {
        return bad("too many layers");
    }
    let mut per_layer = Vec::with_capacity(usize::from(stored_layers));
    let mut seen = vec![false; slots];
    let mut links: Vec<(u8, i32)> = Vec::new();
    for l in 0..stored_layers {
        if g.u32()? != MAGIC_LAYER {
            return bad("bad layer magic");
        }
        let n = g.count(4 + 8 + 1 + 4 + 8 * usize::from(layers), "points")?;
        for r in 0..n {
            if g.u32()? != MAGIC_POINT {
                return bad("bad point magic");
            }
            let origin = g.usize()?;
            let (layer, rank) = (g.u8()?, g.u32()?);
            if origin >= slots || seen[origin] || layer != l || rank as usize != r {
                return bad("a point's id or position");
            }
            seen[origin] = true;
            for _ in 0..layers {
                let k = g.count(link, "neighbours")?;
                for _ in 0..k {
                    if g.usize()? >= slots {
                        return bad("a neighbour's id");
                    }
                    if mode == 1 {
                        let (nl, nr) = (g.u8()?, g.u32()?);
                        links.push((nl, nr as i32));
                    }
                    g.take(4)?; // distance
                }
            }
            let record = (d.u32()?, d.usize()?, d.usize()?);
            if record != (MAGIC_DATA, origin, dim * 4) {
                return bad("a data record does not match its point");
            }
            let stored = d.take(dim * 4)?;
            let own = &vectors[origin * dim..(origin + 1) * dim];
            let same = stored
                .chunks_exact(4)
                .zip(own)
                .all(|(b, x)| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) == x.to_bits());
            if !same {
                return bad("its copy of a vector differs from the index's");
            }
        }
        per_layer.push(n);
    }
    if per_layer.iter().sum::<usize>() != slots {
        return bad("it does not hold every slot");
    }
    let valid = |l: u8, r: i32| {
        per_layer
            .get(usize::from(l))
            .is_some_and(|&n| r >= 0 && (r as usize) < n)
    };
    if links.iter().any(|&(l, r)| !valid(l, r)) {
        return bad("a neighbour's position");
    }
    // Entry point.
    g.usize()?;
    let (l, r) = (g.u8()?, g.u32()?);
    if !valid(l, r as i32) {
        return bad("its entry point");
    }
    Ok(())
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

/// Ways to damage a state, for the tests of the checks above (here and in
/// the engine's snapshot tests).
#[cfg(test)]
impl IndexState {
    pub(crate) fn ids_mut(&mut self) -> &mut Vec<u64> {
        &mut self.ids
    }

    pub(crate) fn alive_mut(&mut self) -> &mut Vec<bool> {
        &mut self.alive
    }

    pub(crate) fn vectors_mut(&mut self) -> &mut Vec<u8> {
        &mut self.vectors
    }

    pub(crate) fn ef_search_mut(&mut self) -> &mut usize {
        &mut self.ef_search
    }

    /// Sets the first component of `slot`'s vector in the stored graph's
    /// own copy (the dump's data file) to `value`.
    pub(crate) fn set_graph_copy(&mut self, slot: usize, value: f32) {
        let dim = self.config.dim;
        let data = &mut self.graph.as_mut().expect("a stored graph").data;
        let mut at = 4 + 8;
        loop {
            let origin = u64::from_ne_bytes(data[at + 4..at + 12].try_into().expect("8 bytes"));
            let start = at + 4 + 8 + 8;
            if origin as usize == slot {
                data[start..start + 4].copy_from_slice(&value.to_ne_bytes());
                return;
            }
            at = start + dim * 4;
        }
    }
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
        let mut graph = state.clone();
        if let Some(g) = graph.graph.as_mut() {
            g.graph.truncate(g.graph.len() / 2);
        }
        assert!(UserIndex::from_state(graph).is_err());
        // The graph's own copy of a vector must be the index's.
        for value in [f32::NEG_INFINITY, f32::NAN, 0.5, 1.0 - f32::EPSILON] {
            let mut copy = state.clone();
            copy.set_graph_copy(1, value);
            let err = UserIndex::from_state(copy).expect_err("differs");
            assert!(err.to_string().contains("copy of a vector"), "{err}");
        }
        for ef in [0, MAX_EF + 1] {
            let mut s = state.clone();
            s.ef_search = ef;
            assert!(UserIndex::from_state(s).is_err());
        }
        // Every single-byte change to either dump file is refused or loads
        // a consistent index; none reaches hnsw_rs's aborting paths.
        let files = state.graph.clone().expect("graph stored");
        let vectors: Vec<f32> = state
            .vectors
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!(check_dump(&files.graph, &files.data, &vectors, 2, 4).is_ok());
        for (which, len) in [(0, files.graph.len()), (1, files.data.len())] {
            for at in 0..len {
                for value in [0u8, 0xff, 0x7f] {
                    let mut f = files.clone();
                    let bytes = if which == 0 {
                        &mut f.graph
                    } else {
                        &mut f.data
                    };
                    bytes[at] = value;
                    let mut s = state.clone();
                    s.graph = Some(f);
                    if let Ok(index) = UserIndex::from_state(s) {
                        assert_eq!(index.len(), 2);
                    }
                }
            }
        }
    }
}
