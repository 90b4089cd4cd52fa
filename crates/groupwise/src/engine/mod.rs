//! The facade a host holds: one [`Engine`] owns the encoders, the user
//! index, the segments and the slate bandit, and saves and loads all of them
//! as one snapshot.
//!
//! ```no_run
//! use std::sync::Arc;
//! use groupwise::bandit::{Feedback, Request};
//! use groupwise::{Engine, EngineConfig};
//!
//! # fn main() -> groupwise::Result<()> {
//! let engine = Arc::new(Engine::new(EngineConfig::from_file("groupwise.json")?)?);
//! engine.upsert_sequence("seq", 42, &[1, 7, 9])?;      // encode → index → segment
//! engine.build_segments()?;
//! let decision = engine.decide(&Request::new(Some(42), None, &[1, 2, 3, 4], 2))?;
//! engine.feedback(&Feedback { decision: decision.id, clicks: &[0], visible: None, now: None })?;
//! engine.save("engine.gw")?;                            // atomic
//! let restored = Engine::load("engine.gw")?;
//! # let _ = restored;
//! # Ok(())
//! # }
//! ```
//!
//! # Concurrency
//!
//! `Engine` is `Send + Sync`; share it with an `Arc`. Searches, lookalikes
//! and decisions run in parallel. Operations that change state (upserts,
//! deletes, feedback, merges) hold a shared *gate*; a snapshot holds it
//! exclusively while it copies the state (the graph dump included), so a
//! snapshot is a consistent cut: every feedback event is in it entirely or
//! not at all. Decisions do not take the gate: a decision made while a
//! snapshot is copied may be missing from it (its feedback after a restore
//! is then refused as unknown, and counted).
//!
//! # Decision ids across restarts and replicas
//!
//! A decision id is `(sequence << 10) | replica_id` (replica 0 without
//! [`EngineConfig::replica_id`], which must be in `0..=1023`); the sequence
//! increases with every decision and never falls below the wall clock (see
//! [`crate::bandit`]). So an engine loaded from a snapshot — even the same
//! snapshot twice after two crashes — issues ids above every id issued
//! before (unless the clock went back), and feedback meant for a decision
//! lost with the process is refused as unknown ([`Error::UnknownDecision`])
//! instead of being credited to a newer slate. Replicas with distinct
//! replica ids never issue the same id. The draws of a decision depend on
//! the seed and the number of decisions before it, not on the id, so a
//! loaded engine makes the slates the saved one would have made.
//!
//! # What a user operation does
//!
//! * upsert: encode (if from behaviour) → index → if segments are built,
//!   place the user in one (nearest centroid or kNN vote).
//! * delete: out of its segment (dissolving a segment that falls below the
//!   privacy floor), out of the index, and its own bandit state forgotten.
//! * decide: the user's segment is filled in when the request has none.
//! * build_segments: the first call builds, later calls rebuild (warm
//!   started, ids kept where members overlap) and move the bandit's counts to
//!   the new segments in proportion to member overlap.

mod config;
mod snapshot;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

pub use config::{EncoderSpec, EngineConfig, SnapshotConfig};
pub use snapshot::{inspect, inspect_bytes, LoadOptions, SnapshotInfo, SNAPSHOT_VERSION};

use crate::bandit::host::HostModel;
use crate::bandit::{BanditState, Decision, Delta, Feedback, Readout, Request, SlateBandit, Stats};
use crate::data::UserHistory;
use crate::encoder::{Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::index::{IndexState, Neighbor, SearchOptions, UserIndex};
use crate::lookalike::{self, Expansion, LookalikeRequest, Scorer};
use crate::segments::{
    BuildReport, ProfileOptions, RebuildReport, SegmentId, SegmentProfile, Segments,
};

/// Where an upserted user landed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Upserted {
    /// The user's segment, when segments are built.
    pub segment: Option<SegmentId>,
}

/// What [`Engine::build_segments`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentsReport {
    /// The discovery run.
    pub build: BuildReport,
    /// What changed against the previous segments (`None` on the first build).
    pub rebuild: Option<RebuildReport>,
    /// Users placed after the build because they arrived while it ran.
    pub placed_late: usize,
}

