//! The user index: external `u64` user ids → unit embedding vectors, with
//! approximate k-nearest-neighbour search by HNSW and an exact path.
//!
//! # What is the index's own, and what is the backend's
//!
//! The index keeps the id ↔ slot map, the vectors (once, as f32: one row per
//! slot), the exact path, filters, calibration and the rebuild policy. The
//! approximate part is an HNSW graph over the slots behind the [`backend`]
//! seam: [`Backend::Usearch`] by default, [`Backend::HnswRs`] on request
//! ([`IndexConfig::backend`]). Every candidate a graph returns is re-scored
//! exactly against the index's own vectors, so similarities are exact
//! whatever the graph's [`Precision`]. BENCHMARKS.md measures both backends
//! against hnswlib and faiss; the README says how to choose.
//!
//! * **Upsert and delete.** A new or replaced vector goes into a free slot
//!   (or a new one). A deleted or replaced user's slot is removed from the
//!   graph where the backend can (usearch) and freed for reuse; where it
//!   cannot (hnsw_rs) it stays as a *tombstone*, filtered out of results,
//!   until tombstones pass [`IndexConfig::rebuild_tombstone_fraction`] of
//!   the graph and the graph is rebuilt.
//! * **Cosine that cannot fail.** Vectors are checked (dimension, finite, not
//!   zero) and normalised on the way in.
//! * **Filters that stay fast and correct.** An allow-list or a predicate is
//!   served by the graph when it keeps a good share of users, and by an exact
//!   scan of the allowed users when it is selective (graph search degrades
//!   badly there). If the graph returns fewer than `k` results, the exact
//!   path fills in.
//! * **An exact path** for small populations, selective filters, and ground
//!   truth.
//!
//! # Concurrency
//!
//! `UserIndex` is `Send + Sync`. Searches run in parallel under shared
//! locks. Writers (upserts, deletes) take turns among themselves, and hold
//! the index's exclusive locks only to place rows and to publish them:
//! inserting into the graph, the slow part, runs beside searches (a user
//! becomes visible when its insert is published, all of a batch at once).
//! A rebuild builds the new graph beside the live one from a copy of the
//! live rows, with no lock held, then replays what changed meanwhile and
//! swaps it in: upserts, deletes and searches never wait for it.

pub mod backend;
mod exact;
mod knn;
mod persist;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

pub use backend::{Backend, CosineDistance, Precision};
pub(crate) use persist::IndexStateV1;
pub use persist::{IndexState, StoredGraph};

use crate::error::{Error, Result};
use crate::limits::{self, MAX_DIM, MAX_EF};
use crate::vector::{dot, normalized};
use backend::{Graph, Params};
use exact::Scored;

/// The largest [`IndexConfig::capacity_hint`]: backends reserve memory
/// for it up front.
const MAX_CAPACITY_HINT: usize = 1 << 28;

/// The largest number of slots (usearch keys and hnsw_rs ids are slots;
/// usearch addresses nodes with 32-bit numbers).
const MAX_SLOTS: usize = (u32::MAX - 1) as usize;

/// Parameters of the user index.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Embedding dimension (required; 1..=[`MAX_DIM`]).
    pub dim: usize,
    /// HNSW links per node and layer (`M`, 4..=255; the base layer has
    /// `2 M`). Default 24.
    pub max_connections: usize,
    /// Candidate list size while building (`efConstruction`, 1..=[`MAX_EF`]).
    /// Default 200.
    pub ef_construction: usize,
    /// Default candidate list size while searching (`ef`, 1..=[`MAX_EF`]);
    /// raised to `k` when smaller. Default 64; [`UserIndex::calibrate_ef`]
    /// finds the smallest that reaches a target recall (BENCHMARKS.md).
    pub ef_search: usize,
    /// Expected number of users (an allocation hint, not a limit;
    /// 0..=2^28: reserved up front). Default 10,000.
    pub capacity_hint: usize,
    /// Populations with at most this many live users are searched exactly
    /// (any value). On 64-d vectors an exact scan of 20k users answers as
    /// fast as a graph at `ef` 64 (BENCHMARKS.md), and it is always right.
    /// Default 16,384.
    pub exact_below: usize,
    /// A filter that keeps less than this share of users is served by an exact
    /// scan of the allowed users (in [0, 1]). Default 0.02.
    pub exact_selectivity: f64,
    /// Rebuild the graph when tombstones exceed this share of its nodes (in
    /// (0, 1]; only backends without real deletes, hnsw_rs, leave
    /// tombstones). Default 0.25.
    pub rebuild_tombstone_fraction: f64,
    /// Build the HNSW graph (default true). Without it the index is exact-only
    /// (every search is a scan, like a flat index): no build cost, always
    /// right, and fast enough for tens of thousands of users or batch jobs.
    pub build_graph: bool,
    /// The HNSW implementation (`"usearch"`, the default, or `"hnsw_rs"`).
    pub backend: Backend,
    /// The precision of the graph's own copy of the vectors (`"f32"`,
    /// `"f16"`, the default, or `"i8"`; usearch only: hnsw_rs keeps f32).
    /// The index's vectors, and so every similarity it returns, stay f32.
    pub graph_precision: Precision,
}

