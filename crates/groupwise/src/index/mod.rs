//! The user index: external `u64` user ids → unit embedding vectors, with
//! approximate k-nearest-neighbour search by HNSW (hnsw_rs) and an exact path.
//!
//! # What it adds to hnsw_rs
//!
//! * **Upsert and delete.** hnsw_rs cannot remove a point. A deleted or replaced
//!   user becomes a *tombstone*: its graph node stays (it still routes searches)
//!   but it is filtered out of every result. When tombstones pass
//!   [`IndexConfig::rebuild_tombstone_fraction`] of the graph, the graph is rebuilt
//!   from the live vectors inside the call that crossed the threshold.
//! * **Cosine that cannot panic.** Vectors are checked (dimension, finite, not
//!   zero) and normalised on the way in; see [`CosineDistance`].
//! * **Filters that stay fast and correct.** An allow-list or a predicate is
//!   served by the graph when it keeps a good share of users, and by an exact scan
//!   of the allowed users when it is selective (graph search degrades badly
//!   there). If the graph returns fewer than `k` results, the exact path fills in.
//! * **An exact path** for small populations, selective filters, and ground truth.
//!
//! # Concurrency
//!
//! `UserIndex` is `Send + Sync`: searches run in parallel under a shared read
//! lock; upserts, deletes and rebuilds take the write lock briefly (a rebuild
//! holds it for its whole duration: about a second per 100k users on 2 cores).

mod distance;
mod exact;
mod knn;
mod persist;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use hnsw_rs::prelude::Hnsw;
use parking_lot::RwLock;
use rayon::prelude::*;

pub use distance::CosineDistance;
pub use persist::IndexState;

use crate::error::{Error, Result};
use crate::limits::{self, MAX_DIM, MAX_EF};
use crate::vector::normalized;
use exact::Scored;

/// hnsw_rs requires exactly 16 layers for its dump format; keeping it lets a
/// later snapshot store the graph.
const MAX_LAYERS: usize = 16;

/// The largest [`IndexConfig::capacity_hint`]: hnsw_rs reserves memory for
/// it up front.
const MAX_CAPACITY_HINT: usize = 1 << 28;

/// Parameters of the user index.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Embedding dimension (required; 1..=[`MAX_DIM`]).
    pub dim: usize,
    /// HNSW links per node and layer (`M`, 4..=255: hnsw_rs stores it in a
    /// byte). Default 24.
    pub max_connections: usize,
    /// Candidate list size while building (`efConstruction`, 1..=[`MAX_EF`]:
    /// hnsw_rs allocates it for every insert). Default 200.
    pub ef_construction: usize,
    /// Default candidate list size while searching (`ef`, 1..=[`MAX_EF`]);
    /// raised to `k` when smaller. Default 64 (recall@10 ≥ 0.95 on the
    /// benchmarks in BENCHMARKS.md).
    pub ef_search: usize,
    /// Expected number of users (an allocation hint, not a limit; 0..=2^28:
    /// hnsw_rs reserves memory for it up front). Default 10,000.
    pub capacity_hint: usize,
    /// Populations with at most this many live users are searched exactly
    /// (any value). On 64-d vectors an exact scan of 20k users answers as
    /// fast as the graph at `ef` 64 (BENCHMARKS.md), and it is always right.
    /// Default 16,384.
    pub exact_below: usize,
    /// A filter that keeps less than this share of users is served by an exact
    /// scan of the allowed users (in [0, 1]). Default 0.02.
    pub exact_selectivity: f64,
    /// Rebuild the graph when tombstones exceed this share of its nodes (in
    /// (0, 1]). Default 0.25.
    pub rebuild_tombstone_fraction: f64,
    /// Build the HNSW graph (default true). Without it the index is exact-only
    /// (every search is a scan, like a flat index): no build cost, always
    /// right, and fast enough for tens of thousands of users or batch jobs.
    pub build_graph: bool,
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
    /// to `k` and capped at the larger of `k` and [`MAX_EF`] (hnsw_rs
    /// allocates it for every search).
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
    /// Graph nodes of deleted or replaced users still in the graph.
    pub tombstones: usize,
    /// Graph rebuilds so far.
    pub rebuilds: u64,
}

struct Inner {
    /// Row-major unit vectors, one per slot (slot = hnsw_rs data id).
    data: Vec<f32>,
    /// External id of each slot.
    ids: Vec<u64>,
    /// Whether each slot is live (false = tombstone).
    alive: Vec<bool>,
    slot_of: HashMap<u64, usize>,
    tombstones: usize,
    rebuilds: u64,
    graph: Hnsw<'static, f32, CosineDistance>,
}