/// Counters and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Users in the index.
    pub users: usize,
    /// Served segments.
    pub segments: usize,
    /// Loaded encoders.
    pub encoders: usize,
    /// Upserts accepted.
    pub upserts: u64,
    /// Users deleted.
    pub deletes: u64,
    /// Lookalike expansions answered.
    pub lookalikes: u64,
    /// Snapshots saved by [`save`](Engine::save) over this state's lineage:
    /// a loaded engine continues from the count of the file it came from,
    /// which counts itself. (The other counters also survive a save and
    /// load; [`to_bytes`](Engine::to_bytes) is not counted as a save.)
    pub snapshots: u64,
    /// The bandit's counters.
    pub bandit: Stats,
}

#[derive(Debug, Default)]
struct Counters {
    upserts: AtomicU64,
    deletes: AtomicU64,
    lookalikes: AtomicU64,
    snapshots: AtomicU64,
}

impl Counters {
    /// Counters continuing from a snapshot's.
    fn restored(saved: &snapshot::SavedCounters) -> Counters {
        Counters {
            upserts: AtomicU64::new(saved.upserts),
            deletes: AtomicU64::new(saved.deletes),
            lookalikes: AtomicU64::new(saved.lookalikes),
            snapshots: AtomicU64::new(saved.snapshots),
        }
    }
}

/// A consistent copy of the engine's state, for a snapshot.
struct Parts {
    index: IndexState<'static>,
    segments: Option<Segments>,
    bandit: BanditState,
    counters: snapshot::SavedCounters,
}