impl Default for IndexConfig {
    /// Defaults for 64-dimensional vectors (the reference encoders').
    fn default() -> Self {
        IndexConfig::new(64)
    }
}

impl IndexConfig {
    /// Defaults for vectors of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        IndexConfig {
            dim,
            max_connections: 24,
            ef_construction: 200,
            ef_search: 64,
            capacity_hint: 10_000,
            exact_below: 16_384,
            exact_selectivity: 0.02,
            rebuild_tombstone_fraction: 0.25,
            build_graph: true,
            backend: Backend::default(),
            graph_precision: Precision::default(),
        }
    }

    /// Checks every setting against its documented range (see the field
    /// docs and [`crate::limits`]); errors name the key as in an engine
    /// config (`index.ef_search`).
    pub(crate) fn validate(&self) -> Result<()> {
        limits::count("index.dim", self.dim, 1..=MAX_DIM)?;
        limits::count("index.max_connections", self.max_connections, 4..=255)?;
        limits::count("index.ef_construction", self.ef_construction, 1..=MAX_EF)?;
        limits::count("index.ef_search", self.ef_search, 1..=MAX_EF)?;
        limits::count(
            "index.capacity_hint",
            self.capacity_hint,
            0..=MAX_CAPACITY_HINT,
        )?;
        limits::probability("index.exact_selectivity", self.exact_selectivity)?;
        limits::real(
            "index.rebuild_tombstone_fraction",
            self.rebuild_tombstone_fraction,
            0.0,
            true,
            1.0,
        )?;
        Ok(())
    }

    fn params(&self) -> Params {
        Params {
            dim: self.dim,
            m: self.max_connections,
            ef_construction: self.ef_construction,
            precision: self.graph_precision,
        }
    }
}

/// Which users a search may return.
#[derive(Clone, Copy)]
pub enum Filter<'a> {
    /// Only these users.
    Allow(&'a HashSet<u64>),
    /// Every user except these.
    Deny(&'a HashSet<u64>),
    /// Users for which the predicate holds. It is called from several threads
    /// and may be called on a sample of users to estimate its selectivity.
    /// A predicate that panics during a graph search keeps nothing.
    Predicate(&'a (dyn Fn(u64) -> bool + Sync)),
}

impl std::fmt::Debug for Filter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Allow(s) => write!(f, "Allow({} ids)", s.len()),
            Filter::Deny(s) => write!(f, "Deny({} ids)", s.len()),
            Filter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

impl Filter<'_> {
    /// Whether the filter lets user `id` through.
    pub fn keeps(&self, id: u64) -> bool {
        match self {
            Filter::Allow(s) => s.contains(&id),
            Filter::Deny(s) => !s.contains(&id),
            Filter::Predicate(p) => p(id),
        }
    }
}

/// How to search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Graph or exact scan, whichever is faster for this population and filter.
    #[default]
    Auto,
    /// Always the HNSW graph (exact fill-in still applies if it returns too few).
    Approximate,
    /// Always an exact scan.
    Exact,
}

/// Options of a search.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchOptions<'a> {
    /// Candidate list size; `None` uses [`IndexConfig::ef_search`]. Raised
    /// to `k` and capped at the larger of `k` and [`MAX_EF`].
    pub ef: Option<usize>,
    /// Restrict the result to some users.
    pub filter: Option<Filter<'a>>,
    /// Graph, exact, or automatic.
    pub mode: SearchMode,
}

/// A search result: a user and its cosine similarity to the query (in [-1, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// External user id.
    pub id: u64,
    /// Cosine similarity to the query.
    pub similarity: f32,
}

/// Counters describing the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Users currently in the index.
    pub live: usize,
    /// Graph nodes of deleted or replaced users still in the graph
    /// (backends without real deletes).
    pub tombstones: usize,
    /// Graph rebuilds so far.
    pub rebuilds: u64,
    /// The graph's backend.
    pub backend: Backend,
    /// The precision of the graph's copy of the vectors.
    pub graph_precision: Precision,
    /// Bytes held: the index's vectors, ids and map, and the graph (for a
    /// memory-mapped graph, only what is not file-backed).
    pub memory_bytes: usize,
    /// Whether the graph reads a memory-mapped snapshot (until the first
    /// write copies it).
    pub mapped: bool,
}

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A live user's vector, in the graph.
    Live,
    /// Being inserted: in the store, maybe in the graph, not yet visible.
    Pending,
    /// A deleted or replaced vector still in the graph (a tombstone).
    Dead,
    /// Not in the graph: reusable.
    Free,
}