/// Users' embeddings with approximate and exact nearest-neighbour search.
pub struct UserIndex {
    config: IndexConfig,
    /// The default search width in force (starts at `config.ef_search`;
    /// [`UserIndex::calibrate_ef`] changes it).
    ef_search: AtomicUsize,
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for UserIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIndex")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

fn new_graph(config: &IndexConfig, capacity: usize) -> Hnsw<'static, f32, CosineDistance> {
    Hnsw::new(
        config.max_connections,
        capacity.max(1),
        MAX_LAYERS,
        config.ef_construction,
        CosineDistance,
    )
}

/// A new graph holding every row of `data` (row-major, slot = row), or an
/// empty one for an exact-only index. `capacity` is the allocation hint.
fn graph_of(
    config: &IndexConfig,
    data: &[f32],
    capacity: usize,
) -> Hnsw<'static, f32, CosineDistance> {
    let graph = new_graph(config, capacity);
    if config.build_graph && !data.is_empty() {
        let batch: Vec<(&[f32], usize)> = data.chunks_exact(config.dim).zip(0..).collect();
        graph.parallel_insert_slice(&batch);
    }
    graph
}

impl UserIndex {
    /// An empty index.
    pub fn new(config: IndexConfig) -> Result<Self> {
        config.validate()?;
        let graph = new_graph(&config, config.capacity_hint);
        Ok(UserIndex {
            inner: RwLock::new(Inner {
                data: Vec::new(),
                ids: Vec::new(),
                alive: Vec::new(),
                slot_of: HashMap::new(),
                tombstones: 0,
                rebuilds: 0,
                graph,
            }),
            ef_search: AtomicUsize::new(config.ef_search),
            config,
        })
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
        let dim = self.config.dim;
        inner
            .slot_of
            .get(&id)
            .map(|&s| inner.data[s * dim..(s + 1) * dim].to_vec())
    }