/// The engine: encoders, user index, segments and slate bandit behind one
/// thread-safe handle. See the module docs.
pub struct Engine {
    config: EngineConfig,
    encoders: RwLock<BTreeMap<String, Arc<Encoder>>>,
    index: UserIndex,
    segments: RwLock<Option<Segments>>,
    /// The kNN graph of the graph-based lookalike scorers, built on first use.
    graph: RwLock<Option<Arc<KnnGraph>>>,
    bandit: SlateBandit,
    /// Held shared by state changes and exclusively by snapshots.
    gate: RwLock<()>,
    counters: Counters,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An empty engine; loads the encoders the config lists.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        let mut config = config;
        config.index.dim = config.dim;
        // Snapshots keep the config: absolute encoder paths let a snapshot
        // be loaded from any working directory.
        for e in &mut config.encoders {
            if e.path.is_relative() {
                e.path = std::path::absolute(&e.path).map_err(|err| Error::io(&e.path, err))?;
            }
        }
        config.validate()?;
        let index = UserIndex::new(config.index.clone())?;
        let bandit = SlateBandit::new(config.effective_bandit())?;
        Self::assemble(config, index, None, bandit, Counters::default(), true)
    }

    fn assemble(
        config: EngineConfig,
        index: UserIndex,
        segments: Option<Segments>,
        bandit: SlateBandit,
        counters: Counters,
        load_encoders: bool,
    ) -> Result<Engine> {
        let engine = Engine {
            encoders: RwLock::new(BTreeMap::new()),
            index,
            segments: RwLock::new(segments),
            graph: RwLock::new(None),
            bandit,
            gate: RwLock::new(()),
            counters,
            config,
        };
        if load_encoders {
            for spec in engine.config.encoders.clone() {
                engine.load_encoder(&spec.name, &spec.path)?;
            }
        }
        Ok(engine)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The user index (for operations the facade does not wrap).
    pub fn index(&self) -> &UserIndex {
        &self.index
    }

    /// The slate bandit (for operations the facade does not wrap).
    pub fn bandit(&self) -> &SlateBandit {
        &self.bandit
    }

    /// Loads (or replaces) the encoder `name`. Its output dimension must be
    /// the engine's.
    pub fn load_encoder(&self, name: &str, path: impl AsRef<Path>) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("name", "an encoder needs a non-empty name"));
        }
        let encoder = Encoder::load(path, &EncoderOptions::default())?;
        if encoder.dim() != self.config.dim {
            return Err(Error::DimensionMismatch {
                what: format!("encoder {name:?} output"),
                expected: self.config.dim,
                got: encoder.dim(),
            });
        }
        self.encoders
            .write()
            .insert(name.to_string(), Arc::new(encoder));
        Ok(())
    }

    /// Names of the loaded encoders, sorted.
    pub fn encoder_names(&self) -> Vec<String> {
        self.encoders.read().keys().cloned().collect()
    }

    /// The encoder `name` (e.g. to read its contract).
    pub fn encoder(&self, name: &str) -> Result<Arc<Encoder>> {
        self.encoders
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownEncoder(name.to_string()))
    }

    /// Inserts or replaces a user from its embedding (validated and
    /// normalised), and places it in a segment when segments are built.
    pub fn upsert_embedding(&self, user: u64, vector: &[f32]) -> Result<Upserted> {
        let _gate = self.gate.read();
        self.upsert_locked(user, vector)
    }

    fn upsert_locked(&self, user: u64, vector: &[f32]) -> Result<Upserted> {
        self.index.upsert(user, vector)?;
        self.counters.upserts.fetch_add(1, Ordering::Relaxed);
        let mut segments = self.segments.write();
        let segment = match segments.as_mut() {
            // Placement fails only when no segment is served; the user is
            // indexed either way and joins at the next build.
            Some(s) => s.place(&self.index, user).ok().map(|p| p.segment),
            None => None,
        };
        Ok(Upserted { segment })
    }

    /// Inserts or replaces many users from their embeddings (row-major,
    /// `users.len() * dim` values; indexed in parallel). Every row is checked
    /// before anything changes.
    pub fn upsert_embeddings(&self, users: &[u64], vectors: &[f32]) -> Result<()> {
        let _gate = self.gate.read();
        self.index.upsert_batch(users, vectors)?;
        self.counters
            .upserts
            .fetch_add(users.len() as u64, Ordering::Relaxed);
        if let Some(s) = self.segments.write().as_mut() {
            for &u in users {
                // See upsert_locked: only fails when nothing is served.
                let _ = s.place(&self.index, u);
            }
        }
        Ok(())
    }

    /// Encodes a user's dense features with encoder `encoder`, then upserts
    /// the embedding.
    pub fn upsert_features(&self, encoder: &str, user: u64, features: &[f32]) -> Result<Upserted> {
        let encoded = self.encoder(encoder)?.encode_features(features)?;
        if encoded.rows() != 1 {
            return Err(Error::ShapeMismatch {
                input: "features".into(),
                expected: "one row".into(),
                got: format!("{} rows", encoded.rows()),
            });
        }
        let _gate = self.gate.read();
        self.upsert_locked(user, encoded.row(0))
    }

    /// Encodes a user's items (oldest first) with encoder `encoder`, then
    /// upserts the embedding. Item-sequence models get the sequence;
    /// features models with the `item_bag` layout get the bag of items.
    pub fn upsert_sequence(&self, encoder: &str, user: u64, items: &[u64]) -> Result<Upserted> {
        let history = UserHistory {
            user,
            items: items.to_vec(),
            weights: vec![1.0; items.len()],
            times: Vec::new(),
        };
        let encoded = self.encoder(encoder)?.encode_histories(&[history], false)?;
        let _gate = self.gate.read();
        self.upsert_locked(user, encoded.row(0))
    }

    /// Deletes a user everywhere: its segment membership, the index, and its
    /// own bandit state (segment and pooled counts keep its anonymous
    /// contribution). Returns false if the user was not indexed.
    pub fn delete_user(&self, user: u64) -> Result<bool> {
        let _gate = self.gate.read();
        if !self.index.contains(user) {
            return Ok(false);
        }
        // Held until the user is out of the index too, so that a concurrent
        // upsert of the same user cannot place it in a segment in between
        // (a segment member must be indexed).
        let mut segments = self.segments.write();
        if let Some(s) = segments.as_mut() {
            s.remove(&self.index, user)?;
        }
        match self.index.delete(user) {
            Ok(()) => {}
            // Deleted by another thread meanwhile.
            Err(Error::UnknownUser(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        drop(segments);
        self.bandit.forget_user(user);
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Whether a user is indexed.
    pub fn contains(&self, user: u64) -> bool {
        self.index.contains(user)
    }

    /// The `k` users most similar to an indexed user (itself excluded).
    pub fn neighbors(&self, user: u64, k: usize) -> Result<Vec<Neighbor>> {
        self.index.neighbors(user, k, &SearchOptions::default())
    }

    /// The `k` users most similar to a vector.
    pub fn search(&self, vector: &[f32], k: usize) -> Result<Vec<Neighbor>> {
        self.index.search(vector, k, &SearchOptions::default())
    }

    /// Expands a seed segment (see [`crate::lookalike`]). The graph-based
    /// scorers use the engine's kNN graph, built on first use.
    pub fn lookalike(&self, request: &LookalikeRequest<'_>) -> Result<Expansion> {
        let graph = match request.scorer {
            Scorer::Diffusion | Scorer::Fusion => Some(self.knn_graph()?),
            _ => None,
        };
        let expansion = lookalike::expand(
            &self.index,
            graph.as_deref(),
            request,
            &self.config.lookalike,
        )?;
        self.counters.lookalikes.fetch_add(1, Ordering::Relaxed);
        Ok(expansion)
    }

    fn knn_graph(&self) -> Result<Arc<KnnGraph>> {
        if let Some(g) = self.graph.read().as_ref() {
            return Ok(g.clone());
        }
        let g = Arc::new(KnnGraph::build(
            &self.index,
            self.config.graph_k,
            &SearchOptions::default(),
        )?);
        *self.graph.write() = Some(g.clone());
        Ok(g)
    }

    /// Builds the segments (first call) or rebuilds them, and moves the
    /// bandit's segment counts to the new segments by member overlap. The
    /// discovery runs without blocking other operations; users indexed while
    /// it ran are placed afterwards.
    pub fn build_segments(&self) -> Result<SegmentsReport> {
        let previous = self.segments.read().clone();
        let (mut next, rebuild) = match &previous {
            None => (
                Segments::build(&self.index, self.config.segments.clone())?,
                None,
            ),
            Some(old) => {
                let (next, report) = old.rebuild(&self.index)?;
                (next, Some(report))
            }
        };
        let build = next.report().clone();
        let _gate = self.gate.write();
        let mut current = self.segments.write();
        // Users deleted while the discovery ran leave the new segments too
        // (a snapshot must only name live users).
        next.retain_indexed(&self.index)?;
        let mut placed_late = 0;
        for user in self.index.ids() {
            if next.segment_of(user).is_none() && next.place(&self.index, user).is_ok() {
                placed_late += 1;
            }
        }
        if let Some(old) = current.as_ref() {
            self.bandit.migrate_segments(&old.overlaps(&next));
        }
        *current = Some(next);
        *self.graph.write() = None;
        Ok(SegmentsReport {
            build,
            rebuild,
            placed_late,
        })
    }

    /// The segment of a user (`None`: not indexed, or no segments yet).
    pub fn segment_of(&self, user: u64) -> Option<SegmentId> {
        self.segments.read().as_ref()?.segment_of(user)
    }

    /// Ids of the served segments.
    pub fn segment_ids(&self) -> Vec<SegmentId> {
        self.segments
            .read()
            .as_ref()
            .map(Segments::ids)
            .unwrap_or_default()
    }

    /// A segment's profile: size, cohesion and representative users (item
    /// and category lifts need behaviour: see [`Segments::profiles`] through
    /// [`with_segments`](Self::with_segments)).
    pub fn segment_profile(&self, id: SegmentId) -> Result<SegmentProfile> {
        let guard = self.segments.read();
        let segments = guard.as_ref().ok_or(Error::NoSegments)?;
        segments.profile(&self.index, id, &ProfileOptions::default())
    }

    /// Runs `f` on the current segments (read-only).
    pub fn with_segments<R>(&self, f: impl FnOnce(Option<&Segments>) -> R) -> R {
        f(self.segments.read().as_ref())
    }

    /// Chooses a slate (see [`crate::bandit`]). When the request names a user
    /// but no segment, the user's segment is used. A segment the engine does
    /// not serve (never built, retired by a rebuild, dissolved under the
    /// privacy floor; before [`build_segments`](Self::build_segments) none is
    /// served) is [`Error::UnknownSegment`], and no decision is recorded.
    pub fn decide(&self, request: &Request<'_>) -> Result<Decision> {
        let mut request = *request;
        {
            let segments = self.segments.read();
            match request.segment {
                Some(s) => {
                    if segments.as_ref().is_none_or(|g| g.size(s).is_err()) {
                        return Err(Error::UnknownSegment(s));
                    }
                }
                None => {
                    request.segment = request.user.and_then(|u| segments.as_ref()?.segment_of(u));
                }
            }
        }
        self.bandit.decide(&request)
    }

    /// What `item`'s posterior for `user` in `segment` is made of, level by
    /// level (see [`SlateBandit::explain`](crate::bandit::SlateBandit::explain)),
    /// and the learned host blend's weights. Segments resolve as in
    /// [`decide`](Self::decide): no segment but a user means the user's
    /// segment; a segment the engine does not serve is
    /// [`Error::UnknownSegment`].
    pub fn explain(
        &self,
        segment: Option<SegmentId>,
        user: Option<u64>,
        item: u64,
        now: Option<f64>,
    ) -> Result<(Readout, HostModel)> {
        let segment = {
            let segments = self.segments.read();
            match segment {
                Some(s) => {
                    if segments.as_ref().is_none_or(|g| g.size(s).is_err()) {
                        return Err(Error::UnknownSegment(s));
                    }
                    Some(s)
                }
                None => user.and_then(|u| segments.as_ref()?.segment_of(u)),
            }
        };
        let readout = self.bandit.explain(segment, user, item, now)?;
        Ok((readout, self.bandit.host_model()))
    }

    /// Records the clicks on a decided slate (once per decision).
    pub fn feedback(&self, feedback: &Feedback<'_>) -> Result<()> {
        let _gate = self.gate.read();
        self.bandit.feedback(feedback)
    }

    /// The bandit's count changes since the previous export, for other
    /// replicas (needs [`EngineConfig::replica_id`]; see [`crate::bandit::Delta`]).
    pub fn export_delta(&self) -> Result<Delta> {
        if self.config.replica_id.is_none() {
            return Err(Error::invalid(
                "replica_id",
                "set EngineConfig::replica_id to exchange deltas",
            ));
        }
        let _gate = self.gate.read();
        Ok(self.bandit.export_delta())
    }

    /// Merges another replica's delta; `Ok(false)` for duplicates and this
    /// replica's own deltas.
    pub fn merge_delta(&self, delta: &Delta) -> Result<bool> {
        let _gate = self.gate.read();
        self.bandit.merge_delta(delta)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            users: self.index.len(),
            segments: self.segments.read().as_ref().map_or(0, |s| s.ids().len()),
            encoders: self.encoders.read().len(),
            upserts: c.upserts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            lookalikes: c.lookalikes.load(Ordering::Relaxed),
            snapshots: c.snapshots.load(Ordering::Relaxed),
            bandit: self.bandit.stats(),
        }
    }

    /// A consistent copy of the state (see the module docs). With `saving`,
    /// the snapshot counter counts the save being made (undo it with
    /// [`Counters::snapshots`]`.fetch_sub` if the save then fails).
    fn parts(&self, store_graph: bool, saving: bool) -> Result<Parts> {
        let _gate = self.gate.write();
        let index = self.index.export_state(store_graph)?;
        let segments = self.segments.read().clone();
        let bandit = self.bandit.export_state();
        let c = &self.counters;
        let snapshots = if saving {
            c.snapshots.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            c.snapshots.load(Ordering::Relaxed)
        };
        let counters = snapshot::SavedCounters {
            upserts: c.upserts.load(Ordering::Relaxed),
            deletes: c.deletes.load(Ordering::Relaxed),
            lookalikes: c.lookalikes.load(Ordering::Relaxed),
            snapshots,
        };
        Ok(Parts {
            index,
            segments,
            bandit,
            counters,
        })
    }

    /// Users in the index that are not in any segment (for tests and checks).
    pub fn unsegmented_users(&self) -> Vec<u64> {
        let guard = self.segments.read();
        let Some(s) = guard.as_ref() else {
            return self.index.ids();
        };
        let members: HashSet<u64> = s.assignments().into_iter().map(|(u, _)| u).collect();
        self.index
            .ids()
            .into_iter()
            .filter(|u| !members.contains(u))
            .collect()
    }
}