struct Inner {
    /// Row-major unit vectors, one per slot (free slots hold stale rows).
    data: Vec<f32>,
    /// External id of each slot.
    ids: Vec<u64>,
    state: Vec<Slot>,
    slot_of: HashMap<u64, usize>,
    /// Free slots, reused last-freed first.
    free: Vec<usize>,
    /// Slots in state `Dead`.
    tombstones: usize,
    rebuilds: u64,
}

impl Inner {
    fn row(&self, slot: usize, dim: usize) -> &[f32] {
        &self.data[slot * dim..(slot + 1) * dim]
    }

    /// Marks `slot` free (out of the graph) for reuse, zeroing its row: a
    /// deleted user's vector does not linger in memory or in snapshots.
    fn free_slot(&mut self, slot: usize, dim: usize) {
        self.state[slot] = Slot::Free;
        self.data[slot * dim..(slot + 1) * dim].fill(0.0);
        self.free.push(slot);
    }

    /// A slot for a new row: a free one (unless a rebuild runs: its replay
    /// relies on slots not changing their vector) or a new one.
    fn take_slot(&mut self, reuse: bool, dim: usize) -> Result<usize> {
        if reuse {
            if let Some(s) = self.free.pop() {
                return Ok(s);
            }
        }
        let s = self.ids.len();
        if s >= MAX_SLOTS {
            return Err(Error::invalid(
                "index",
                format!("the index is full ({MAX_SLOTS} slots)"),
            ));
        }
        self.ids.push(0);
        self.state.push(Slot::Free);
        self.data.resize(self.data.len() + dim, 0.0);
        Ok(s)
    }
}

/// Users' embeddings with approximate and exact nearest-neighbour search.
pub struct UserIndex {
    config: IndexConfig,
    /// The default search width in force (starts at `config.ef_search`;
    /// [`UserIndex::calibrate_ef`] changes it).
    ef_search: AtomicUsize,
    inner: RwLock<Inner>,
    /// `None` for an exact-only index. Lock order: `writer`, then `inner`,
    /// then `graph`.
    graph: RwLock<Option<Box<dyn Graph>>>,
    /// Writers take turns.
    writer: Mutex<()>,
    /// Set while a rebuild builds its graph.
    rebuilding: AtomicBool,
}

impl std::fmt::Debug for UserIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIndex")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A new graph holding the given slots' rows (in parallel), or `None`
/// for an exact-only index.
fn graph_of(
    config: &IndexConfig,
    rows: &[(usize, &[f32])],
    slots: usize,
) -> Result<Option<Box<dyn Graph>>> {
    if !config.build_graph {
        return Ok(None);
    }
    let mut graph = backend::new_graph(config.backend, config.params(), slots)?;
    graph.prepare_write(slots)?;
    insert_all(graph.as_ref(), rows)?;
    Ok(Some(graph))
}

/// Each slot with its row of `rows` (row-major, `dim` wide, in slot order).
fn paired<'a>(slots: &[usize], rows: &'a [f32], dim: usize) -> Vec<(usize, &'a [f32])> {
    slots
        .iter()
        .zip(rows.chunks_exact(dim.max(1)))
        .map(|(&s, r)| (s, r))
        .collect()
}

fn insert_all(graph: &dyn Graph, rows: &[(usize, &[f32])]) -> Result<()> {
    if rows.len() == 1 {
        return graph.insert(rows[0].0, rows[0].1);
    }
    rows.par_iter().try_for_each(|&(s, v)| graph.insert(s, v))
}

impl UserIndex {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Self> {
        config.validate()?;
        let graph = if config.build_graph {
            Some(backend::new_graph(
                config.backend,
                config.params(),
                config.capacity_hint,
            )?)
        } else {
            None
        };
        Ok(Self::assemble(
            config,
            Inner {
                data: Vec::new(),
                ids: Vec::new(),
                state: Vec::new(),
                slot_of: HashMap::new(),
                free: Vec::new(),
                tombstones: 0,
                rebuilds: 0,
            },
            graph,
        ))
    }

    fn assemble(config: IndexConfig, inner: Inner, graph: Option<Box<dyn Graph>>) -> UserIndex {
        UserIndex {
            ef_search: AtomicUsize::new(config.ef_search),
            config,
            inner: RwLock::new(inner),
            graph: RwLock::new(graph),
            writer: Mutex::new(()),
            rebuilding: AtomicBool::new(false),
        }
    }