    /// Live user ids, in insertion order of their current vectors.
    pub fn ids(&self) -> Vec<u64> {
        let inner = self.inner.read();
        inner
            .ids
            .iter()
            .zip(&inner.alive)
            .filter_map(|(&id, &a)| a.then_some(id))
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> IndexStats {
        let inner = self.inner.read();
        IndexStats {
            live: inner.slot_of.len(),
            tombstones: inner.tombstones,
            rebuilds: inner.rebuilds,
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
    /// validated before anything changes; a later duplicate id in the batch wins.
    pub fn upsert_batch(&self, ids: &[u64], vectors: &[f32]) -> Result<()> {
        let dim = self.config.dim;
        if vectors.len() != ids.len() * dim {
            return Err(Error::ShapeMismatch {
                input: "vectors".into(),
                expected: format!("[{}, {dim}] ({} values)", ids.len(), ids.len() * dim),
                got: format!("{} values", vectors.len()),
            });
        }
        let rows: Vec<Vec<f32>> = vectors
            .par_chunks(dim.max(1))
            .enumerate()
            .map(|(i, v)| normalized(&format!("vector of user {}", ids[i]), v, dim))
            .collect::<Result<_>>()?;

        // Last occurrence of each id wins.
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            last.insert(id, i);
        }
        let mut inner = self.inner.write();
        let first_new = inner.ids.len();
        for (i, &id) in ids.iter().enumerate() {
            if last.get(&id) != Some(&i) {
                continue;
            }
            let slot = inner.ids.len();
            if let Some(old) = inner.slot_of.insert(id, slot) {
                inner.alive[old] = false;
                inner.tombstones += 1;
            }
            inner.data.extend_from_slice(&rows[i]);
            inner.ids.push(id);
            inner.alive.push(true);
        }
        let batch: Vec<(&[f32], usize)> = (first_new..inner.ids.len())
            .map(|s| (&inner.data[s * dim..(s + 1) * dim], s))
            .collect();
        if !self.config.build_graph {
            // Exact-only index: nothing to insert.
        } else if batch.len() > 1 {
            inner.graph.parallel_insert_slice(&batch);
        } else if let Some(&(v, s)) = batch.first() {
            inner.graph.insert_slice((v, s));
        }
        self.maybe_rebuild(&mut inner);
        Ok(())
    }

    /// Removes a user. Unknown ids are an error ([`Error::UnknownUser`]).
    pub fn delete(&self, id: u64) -> Result<()> {
        let mut inner = self.inner.write();
        let slot = inner.slot_of.remove(&id).ok_or(Error::UnknownUser(id))?;
        inner.alive[slot] = false;
        inner.tombstones += 1;
        self.maybe_rebuild(&mut inner);
        Ok(())
    }

    /// Rebuilds the graph from the live users now, dropping every tombstone.
    pub fn rebuild(&self) {
        let mut inner = self.inner.write();
        Self::rebuild_locked(&self.config, &mut inner);
    }

    fn maybe_rebuild(&self, inner: &mut Inner) {
        let nodes = inner.ids.len();
        if nodes > 0
            && inner.tombstones as f64 > self.config.rebuild_tombstone_fraction * nodes as f64
        {
            Self::rebuild_locked(&self.config, inner);
        }
    }

    fn rebuild_locked(config: &IndexConfig, inner: &mut Inner) {
        let dim = config.dim;
        let live = inner.slot_of.len();
        let mut data = Vec::with_capacity(live * dim);
        let mut ids = Vec::with_capacity(live);
        for (slot, (&id, &a)) in inner.ids.iter().zip(&inner.alive).enumerate() {
            if a {
                data.extend_from_slice(&inner.data[slot * dim..(slot + 1) * dim]);
                ids.push(id);
            }
        }
        let graph = graph_of(config, &data, live.max(config.capacity_hint));
        inner.slot_of = ids.iter().enumerate().map(|(s, &id)| (id, s)).collect();
        inner.alive = vec![true; ids.len()];
        inner.ids = ids;
        inner.data = data;
        inner.graph = graph;
        inner.tombstones = 0;
        inner.rebuilds += 1;
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
        Ok(self.search_locked(&inner, &q, k, options, None))
    }

    /// The `k` users most similar to user `id`, excluding the user itself.
    pub fn neighbors(
        &self,
        id: u64,
        k: usize,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Neighbor>> {
        let inner = self.inner.read();
        let dim = self.config.dim;
        let slot = *inner.slot_of.get(&id).ok_or(Error::UnknownUser(id))?;
        let q = inner.data[slot * dim..(slot + 1) * dim].to_vec();
        Ok(self.search_locked(&inner, &q, k, options, Some(id)))
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
            let res = exact::top_k_batch(&inner.data, dim, &qs, k, &|s| inner.alive[s]);
            return Ok(res.into_iter().map(|r| to_neighbors(&inner, r)).collect());
        }
        Ok(qs
            .par_chunks(dim)
            .map(|q| self.search_locked(&inner, q, k, options, None))
            .collect())
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
        q: &[f32],
        k: usize,
        options: &SearchOptions<'_>,
        exclude: Option<u64>,
    ) -> Vec<Neighbor> {
        if k == 0 || inner.slot_of.is_empty() {
            return Vec::new();
        }
        // No search returns more than the live users; nor does it need a
        // wider candidate list than MAX_EF or k (hnsw_rs allocates it).
        let k = k.min(inner.slot_of.len());
        let dim = self.config.dim;
        let filter = options.filter;
        let keeps = |slot: usize| -> bool {
            inner.alive[slot]
                && Some(inner.ids[slot]) != exclude
                && filter.is_none_or(|f| f.keeps(inner.ids[slot]))
        };

        let mut exact = self.use_exact(inner, options);
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
                ef = ((ef as f64 / share.max(0.01)).ceil() as usize).min(ef * 20);
            }
        }

        let scored: Vec<Scored> = if exact {
            match filter {
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
            }
        } else {
            let needs_filter = inner.tombstones > 0 || filter.is_some() || exclude.is_some();
            let hits = if needs_filter {
                let pred = |d: &usize| keeps(*d);
                inner.graph.search_filter(q, k, ef, Some(&pred))
            } else {
                inner.graph.search(q, k, ef)
            };
            let got: Vec<Scored> = hits
                .into_iter()
                .filter(|n| keeps(n.d_id))
                .map(|n| Scored {
                    sim: 1.0 - n.distance,
                    slot: n.d_id,
                })
                .collect();
            if got.len() < k && inner.slot_of.len() > got.len() {
                // The graph ran dry (heavy filter or tombstones): fill in exactly.
                exact::top_k_batch(&inner.data, dim, q, k, &keeps)
                    .pop()
                    .unwrap_or_default()
            } else {
                got
            }
        };
        to_neighbors(inner, scored)
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
                for slot in (0..nodes).step_by(step).filter(|&s| inner.alive[s]) {
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
    /// HNSW recall at a given `ef` falls as the population grows (and hnsw_rs
    /// falls faster than other HNSW libraries, BENCHMARKS.md), so no fixed
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
/// storage; tombstoned slots are skipped by [`Population::live_slots`].
pub struct Population<'a> {
    dim: usize,
    ids: &'a [u64],
    alive: &'a [bool],
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

    /// Number of slots (live users and tombstones).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// Slots of the live users, in storage order.
    pub fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ids.len()).filter(|&s| self.alive[s])
    }

    /// Whether a slot holds a live user.
    pub fn is_live(&self, slot: usize) -> bool {
        self.alive.get(slot).copied().unwrap_or(false)
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

    /// All slots' vectors, row-major (tombstones included).
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
}

impl UserIndex {
    /// Runs `f` on a consistent view of every live user (under the read lock:
    /// writers wait until `f` returns).
    pub fn with_population<R>(&self, f: impl FnOnce(&Population<'_>) -> R) -> R {
        let inner = self.inner.read();
        f(&Population {
            dim: self.config.dim,
            ids: &inner.ids,
            alive: &inner.alive,
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
        for exact_below in [0, usize::MAX] {
            let mut config = IndexConfig::new(4);
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
