//! The hnsw_rs backend: hnsw_rs's HNSW graph, data id = slot.
//!
//! hnsw_rs cannot remove a point: the index keeps removed slots as
//! tombstones (filtered out of results) until it rebuilds the graph. Its
//! distance is [`CosineDistance`] (it panics on NaN and asserts distances
//! are not negative). Searches take `k` and `ef` as hnsw_rs does.
//!
//! **Snapshots** carry hnsw_rs's own dump (two files, framed as
//! `[u64 graph length][graph file][data file]`). hnsw_rs parses a dump
//! trusting every length in it: a malformed dump makes it allocate what a
//! length says (aborting the process when that is absurd) or exit the
//! process. [`check_dump`] walks both files first with every length, count
//! and reference bounds-checked and the dump's copy of each vector compared
//! with the index's, so hnsw_rs only ever reads a well-formed dump; its
//! remaining assertions are caught as errors. Loading goes through a
//! scratch folder (hnsw_rs reads files), named so that the next load removes
//! those left by crashed processes.

use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;

use super::{invalid, Backend, CosineDistance, Graph, Params};
use crate::error::{Error, Result};

/// The graph format version this build writes: hnsw_rs 0.3.5's dump, framed.
pub(super) const FORMAT: u32 = 1;

/// hnsw_rs requires exactly 16 layers for its dump format.
const MAX_LAYERS: usize = 16;

/// The largest capacity reserved up front (hnsw_rs allocates for it).
const MAX_RESERVE: usize = 1 << 28;

const BASENAME: &str = "graph";
const SCRATCH: &str = "groupwise-hnsw";

pub(super) struct HnswRsGraph {
    graph: Hnsw<'static, f32, CosineDistance>,
    params: Params,
}

impl HnswRsGraph {
    pub(super) fn new(params: Params, capacity: usize) -> HnswRsGraph {
        HnswRsGraph {
            graph: Hnsw::new(
                params.m,
                capacity.clamp(1, MAX_RESERVE),
                MAX_LAYERS,
                params.ef_construction,
                CosineDistance,
            ),
            params,
        }
    }

    /// A graph from its framed dump, checked against the index's vectors.
    pub(super) fn load(
        params: Params,
        bytes: &[u8],
        rows: &[f32],
        present: &[bool],
    ) -> Result<HnswRsGraph> {
        let (graph, data) = unframe(bytes)?;
        check_dump(graph, data, rows, present, params.dim)?;
        let dir = scratch_dir()?;
        let write = |ext: &str, bytes: &[u8]| {
            let p = dir.path().join(format!("{BASENAME}.hnsw.{ext}"));
            std::fs::write(&p, bytes).map_err(|e| Error::io(p, e))
        };
        write("graph", graph)?;
        write("data", data)?;
        let loaded = std::panic::catch_unwind(|| load_from_dir(dir.path())).map_err(|_| {
            invalid("hnsw_rs refused the stored graph (it panicked while reading it)")
        })??;
        let want = present.iter().filter(|&&p| p).count();
        if loaded.get_nb_point() != want {
            return Err(invalid(format!(
                "the stored graph has {} points for {want} slots",
                loaded.get_nb_point()
            )));
        }
        Ok(HnswRsGraph {
            graph: loaded,
            params,
        })
    }

    /// The two dump files of a format-1 snapshot, framed as this backend
    /// stores them.
    pub(crate) fn frame(graph: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + graph.len() + data.len());
        out.extend_from_slice(&(graph.len() as u64).to_le_bytes());
        out.extend_from_slice(graph);
        out.extend_from_slice(data);
        out
    }
}

fn unframe(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| invalid("the stored hnsw_rs graph is truncated"))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= bytes.len() - 8)
        .ok_or_else(|| invalid("the stored hnsw_rs graph's length is out of range"))?;
    Ok((&bytes[8..8 + len], &bytes[8 + len..]))
}

impl Graph for HnswRsGraph {
    fn backend(&self) -> Backend {
        Backend::HnswRs
    }

    fn prepare_write(&mut self, _slots: usize) -> Result<()> {
        Ok(())
    }

    fn insert(&self, slot: usize, vector: &[f32]) -> Result<()> {
        self.graph.insert_slice((vector, slot));
        Ok(())
    }