    /// The default search width in force (see [`calibrate_ef`](Self::calibrate_ef)).
    pub fn ef_search(&self) -> usize {
        self.ef_search.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Number of live users.
    pub fn len(&self) -> usize {
        self.inner.read().slot_of.len()
    }

    /// True when no user is in the index.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is in the index.
    pub fn contains(&self, id: u64) -> bool {
        self.inner.read().slot_of.contains_key(&id)
    }

    /// The stored (unit-length) vector of a user.
    pub fn vector(&self, id: u64) -> Option<Vec<f32>> {
        let inner = self.inner.read();
        inner
            .slot_of
            .get(&id)
            .map(|&s| inner.row(s, self.config.dim).to_vec())
    }

    /// Live user ids, in slot order.
    pub fn ids(&self) -> Vec<u64> {
        let inner = self.inner.read();
        inner
            .ids
            .iter()
            .zip(&inner.state)
            .filter_map(|(&id, &st)| (st == Slot::Live).then_some(id))
            .collect()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> IndexStats {
        let inner = self.inner.read();
        let graph = self.graph.read();
        let own = inner.data.capacity() * 4
            + inner.ids.capacity() * 8
            + inner.state.capacity()
            + inner.free.capacity() * 8
            // A hash map entry: key, value and a control byte, at 7/8 load.
            + inner.slot_of.capacity() * 17 * 8 / 7;
        IndexStats {
            live: inner.slot_of.len(),
            tombstones: inner.tombstones,
            rebuilds: inner.rebuilds,
            backend: self.config.backend,
            graph_precision: self.config.graph_precision,
            memory_bytes: own + graph.as_ref().map_or(0, |g| g.memory_bytes()),
            mapped: graph.as_ref().is_some_and(|g| g.is_mapped()),
        }
    }

    /// Inserts a user or replaces its vector. The vector is validated and
    /// normalised; on error nothing changes.
    pub fn upsert(&self, id: u64, vector: &[f32]) -> Result<()> {
        if vector.len() != self.config.dim {
            return Err(Error::DimensionMismatch {
                what: format!("vector of user {id}"),
                expected: self.config.dim,
                got: vector.len(),
            });
        }
        self.upsert_batch(&[id], vector)
    }

    /// Inserts or replaces many users at once (graph insertion runs in
    /// parallel). `vectors` is row-major, `ids.len() * dim` long. Every row is
    /// validated before anything changes; a later duplicate id in the batch
    /// wins. The batch becomes visible to searches at once, when its graph
    /// inserts are done.
    pub fn upsert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        let dim = self.config.dim;
        if vectors.len() != ids.len() * dim {
            return Err(Error::ShapeMismatch {
                input: "vectors".into(),
                expected: format!("[{}, {dim}] ({} values)", ids.len(), ids.len() * dim),
                got: format!("{} values", vectors.len()),
            });
        }
        // Last occurrence of each id wins.
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            last.insert(id, i);
        }
        let keep: Vec<usize> = (0..ids.len()).filter(|i| last[&ids[*i]] == *i).collect();
        let mut rows = vec![0f32; keep.len() * dim];
        rows.par_chunks_mut(dim)
            .zip(keep.par_iter())
            .try_for_each(|(out, &i)| {
                let v = normalized(
                    &format!("vector of user {}", ids[i]),
                    &vectors[i * dim..(i + 1) * dim],
                    dim,
                )?;
                out.copy_from_slice(&v);
                Ok::<(), Error>(())
            })?;
        drop(last);

        let _writer = self.writer.lock();
        // 1. Place the rows in slots, not yet visible.
        let reuse = !self.rebuilding.load(Ordering::Acquire);
        let slots: Vec<usize> = {
            let mut inner = self.inner.write();
            let mut slots = Vec::with_capacity(keep.len());
            for (j, row) in rows.chunks_exact(dim.max(1)).enumerate() {
                let s = match inner.take_slot(reuse, dim) {
                    Ok(s) => s,
                    Err(e) => {
                        for &s in &slots {
                            inner.state[s] = Slot::Free;
                            inner.free.push(s);
                        }
                        return Err(e);
                    }
                };
                inner.data[s * dim..(s + 1) * dim].copy_from_slice(row);
                inner.ids[s] = ids[keep[j]];
                inner.state[s] = Slot::Pending;
                slots.push(s);
            }
            slots
        };
        // 2. Insert them into the graph, beside searches.
        if let Err(e) = self.insert_into_graph(&slots, &rows) {
            let retired = self.retire_slots(&slots);
            self.finish_retire(retired);
            return Err(e);
        }
        // 3. Publish: the new rows become visible, the replaced ones not.
        let mut replaced = Vec::new();
        {
            let mut inner = self.inner.write();
            for &s in &slots {
                inner.state[s] = Slot::Live;
                let id = inner.ids[s];
                if let Some(old) = inner.slot_of.insert(id, s) {
                    inner.state[old] = Slot::Dead;
                    inner.tombstones += 1;
                    replaced.push(old);
                }
            }
        }
        // 4. Take the replaced rows out of the graph.
        let retired = self.retire_slots(&replaced);
        drop(_writer);
        self.finish_retire(retired);
        Ok(())
    }

    fn insert_into_graph(&self, slots: &[usize], rows: &[f32]) -> Result<()> {
        let dim = self.config.dim;
        let total = self.inner.read().ids.len();
        {
            let mut graph = self.graph.write();
            match graph.as_mut() {
                Some(g) => g.prepare_write(total)?,
                None => return Ok(()),
            }
        }
        let graph = self.graph.read();
        let Some(g) = graph.as_ref() else {
            return Ok(());
        };
        insert_all(g.as_ref(), &paired(slots, rows, dim))
    }

    /// Removes `slots` (state `Dead`, or `Pending` after a failed insert)
    /// from the graph where the backend can, and frees them; the others
    /// stay tombstones. Returns whether a rebuild is due.
    fn retire_slots(&self, slots: &[usize]) -> bool {
        if slots.is_empty() {
            return false;
        }
        let removed: Vec<bool> = {
            let prepared = {
                let mut graph = self.graph.write();
                match graph.as_mut() {
                    Some(g) => g.prepare_write(0).is_ok(),
                    None => true,
                }
            };
            let graph = self.graph.read();
            slots
                .iter()
                .map(|&s| match graph.as_ref() {
                    None => true,
                    Some(g) => prepared && g.remove(s).unwrap_or(false),
                })
                .collect()
        };
        let mut inner = self.inner.write();
        for (&s, &gone) in slots.iter().zip(&removed) {
            let was_dead = inner.state[s] == Slot::Dead;
            if gone {
                inner.free_slot(s, self.config.dim);
                if was_dead {
                    inner.tombstones -= 1;
                }
            } else if !was_dead {
                // A failed insert the graph may hold: a tombstone.
                inner.state[s] = Slot::Dead;
                inner.tombstones += 1;
            }
        }
        let nodes = inner.slot_of.len() + inner.tombstones;
        self.config.build_graph
            && nodes > 0
            && inner.tombstones as f64 > self.config.rebuild_tombstone_fraction * nodes as f64
    }

    /// Runs the rebuild [`retire_slots`](Self::retire_slots) found due
    /// (with no lock held).
    fn finish_retire(&self, rebuild_due: bool) {
        if rebuild_due {
            // An error leaves the current graph serving; the next delete
            // tries again.
            let _ = self.rebuild_graph();
        }
    }

    /// Removes a user. Unknown ids are an error ([`Error::UnknownUser`]).
    pub fn delete(&self, id: u64) -> Result<()> {
        let writer = self.writer.lock();
        let slot = {
            let mut inner = self.inner.write();
            let slot = inner.slot_of.remove(&id).ok_or(Error::UnknownUser(id))?;
            inner.state[slot] = Slot::Dead;
            inner.tombstones += 1;
            slot
        };
        let due = self.retire_slots(&[slot]);
        drop(writer);
        self.finish_retire(due);
        Ok(())
    }

    /// Rebuilds the graph from the live users now, dropping every tombstone
    /// (see the module docs: searches and writers do not wait for it).
    pub fn rebuild(&self) -> Result<()> {
        self.rebuild_graph()
    }

    fn rebuild_graph(&self) -> Result<()> {
        if !self.config.build_graph || self.rebuilding.swap(true, Ordering::AcqRel) {
            // Exact-only, or another rebuild runs already.
            return Ok(());
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _done = Done(&self.rebuilding);
        let dim = self.config.dim;
        // A copy of the live rows: writers go on while the graph builds.
        // From here on no slot is reused, so a slot that is still live at
        // the swap still holds the vector it was built with.
        let (snapshot, rows, slots): (Vec<usize>, Vec<f32>, usize) = {
            let _writer = self.writer.lock();
            let inner = self.inner.read();
            let live: Vec<usize> = (0..inner.ids.len())
                .filter(|&s| inner.state[s] == Slot::Live)
                .collect();
            let mut rows = Vec::with_capacity(live.len() * dim);
            for &s in &live {
                rows.extend_from_slice(inner.row(s, dim));
            }
            (live, rows, inner.ids.len())
        };
        let batch = paired(&snapshot, &rows, dim);
        let capacity = slots.max(self.config.capacity_hint.min(slots * 2));
        let Some(mut fresh) = graph_of(&self.config, &batch, capacity)? else {
            return Ok(());
        };
        drop(batch);
        drop(rows);
        // Replay what changed meanwhile, then swap.
        // Writers wait from here to the swap; searches only during the
        // (fast) swap itself.
        let _writer = self.writer.lock();
        let inner = self.inner.upgradable_read();
        let slots = inner.ids.len();
        let mut in_new = vec![false; slots];
        for &s in &snapshot {
            in_new[s] = true;
        }
        fresh.prepare_write(slots)?;
        let added: Vec<(usize, &[f32])> = (0..slots)
            .filter(|&s| !in_new[s] && inner.state[s] == Slot::Live)
            .map(|s| (s, inner.row(s, dim)))
            .collect();
        insert_all(fresh.as_ref(), &added)?;
        drop(added);
        let mut dead = 0usize;
        for (s, present) in in_new.iter_mut().enumerate() {
            if *present && inner.state[s] != Slot::Live {
                if fresh.remove(s)? {
                    *present = false;
                } else {
                    dead += 1;
                }
            }
        }
        let mut inner = parking_lot::RwLockUpgradableReadGuard::upgrade(inner);
        inner.free.clear();
        for (s, &present) in in_new.iter().enumerate() {
            if matches!(inner.state[s], Slot::Dead | Slot::Free) {
                if present {
                    inner.state[s] = Slot::Dead;
                } else {
                    inner.free_slot(s, dim);
                }
            }
        }
        // Reuse low slots first.
        inner.free.reverse();
        inner.tombstones = dead;
        inner.rebuilds += 1;
        let old = self.graph.write().replace(fresh);
        drop(inner);
        drop(_writer);
        drop(old);
        Ok(())
    }

    /// The `k` users most similar to `query` (best first; never more than
    /// the live users, whatever `k`).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Neighbor>> {
        let q = normalized("query vector", query, self.config.dim)?;
        let inner = self.inner.read();
        let graph = self.graph.read();
        self.search_locked(&inner, graph.as_deref(), &q, k, options, None)
    }