    fn remove(&self, _slot: usize) -> Result<bool> {
        Ok(false)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Result<Vec<usize>> {
        let hits = match keep {
            Some(keep) => {
                let pred = |d: &usize| keep(*d);
                self.graph.search_filter(query, k, ef.max(k), Some(&pred))
            }
            None => self.graph.search(query, k, ef.max(k)),
        };
        Ok(hits.into_iter().map(|n| n.d_id).collect())
    }

    fn base_layer(&self, slots: usize) -> Vec<Vec<u32>> {
        let mut base: Vec<Vec<u32>> = vec![Vec::new(); slots];
        for point in self.graph.get_point_indexation() {
            let slot = point.get_origin_id();
            if let (Some(list), Some(layer0)) = (
                base.get_mut(slot),
                point.get_neighborhood_id().into_iter().next(),
            ) {
                *list = layer0.iter().map(|n| n.d_id as u32).collect();
            }
        }
        base
    }

    fn memory_bytes(&self) -> usize {
        // hnsw_rs does not report it: its vector copy, 2M base-layer links
        // of 16 bytes (an Arc and a distance) and about 100 bytes of
        // per-point bookkeeping.
        self.graph.get_nb_point() * (self.params.dim * 4 + 2 * self.params.m * 16 + 100)
    }

    fn is_mapped(&self) -> bool {
        false
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        let dir = scratch_dir()?;
        let name = self
            .graph
            .file_dump(dir.path(), BASENAME)
            .map_err(|e| invalid(format!("hnsw_rs could not dump the graph: {e}")))?;
        let read = |ext: &str| {
            let p = dir.path().join(format!("{name}.hnsw.{ext}"));
            std::fs::read(&p).map_err(|e| Error::io(p, e))
        };
        Ok(HnswRsGraph::frame(&read("graph")?, &read("data")?))
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

/// Checks that hnsw_rs's two dump files are well formed, holding exactly
/// the slots marked in `present`, of dimension `dim`, whose vectors are
/// `vectors` (row-major, the index's own copy, already checked), before
/// hnsw_rs reads them (see the module docs). The dump's copy of each vector must be the index's, bit for
/// bit: the graph searches with it.
fn check_dump(
    graph: &[u8],
    data: &[u8],
    vectors: &[f32],
    present: &[bool],
    dim: usize,
) -> Result<()> {
    let slots = present.len();
    let points_expected = present.iter().filter(|&&p| p).count();
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
    if layers != LAYERS || points != points_expected || dimension != dim || magic != MAGIC_DESCR_4 {
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
            if origin >= slots
                || !present[origin]
                || seen[origin]
                || layer != l
                || rank as usize != r
            {
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
    if per_layer.iter().sum::<usize>() != points_expected {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            dim: 4,
            m: 8,
            ef_construction: 32,
            precision: super::super::Precision::F32,
        }
    }

    #[test]
    fn every_single_byte_change_to_a_dump_is_refused_or_loads_consistently() {
        let rows: Vec<f32> = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]
        .concat();
        // Slot 1 is not in the graph (a free slot).
        let present = [true, false, true];
        let g = HnswRsGraph::new(params(), 4);
        g.insert(0, &rows[0..4]).expect("insert");
        g.insert(2, &rows[8..12]).expect("insert");
        let bytes = g.to_bytes().expect("dump");
        let back = HnswRsGraph::load(params(), &bytes, &rows, &present).expect("load");
        assert_eq!(
            back.search(&rows[8..12], 1, 8, None).expect("search"),
            vec![2]
        );
        assert!(HnswRsGraph::load(params(), &bytes, &rows, &[true, true, true]).is_err());
        let mut other = rows.clone();
        other[0] = 0.0;
        other[3] = 1.0;
        let err = HnswRsGraph::load(params(), &bytes, &other, &present)
            .err()
            .expect("differs");
        assert!(err.to_string().contains("copy of a vector"), "{err}");
        for at in 0..bytes.len() {
            for value in [0u8, 0xff, 0x7f] {
                let mut b = bytes.clone();
                b[at] = value;
                if let Ok(loaded) = HnswRsGraph::load(params(), &b, &rows, &present) {
                    let found = loaded.search(&rows[0..4], 2, 8, None).expect("search");
                    assert!(found.iter().all(|&s| s == 0 || s == 2));
                }
            }
        }
        for len in 0..bytes.len() {
            assert!(HnswRsGraph::load(params(), &bytes[..len], &rows, &present).is_err());
        }
    }
}