    /// The `k` users most similar to user `id`, excluding the user itself.
    pub fn neighbors(
        &self,
        id: u64,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Neighbor>> {
        let inner = self.inner.read();
        let slot = *inner.slot_of.get(&id).ok_or(Error::UnknownUser(id))?;
        let q = inner.row(slot, self.config.dim).to_vec();
        let graph = self.graph.read();
        self.search_locked(&inner, graph.as_deref(), &q, k, options, Some(id))
    }

    /// [`search`](Self::search) for many queries (row-major) in parallel.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let dim = self.config.dim;
        if queries.len() % dim != 0 {
            return Err(Error::ShapeMismatch {
                input: "queries".into(),
                expected: format!("[n, {dim}]"),
                got: format!("{} values", queries.len()),
            });
        }
        let qs: Vec<f32> = queries
            .par_chunks(dim)
            .enumerate()
            .map(|(i, q)| normalized(&format!("query {i}"), q, dim))
            .collect::<Result<Vec<_>>>()?
            .concat();
        let inner = self.inner.read();
        if self.use_exact(&inner, options) && options.filter.is_none() {
            // Block-wise batched scan: far faster than one scan per query.
            let res =
                exact::top_k_batch(&inner.data, dim, &qs, k, &|s| inner.state[s] == Slot::Live);
            return Ok(res.into_iter().map(|r| to_neighbors(&inner, r)).collect());
        }
        let graph = self.graph.read();
        qs.par_chunks(dim)
            .map(|q| self.search_locked(&inner, graph.as_deref(), q, k, options, None))
            .collect()
    }

    /// Exact top-`k` for many queries, ignoring the graph: the ground truth.
    pub fn exact_search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        self.search_batch(
            queries,
            k,
            &SearchOptions {
                mode: SearchMode::Exact,
                ..Default::default()
            },
        )
    }

    fn use_exact(&self, inner: &Inner, options: &SearchOptions<'_>) -> bool {
        match options.mode {
            _ if !self.config.build_graph => true,
            SearchMode::Exact => true,
            SearchMode::Approximate => false,
            SearchMode::Auto => inner.slot_of.len() <= self.config.exact_below,
        }
    }

    fn search_locked(
        &self,
        inner: &Inner,
        graph: Option<&dyn Graph>,
        q: &[f32],
        k: usize,
        options: &SearchOptions<'_>,
        exclude: Option<u64>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 || inner.slot_of.is_empty() {
            return Ok(Vec::new());
        }
        // No search returns more than the live users; nor does it need a
        // wider candidate list than MAX_EF or k.
        let k = k.min(inner.slot_of.len());
        let dim = self.config.dim;
        let filter = options.filter;
        let keeps = |slot: usize| -> bool {
            inner.state.get(slot) == Some(&Slot::Live)
                && Some(inner.ids[slot]) != exclude
                && filter.is_none_or(|f| f.keeps(inner.ids[slot]))
        };

        let mut exact = self.use_exact(inner, options) || graph.is_none();
        let mut ef = options
            .ef
            .unwrap_or_else(|| self.ef_search())
            .clamp(k, MAX_EF.max(k));
        if let (Some(f), false) = (filter, exact) {
            let share = self.filter_share(inner, &f);
            if options.mode == SearchMode::Auto
                && (share < self.config.exact_selectivity
                    || share * (inner.slot_of.len() as f64) <= self.config.exact_below as f64)
            {
                exact = true;
            } else {
                // Keep the expected number of eligible candidates near `ef`.
                ef = ((ef as f64 / share.max(0.01)).ceil() as usize)
                    .min(ef * 20)
                    .min(MAX_EF.max(k));
            }
        }

        let scored: Vec<Scored> = match graph {
            Some(g) if !exact => {
                // Rows being inserted are few: they are dropped after an
                // unfiltered search (faster than a filtered one); a
                // caller's filter and tombstones go into the search.
                let narrowed = filter.is_some() || inner.tombstones > 0;
                let keep_fn = |s: usize| keeps(s);
                let keep_ref: &(dyn Fn(usize) -> bool + Sync) = &keep_fn;
                // The excluded user is found first: ask for one more.
                let want = k + usize::from(exclude.is_some());
                let rescore = |candidates: Vec<usize>| {
                    let mut top = exact::TopK::new(k);
                    let mut seen = HashSet::with_capacity(candidates.len());
                    for s in candidates {
                        if s < inner.ids.len() && keeps(s) && seen.insert(s) {
                            top.push(dot(q, inner.row(s, dim)), s);
                        }
                    }
                    top
                };
                let mut top = rescore(g.search(q, want, ef, narrowed.then_some(keep_ref))?);
                if !narrowed && top.len() < k && inner.slot_of.len() > top.len() {
                    // Rows still being inserted crowded the answer (a bulk
                    // load running beside this search): search again,
                    // filtered, before falling back to a scan.
                    top = rescore(g.search(q, want, ef, Some(keep_ref))?);
                }
                let got = top.into_sorted();
                if got.len() < k && inner.slot_of.len() > got.len() {
                    // The graph ran dry (heavy filter): fill in exactly.
                    exact::top_k_batch(&inner.data, dim, q, k, &keeps)
                        .pop()
                        .unwrap_or_default()
                } else {
                    got
                }
            }
            _ => match filter {
                // An allow-list enumerates its users: no need to scan everyone.
                Some(Filter::Allow(set)) => exact::top_k_among(
                    &inner.data,
                    dim,
                    q,
                    k,
                    set.iter()
                        .filter_map(|id| inner.slot_of.get(id).copied())
                        .filter(|&s| keeps(s)),
                ),
                _ => exact::top_k_batch(&inner.data, dim, q, k, &keeps)
                    .pop()
                    .unwrap_or_default(),
            },
        };
        Ok(to_neighbors(inner, scored))
    }

    /// Estimated share of live users a filter keeps (exact for an allow-list,
    /// from a deterministic sample of up to 512 slots otherwise).
    fn filter_share(&self, inner: &Inner, filter: &Filter<'_>) -> f64 {
        let live = inner.slot_of.len().max(1) as f64;
        match filter {
            Filter::Allow(set) => {
                let n = set
                    .iter()
                    .filter(|id| inner.slot_of.contains_key(id))
                    .count();
                n as f64 / live
            }
            Filter::Deny(set) => 1.0 - (set.len() as f64 / live).min(1.0),
            Filter::Predicate(p) => {
                let nodes = inner.ids.len();
                let step = (nodes / 512).max(1);
                let (mut seen, mut kept) = (0usize, 0usize);
                for slot in (0..nodes)
                    .step_by(step)
                    .filter(|&s| inner.state[s] == Slot::Live)
                {
                    seen += 1;
                    kept += usize::from(p(inner.ids[slot]));
                }
                if seen == 0 {
                    1.0
                } else {
                    kept as f64 / seen as f64
                }
            }
        }
    }
}

fn to_neighbors(inner: &Inner, scored: Vec<Scored>) -> Vec<Neighbor> {
    scored
        .into_iter()
        .map(|s| Neighbor {
            id: inner.ids[s.slot],
            similarity: s.sim.clamp(-1.0, 1.0),
        })
        .collect()
}

/// The result of [`UserIndex::calibrate_ef`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The `ef` put in force: the smallest tried `ef` whose recall reached
    /// the target (or the largest tried).
    pub ef: usize,
    /// recall@k measured on the calibration queries at that `ef`.
    pub recall: f64,
    /// Whether the target was reached.
    pub reached: bool,
}

impl UserIndex {
    /// Finds the smallest search width that reaches `target` recall@`k` on a
    /// sample of queries, and makes it the default `ef_search`.
    ///
    /// HNSW recall at a given `ef` falls as the population grows
    /// (BENCHMARKS.md has the curves per backend), so no fixed
    /// default is right for every size: call this after large builds with a
    /// few hundred queries like the ones the host will send (recent users'
    /// embeddings, fresh encodings). Indexed users themselves make poor
    /// calibration queries: they are graph nodes whose neighbours are their own
    /// links, so they reach any target at a far smaller `ef` than new queries.
    /// The graph is searched at `ef` = k, 2k, 4k, ... up to `max_ef` (at
    /// most [`MAX_EF`]) and compared with exact search. Without a graph
    /// nothing changes.
    pub fn calibrate_ef(
        &self,
        queries: &[f32],
        target: f64,
        k: usize,
        max_ef: usize,
    ) -> Result<Calibration> {
        if !(0.0..=1.0).contains(&target) || !(1..=MAX_EF).contains(&k) {
            return Err(Error::invalid(
                "calibrate_ef",
                format!("target must be in [0, 1] and k in 1..={MAX_EF}"),
            ));
        }
        let max_ef = max_ef.min(MAX_EF);
        if queries.is_empty() || !self.config.build_graph {
            return Ok(Calibration {
                ef: self.ef_search(),
                recall: 1.0,
                reached: true,
            });
        }
        let truth = self.exact_search_batch(queries, k)?;
        let mut ef = k;
        let best = loop {
            let opts = SearchOptions {
                ef: Some(ef),
                mode: SearchMode::Approximate,
                ..Default::default()
            };
            let recall = recall_at_k(&self.search_batch(queries, k, &opts)?, &truth);
            if recall >= target || ef >= max_ef.max(k) {
                break Calibration {
                    ef,
                    recall,
                    reached: recall >= target,
                };
            }
            ef = (ef * 2).min(max_ef.max(k));
        };
        self.ef_search.store(best.ef, Ordering::Relaxed);
        Ok(best)
    }
}

/// A read-only view of every live user, for scorers that look at the whole
/// population (lookalike, segments). Slots are positions in the index's
/// storage; other slots (tombstones, free) are skipped by
/// [`Population::live_slots`].
pub struct Population<'a> {
    dim: usize,
    ids: &'a [u64],
    state: &'a [Slot],
    data: &'a [f32],
    slot_of: &'a HashMap<u64, usize>,
}

impl<'a> Population<'a> {
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of live users.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// True when no user is live.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Number of slots (live users, tombstones and free slots).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// Slots of the live users, in storage order.
    pub fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ids.len()).filter(|&s| self.state[s] == Slot::Live)
    }

    /// Whether a slot holds a live user.
    pub fn is_live(&self, slot: usize) -> bool {
        self.state.get(slot) == Some(&Slot::Live)
    }

    /// The user id of a slot.
    pub fn id(&self, slot: usize) -> u64 {
        self.ids[slot]
    }

    /// The slot of a live user.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.slot_of.get(&id).copied()
    }

    /// The unit vector of a slot.
    pub fn vector(&self, slot: usize) -> &'a [f32] {
        &self.data[slot * self.dim..(slot + 1) * self.dim]
    }

    /// All slots' vectors, row-major (other slots included: see
    /// [`is_live`](Self::is_live)).
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
}

impl UserIndex {
    /// Runs `f` on a consistent view of every live user (under the read lock:
    /// writers wait to publish until `f` returns).
    pub fn with_population<R>(&self, f: impl FnOnce(&Population<'_>) -> R) -> R {
        let inner = self.inner.read();
        f(&Population {
            dim: self.config.dim,
            ids: &inner.ids,
            state: &inner.state,
            data: &inner.data,
            slot_of: &inner.slot_of,
        })
    }
}

/// Exact top-`k` rows of `data` (row-major unit vectors, `dim` wide) for each
/// query, as `(row, similarity)` best first. The kernel behind the index's
/// exact path (blocked matrix product), for callers with their own matrices.
pub fn exact_top_k(data: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<(usize, f32)>> {
    exact::top_k_batch(data, dim, queries, k, &|_| true)
        .into_iter()
        .map(|r| r.into_iter().map(|s| (s.slot, s.sim)).collect())
        .collect()
}

/// Share of the exact top-`k` ids that an approximate result found, averaged
/// over queries (recall@k).
pub fn recall_at_k(approx: &[Vec<Neighbor>], exact: &[Vec<Neighbor>]) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (a, e) in approx.iter().zip(exact) {
        let truth: HashSet<u64> = e.iter().map(|n| n.id).collect();
        hit += a.iter().filter(|n| truth.contains(&n.id)).count();
        total += e.len();
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_k_and_ef_are_bounded_by_the_population() {
        for (exact_below, backend) in [
            (0, Backend::Usearch),
            (0, Backend::HnswRs),
            (usize::MAX, Backend::Usearch),
        ] {
            let mut config = IndexConfig::new(4);
            config.backend = backend;
            config.exact_below = exact_below; // the graph path, then the exact one
            let index = UserIndex::new(config).expect("config");
            let ids: Vec<u64> = (0..50).collect();
            let vectors: Vec<f32> = (0..200).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
            index.upsert_batch(&ids, &vectors).expect("upsert");
            let huge = SearchOptions {
                ef: Some(usize::MAX),
                ..Default::default()
            };
            for options in [SearchOptions::default(), huge] {
                let all = index.search(&[1.0, 0.5, 0.0, 0.0], usize::MAX, &options);
                assert_eq!(all.expect("search").len(), 50);
                let others = index.neighbors(3, usize::MAX, &options).expect("neighbors");
                assert_eq!(others.len(), 49);
                assert!(others.iter().all(|n| n.id != 3));
            }
            let lists = index.knn_lists(usize::MAX).expect("lists");
            assert!(lists.iter().all(|(_, l)| l.len() == 49));
        }
    }
}
