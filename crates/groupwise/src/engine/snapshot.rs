//! Engine snapshots: the whole engine in one file, written atomically and
//! checked on the way back.
//!
//! The file is a frame (magic `GWSNAP\0\x1a`, format version, length and an
//! XXH3-64 checksum over everything after the magic; see `frame.rs`) around a
//! MessagePack (rmp-serde) payload: the config, the index (vectors, ids,
//! liveness and, by default, the HNSW graph as its backend's own bytes,
//! tagged `{backend, version, bytes}`), the segments and the bandit
//! (counts at every level, per-user state, open decisions, replica journal).
//! Encoders are not copied into the snapshot: the config names their files,
//! and loading opens them again. The engine's own counters (upserts,
//! deletes, lookalikes, snapshots) come last, so a loaded engine continues
//! them; files written before they were stored load with them at 0.
//!
//! Saving writes a temporary file next to the target, fsyncs it, renames it
//! over the target and fsyncs the folder: the previous snapshot stays valid
//! until the new one is complete, whatever the moment of a crash.
//!
//! **What is trusted.** Nothing: only a regular file is read or replaced
//! (a FIFO, a device, a directory or a socket is an I/O error naming what
//! it is, and is left as it is); the header is read first and then exactly
//! the payload length it declares, which must match the file's size and
//! stay under [`crate::limits::MAX_PAYLOAD_BYTES`]; reserved header flags
//! must be 0. After the checksum, every decoded value is checked before
//! anything is built: the config against its documented ranges, vectors
//! finite, unit-length and of the engine's dimension (the stored graph's
//! copy of them too), ids, liveness flags and vectors of agreeing lengths
//! with no user live twice, segments whose members are live users and whose
//! centroids are unit vectors of the engine's dimension, and bandit counts
//! finite, non-negative and at most [`crate::limits::MAX_COUNT`]. A
//! payload failing any check is [`Error::CorruptSnapshot`].
//!
//! **Loading** maps the file into memory by default ([`LoadOptions::mmap`]):
//! the checksum is computed over the map, and a usearch graph is served in
//! place from it (copied on the first write), so a read replica starts in
//! about a second at a million users (BENCHMARKS.md).
//!
//! **Versions.** [`SNAPSHOT_VERSION`] (2) is written; every version from
//! `OLDEST_VERSION` (1) up is read, older payloads migrated on load. A
//! format-1 file holds an hnsw_rs graph: it loads served by hnsw_rs, with
//! the same answers, unless [`LoadOptions::backend`] asks for another (the
//! graph is then rebuilt). A newer file gives [`Error::SnapshotVersion`]
//! telling to upgrade.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Counters, Engine, EngineConfig, Parts, SnapshotConfig};
use crate::bandit::{BanditState, SlateBandit, Stats};
use crate::error::{Error, Result};
use crate::frame;
use crate::index::{Backend, IndexState, IndexStateV1, UserIndex};
use crate::segments::Segments;

const MAGIC: &[u8; 8] = b"GWSNAP\0\x1a";

/// The snapshot format version this build writes.
pub const SNAPSHOT_VERSION: u32 = 2;
/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 1;

/// The payload. MessagePack stores it as an array of its fields in this
/// order: new fields go at the end with `#[serde(default)]`, so older files
/// (a shorter array) still decode.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    groupwise_version: String,
    created_unix_ms: u64,
    config: EngineConfig,
    #[serde(borrow)]
    index: IndexState<'a>,
    segments: Option<Segments>,
    bandit: BanditState,
    /// Not in files written before groupwise stored it: zeros then.
    #[serde(default)]
    counters: SavedCounters,
}

/// The format-1 payload: the same but for the index part.
#[derive(Deserialize)]
struct BodyV1 {
    groupwise_version: String,
    created_unix_ms: u64,
    config: EngineConfig,
    index: IndexStateV1,
    segments: Option<Segments>,
    bandit: BanditState,
    #[serde(default)]
    counters: SavedCounters,
}

impl BodyV1 {
    fn migrate(self) -> Body<'static> {
        let index = self.index.migrate();
        let mut config = self.config;
        // A stored hnsw_rs graph keeps its backend (see the module docs).
        config.index.backend = index.config().backend;
        Body {
            groupwise_version: self.groupwise_version,
            created_unix_ms: self.created_unix_ms,
            config,
            index,
            segments: self.segments,
            bandit: self.bandit,
            counters: self.counters,
        }
    }
}

/// The engine's own counters in a snapshot (see [`super::EngineStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct SavedCounters {
    pub(super) upserts: u64,
    pub(super) deletes: u64,
    pub(super) lookalikes: u64,
    /// Saves of this state's lineage, the one that wrote the file included.
    pub(super) snapshots: u64,
}

/// What a snapshot holds, as [`inspect`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// The file (or `<bytes>`).
    pub path: PathBuf,
    /// Format version.
    pub version: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// The stored XXH3-64 checksum (verified: a file that fails the check
    /// is an error, not an info).
    pub checksum: u64,
    /// The groupwise version that wrote it.
    pub groupwise_version: String,
    /// When it was written (milliseconds since the Unix epoch).
    pub created_unix_ms: u64,
    /// Embedding dimension.
    pub dim: usize,
    /// Encoders the config names.
    pub encoders: Vec<String>,
    /// Live users in the index.
    pub users: usize,
    /// Whether the HNSW graph is stored (else rebuilt on load).
    pub graph_stored: bool,
    /// The index backend the snapshot's config names (and its stored
    /// graph is for).
    pub backend: Backend,
    /// Served segments (`None`: never built).
    pub segments: Option<usize>,
    /// Items with bandit counts.
    pub bandit_items: usize,
    /// Users with their own bandit state.
    pub bandit_users: usize,
    /// Decisions awaiting feedback.
    pub pending_decisions: usize,
    /// The bandit's counters.
    pub bandit_stats: Stats,
    /// The replica id, when the engine exchanges deltas.
    pub replica_id: Option<u64>,
}

/// How to load a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Open the encoders the config names (default true). Without, the
    /// engine serves everything but upserts from behaviour until
    /// [`Engine::load_encoder`] is called (e.g. to inspect a snapshot on a
    /// machine without the models).
    pub load_encoders: bool,
    /// Read the file through a memory map (default true): a stored usearch
    /// graph is then served in place, not copied, until the first write.
    /// Off, the file is read into memory.
    pub mmap: bool,
    /// Serve the index from this backend whatever the snapshot's config
    /// names (default `None`: the config's). A stored graph of another
    /// backend is rebuilt.
    pub backend: Option<Backend>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            load_encoders: true,
            mmap: true,
            backend: None,
        }
    }
}

fn corrupt(path: &Path, problem: impl Into<String>) -> Error {
    Error::CorruptSnapshot {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Checks the frame and decodes the payload (migrating older versions).
fn decode<'a>(bytes: &'a [u8], path: &Path) -> Result<(frame::Header, Body<'a>)> {
    let (header, payload) = frame::decode(bytes, MAGIC, OLDEST_VERSION..=SNAPSHOT_VERSION, path)?;
    if header.version == 1 {
        let body = rmp_serde::from_slice::<BodyV1>(payload)
            .map_err(|e| corrupt(path, format!("cannot decode the format-1 payload: {e}")))?;
        return Ok((header, body.migrate()));
    }
    let body = rmp_serde::from_slice::<Body>(payload)
        .map_err(|e| corrupt(path, format!("cannot decode the payload: {e}")))?;
    Ok((header, body))
}

fn info(path: &Path, bytes: usize, header: &frame::Header, body: &Body) -> SnapshotInfo {
    SnapshotInfo {
        path: path.to_path_buf(),
        version: header.version,
        bytes: bytes as u64,
        checksum: header.checksum,
        groupwise_version: body.groupwise_version.clone(),
        created_unix_ms: body.created_unix_ms,
        dim: body.config.dim,
        encoders: body
            .config
            .encoders
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        users: body.index.live(),
        graph_stored: body.index.has_graph(),
        backend: body.config.index.backend,
        segments: body.segments.as_ref().map(|s| s.ids().len()),
        bandit_items: body.bandit.items(),
        bandit_users: body.bandit.users(),
        pending_decisions: body.bandit.pending(),
        bandit_stats: *body.bandit.stats(),
        replica_id: body.config.replica_id,
    }
}

/// Reads a snapshot file's header and contents without building an engine.
/// Damaged files give [`Error::CorruptSnapshot`]; a path that is not a
/// regular file is an [`Error::Io`] (see the module docs). The frame and the
/// payload's decoding are checked, not every value: that needs the engine
/// built (`Engine::load_with` with `load_encoders: false` checks all).
pub fn inspect(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let file = frame::map_file(path, MAGIC)?;
    inspect_at(file.bytes(), path)
}

/// [`inspect`] on bytes in memory.
pub fn inspect_bytes(bytes: &[u8]) -> Result<SnapshotInfo> {
    inspect_at(bytes, Path::new("<bytes>"))
}

fn inspect_at(bytes: &[u8], path: &Path) -> Result<SnapshotInfo> {
    let (header, body) = decode(bytes, path)?;
    Ok(info(path, bytes.len(), &header, &body))
}

impl Engine {
    /// The snapshot as bytes (what [`save`](Self::save) writes, but not
    /// counted as a save in [`EngineStats::snapshots`](super::EngineStats::snapshots)).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_bytes_with(&self.config.snapshot, false)
    }

    /// The snapshot's bytes; `saving` counts the save in the counters (and
    /// in the bytes).
    fn to_bytes_with(&self, snapshot: &SnapshotConfig, saving: bool) -> Result<Vec<u8>> {
        let Parts {
            index,
            segments,
            bandit,
            counters,
        } = self.parts(snapshot.store_graph, saving)?;
        let body = Body {
            groupwise_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            config: self.config.clone(),
            index,
            segments,
            bandit,
            counters,
        };
        let payload = rmp_serde::to_vec(&body).map_err(|e| {
            if saving {
                self.counters.snapshots.fetch_sub(1, Ordering::Relaxed);
            }
            Error::invalid("snapshot", format!("cannot serialize: {e}"))
        })?;
        Ok(frame::encode(MAGIC, SNAPSHOT_VERSION, &payload))
    }

    /// Saves a snapshot atomically (see the module docs) and returns what
    /// it holds. A `path` that exists and is not a regular file (a FIFO, a
    /// device, a directory) is an [`Error::Io`], and is left as it is.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        self.save_with(path, &self.config.snapshot)
    }

    /// Saves with other snapshot settings than the config's (e.g. without
    /// the graph, for a smaller file).
    pub fn save_with(
        &self,
        path: impl AsRef<Path>,
        snapshot: &SnapshotConfig,
    ) -> Result<SnapshotInfo> {
        let path = path.as_ref();
        let bytes = self.to_bytes_with(snapshot, true)?;
        if let Err(e) = frame::write_atomic(path, &bytes) {
            // Not saved: not counted.
            self.counters.snapshots.fetch_sub(1, Ordering::Relaxed);
            return Err(e);
        }
        inspect_at(&bytes, path)
    }

    /// Loads a snapshot (and the encoders its config names). Only a regular
    /// file is read, and no more of it than its header declares (see the
    /// module docs); every value in it is checked before use.
    pub fn load(path: impl AsRef<Path>) -> Result<Engine> {
        Self::load_with(path, LoadOptions::default())
    }

    /// Loads a snapshot with options.
    pub fn load_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Engine> {
        let path = path.as_ref();
        if options.mmap {
            let file = frame::map_file(path, MAGIC)?;
            let map = match &file {
                frame::Mapped::Map(m) => Some(m),
                frame::Mapped::Copied(_) => None,
            };
            return Self::from_bytes_at(file.bytes(), path, options, map);
        }
        let bytes = frame::read_file(path, MAGIC)?;
        Self::from_bytes_at(&bytes, path, options, None)
    }

    /// Builds an engine from snapshot bytes, without opening encoders.
    pub fn from_bytes(bytes: &[u8]) -> Result<Engine> {
        Self::from_bytes_at(
            bytes,
            Path::new("<bytes>"),
            LoadOptions {
                load_encoders: false,
                ..LoadOptions::default()
            },
            None,
        )
    }

    fn from_bytes_at(
        bytes: &[u8],
        path: &Path,
        options: LoadOptions,
        map: Option<&Arc<memmap2::Mmap>>,
    ) -> Result<Engine> {
        let (_, mut body) = decode(bytes, path)?;
        if let Some(backend) = options.backend {
            body.config.index.backend = backend;
            body.index.set_backend(backend);
        }
        let config = body.config;
        config
            .validate()
            .map_err(|e| corrupt(path, format!("its config is invalid: {e}")))?;
        if body.index.config() != &config.index {
            return Err(corrupt(
                path,
                "the index config disagrees with the engine's",
            ));
        }
        if body.bandit.config() != &config.effective_bandit() {
            return Err(corrupt(
                path,
                "the bandit config disagrees with the engine's",
            ));
        }
        if let Some(s) = &body.segments {
            if s.dim() != config.dim {
                return Err(corrupt(
                    path,
                    format!(
                        "segments of dimension {} in an engine of {}",
                        s.dim(),
                        config.dim
                    ),
                ));
            }
            if s.config() != &config.segments {
                return Err(corrupt(
                    path,
                    "the segments config disagrees with the engine's",
                ));
            }
        }
        let invalid = |e: Error| corrupt(path, e.to_string());
        let index = UserIndex::from_state_in(body.index, map).map_err(invalid)?;
        if let Some(s) = &body.segments {
            s.check(&index).map_err(invalid)?;
        }
        let bandit = SlateBandit::from_state(body.bandit).map_err(invalid)?;
        Engine::assemble(
            config,
            index,
            body.segments,
            bandit,
            Counters::restored(&body.counters),
            options.load_encoders,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::{Feedback, Request};

    /// A snapshot written by groupwise 0.1.0 at commit 5de7321 (format 1,
    /// before the engine counters were stored; decision ids were then
    /// 1, 2, ...). How it was made: `testdata/README.md`.
    const V1_BEFORE_COUNTERS: &[u8] = include_bytes!("testdata/v1-main-5de7321.gw");

    #[test]
    fn snapshots_written_before_the_counters_were_stored_still_load() -> Result<()> {
        let info = inspect_bytes(V1_BEFORE_COUNTERS)?;
        assert_eq!((info.version, info.users, info.segments), (1, 149, Some(3)));
        let engine = Engine::from_bytes(V1_BEFORE_COUNTERS)?;
        let s = engine.stats();
        assert_eq!((s.users, s.segments), (149, 3));
        // The engine counters were not in the file: they start at 0.
        assert_eq!(
            (s.upserts, s.deletes, s.lookalikes, s.snapshots),
            (0, 0, 0, 0)
        );
        let b = s.bandit;
        assert_eq!(
            (b.decisions, b.feedback_applied, b.clicks, b.impressions),
            (6, 5, 5, 15)
        );
        // Decision 4 was left open: it takes its feedback, once; decision 5
        // had its feedback before the save.
        let fb = |decision| Feedback {
            decision,
            clicks: &[0],
            visible: None,
            now: None,
        };
        engine.feedback(&fb(4))?;
        assert!(matches!(
            engine.feedback(&fb(4)),
            Err(Error::UnknownDecision(4))
        ));
        assert!(matches!(
            engine.feedback(&fb(5)),
            Err(Error::UnknownDecision(5))
        ));
        // New ids are far above the old counter's.
        let candidates: Vec<u64> = (100..110).collect();
        let d = engine.decide(&Request::new(Some(1), None, &candidates, 3))?;
        assert!(d.id > 1 << 50, "{}", d.id);
        // Written again by this build, the counters are kept.
        engine.upsert_embedding(1_000, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])?;
        let again = Engine::from_bytes(&engine.to_bytes()?)?;
        assert_eq!(again.stats(), engine.stats());
        assert_eq!(again.stats().upserts, 1);
        Ok(())
    }

    const DIM: usize = 8;

    /// A deterministic unit-ish vector around one of three directions.
    fn vector(user: u64) -> Vec<f32> {
        let mut x = user.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3
            })
            .collect();
        v[(user % 3) as usize * 2] += 1.0;
        v
    }

    /// An engine with every part filled: users (graph stored), segments, a
    /// bandit with categories, user state, a journal and a pending decision.
    fn engine() -> Engine {
        let mut config = EngineConfig::new(DIM);
        config.segments.min_size = 20;
        config.replica_id = Some(1);
        let engine = Engine::new(config).expect("config");
        let users: Vec<u64> = (1..=150).collect();
        let vectors: Vec<f32> = users.iter().flat_map(|&u| vector(u)).collect();
        engine.upsert_embeddings(&users, &vectors).expect("upsert");
        engine.delete_user(7).expect("delete"); // a tombstone
        engine.build_segments().expect("segments");
        engine.bandit().set_item_categories(&[(100, 1), (101, 2)]);
        for user in 1..40 {
            let d = engine
                .decide(&Request::new(Some(user), None, &[100, 101, 102, 103], 3))
                .expect("decide");
            let clicks = [(user % 3) as usize];
            engine
                .feedback(&Feedback {
                    decision: d.id,
                    clicks: &clicks,
                    visible: None,
                    now: Some(user as f64),
                })
                .expect("feedback");
        }
        engine
            .decide(&Request::new(Some(5), None, &[100, 101], 2))
            .expect("left pending");
        engine
    }

    fn payload_of(bytes: &[u8]) -> Vec<u8> {
        let (_, payload) = frame::decode(
            bytes,
            MAGIC,
            OLDEST_VERSION..=SNAPSHOT_VERSION,
            Path::new("x"),
        )
        .expect("a valid frame");
        payload.to_vec()
    }

    /// `body` re-encoded and framed with a valid checksum.
    fn reframed(body: &Body) -> Vec<u8> {
        let payload = rmp_serde::to_vec(body).expect("serialize");
        frame::encode(MAGIC, SNAPSHOT_VERSION, &payload)
    }

    type Corruption = Box<dyn Fn(&mut Body)>;

    #[test]
    fn payloads_with_a_valid_checksum_but_invalid_values_are_refused() {
        let payload = payload_of(&engine().to_bytes().expect("snapshot"));
        let decode = || rmp_serde::from_slice::<Body>(&payload).expect("decode");
        // The payload re-encoded as it is loads: what follows is each change.
        Engine::from_bytes(&reframed(&decode())).expect("the intact payload loads");

        let mut cases: Vec<(String, Corruption)> = Vec::new();
        let mut add = |what: &str, f: Corruption| cases.push((what.to_string(), f));
        // User vectors: non-finite, not unit, zero, of the wrong length.
        for (what, value) in [
            ("a vector component -inf", f32::NEG_INFINITY),
            ("a vector component +inf", f32::INFINITY),
            ("a vector component NaN", f32::NAN),
            ("a vector component 1e30", 1e30),
            ("a vector component 2", 2.0),
        ] {
            add(
                what,
                Box::new(move |b| {
                    b.index.vectors_mut()[4..8].copy_from_slice(&value.to_le_bytes())
                }),
            );
        }
        add(
            "a zero vector",
            Box::new(|b| b.index.vectors_mut()[..DIM * 4].fill(0)),
        );
        add(
            "vector bytes short of a row",
            Box::new(|b| {
                let v = b.index.vectors_mut();
                v.truncate(v.len() - 4);
            }),
        );
        add(
            "an id without a vector",
            Box::new(|b| b.index.ids_mut().push(999)),
        );
        add(
            "a liveness flag too many",
            Box::new(|b| b.index.alive_mut().push(true)),
        );
        add(
            "a user live twice",
            Box::new(|b| {
                let ids = b.index.ids_mut();
                ids[3] = ids[2];
            }),
        );
        add("search width 0", Box::new(|b| *b.index.ef_search_mut() = 0));
        add(
            "search width 4e9",
            Box::new(|b| *b.index.ef_search_mut() = 4_000_000_000),
        );
        add(
            "the stored graph cut short",
            Box::new(|b| {
                let g = b.index.graph_bytes_mut();
                g.truncate(g.len() - 1);
            }),
        );
        add(
            "a link of the stored graph out of range",
            Box::new(|b| b.index.break_a_graph_link()),
        );
        add(
            "the stored graph tagged with another backend",
            Box::new(|b| *b.index.graph_backend_mut() = Backend::HnswRs),
        );
        add(
            "the stored graph of another format version",
            Box::new(|b| *b.index.graph_version_mut() += 1),
        );
        // The config: ranges, in every part.
        add(
            "index.ef_search 4e9",
            Box::new(|b| {
                b.config.index.ef_search = 4_000_000_000;
            }),
        );
        add(
            "lookalike.iterations u64::MAX",
            Box::new(|b| {
                b.config.lookalike.iterations = usize::MAX;
            }),
        );
        add(
            "lookalike.knn_k u64::MAX",
            Box::new(|b| b.config.lookalike.knn_k = usize::MAX),
        );
        add(
            "graph_k u64::MAX",
            Box::new(|b| b.config.graph_k = usize::MAX),
        );
        add("dim 0", Box::new(|b| b.config.dim = 0));
        add(
            "segments.min_overlap -3",
            Box::new(|b| b.config.segments.min_overlap = -3.0),
        );
        add(
            "bandit.prior_beta -1",
            Box::new(|b| b.config.bandit.prior_beta = -1.0),
        );
        // Segments.
        add(
            "a centroid component -inf",
            Box::new(|b| {
                b.segments.as_mut().expect("segments").first_centroid_mut()[0] = f32::NEG_INFINITY;
            }),
        );
        add(
            "a centroid of the wrong dimension",
            Box::new(|b| {
                b.segments
                    .as_mut()
                    .expect("segments")
                    .first_centroid_mut()
                    .pop();
            }),
        );
        add(
            "a centroid not of unit length",
            Box::new(|b| {
                b.segments.as_mut().expect("segments").first_centroid_mut()[0] += 3.0;
            }),
        );
        add(
            "a member that is not indexed",
            Box::new(|b| {
                b.segments.as_mut().expect("segments").add_member(424_242);
            }),
        );
        add(
            "a deleted user as a member",
            Box::new(|b| {
                b.segments.as_mut().expect("segments").add_member(7);
            }),
        );
        add(
            "a membership recorded one way",
            Box::new(|b| {
                b.segments
                    .as_mut()
                    .expect("segments")
                    .member_of_mut()
                    .insert(424_242, 0);
            }),
        );
        add(
            "a segment id at the next id",
            Box::new(|b| {
                *b.segments.as_mut().expect("segments").next_id_mut() = 0;
            }),
        );
        add(
            "a non-finite cohesion",
            Box::new(|b| {
                b.segments.as_mut().expect("segments").report_mut().cohesion = f64::NAN;
            }),
        );
        add(
            "segments of another config",
            Box::new(|b| {
                b.config.segments.min_size = 21;
            }),
        );
        // Bandit: every count, with every bad value.
        let places = decode().bandit.counts_mut().len();
        assert!(places > 20, "{places} counts");
        for i in 0..places {
            for value in [
                -1.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                1e308,
                1.2e16,
            ] {
                add(
                    &format!("bandit count {i} = {value}"),
                    Box::new(move |b| {
                        b.bandit.counts_mut().swap_remove(i).1.successes = value;
                    }),
                );
            }
            add(
                &format!("bandit count {i} at time inf"),
                Box::new(move |b| {
                    b.bandit.counts_mut().swap_remove(i).1.time = f64::INFINITY;
                }),
            );
        }
        add(
            "a bandit item twice",
            Box::new(|b| b.bandit.duplicate_first_item()),
        );
        add(
            "two users with one tick",
            Box::new(|b| b.bandit.share_a_tick()),
        );

        for (what, corrupt) in &cases {
            let mut body = decode();
            corrupt(&mut body);
            match Engine::from_bytes(&reframed(&body)) {
                Err(Error::CorruptSnapshot { .. }) => {}
                Err(e) => panic!("{what}: expected a corrupt snapshot, got {e}"),
                Ok(_) => panic!("{what}: loaded"),
            }
        }
        // Reserved flags set around the intact payload.
        let flagged = frame::encode_with_flags(MAGIC, SNAPSHOT_VERSION, 4, &payload);
        for result in [
            Engine::from_bytes(&flagged).map(|_| ()),
            inspect_bytes(&flagged).map(|_| ()),
        ] {
            assert!(
                matches!(&result, Err(Error::CorruptSnapshot { problem, .. }) if problem.contains("flags")),
                "{result:?}"
            );
        }
    }

    #[test]
    fn snapshot_files_must_be_regular_and_no_larger_than_declared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::new(EngineConfig::new(DIM)).expect("engine");
        engine.upsert_embedding(1, &vector(1)).expect("upsert");
        // Special files: refused by what they are, before any read; none
        // hangs or reads without end.
        let fifo = dir.path().join("engine.gw");
        crate::files::tests::mkfifo(&fifo);
        for path in [
            fifo.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/urandom"),
            dir.path(),
        ] {
            for err in [
                Engine::load(path).map(|_| ()).expect_err("load refused"),
                inspect(path).map(|_| ()).expect_err("inspect refused"),
            ] {
                assert!(matches!(err, Error::Io { .. }), "{err}");
                let text = err.to_string();
                assert!(
                    text.contains("not a regular file")
                        && text.contains(&path.display().to_string()),
                    "{text}"
                );
            }
        }
        // Saving over a FIFO or a folder is refused, and leaves them be.
        let err = engine.save(&fifo).expect_err("save refused");
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(crate::files::tests::is_fifo(&fifo));
        assert!(engine.save(dir.path()).is_err());
        assert_eq!(engine.stats().snapshots, 0);

        // A header declaring more than the file holds, or more than the cap.
        let good = dir.path().join("good.gw");
        engine.save(&good).expect("save");
        let bytes = std::fs::read(&good).expect("read");
        let bad = dir.path().join("bad.gw");
        for declared in [
            bytes.len() as u64,
            crate::limits::MAX_PAYLOAD_BYTES + 1,
            u64::MAX,
        ] {
            let mut b = bytes.clone();
            b[16..24].copy_from_slice(&declared.to_le_bytes());
            std::fs::write(&bad, &b).expect("write");
            for err in [
                Engine::load(&bad).map(|_| ()).expect_err("refused"),
                inspect(&bad).map(|_| ()).expect_err("refused"),
            ] {
                assert!(
                    matches!(err, Error::CorruptSnapshot { .. }),
                    "{declared}: {err}"
                );
            }
        }
        Engine::load(&good).expect("the good file loads");
    }

    #[test]
    fn users_deleted_while_segments_build_leave_them_and_the_snapshot_loads() {
        // Segments built from users of which some are then deleted from the
        // index only (as a delete racing a build does) fail the check;
        // retain_indexed puts them right.
        let index = UserIndex::new(crate::IndexConfig::new(DIM)).expect("index");
        let users: Vec<u64> = (1..=90).collect();
        let vectors: Vec<f32> = users.iter().flat_map(|&u| vector(u)).collect();
        index.upsert_batch(&users, &vectors).expect("upsert");
        let config = crate::SegmentConfig {
            min_size: 10,
            ..Default::default()
        };
        let mut segments = Segments::build(&index, config).expect("segments");
        segments.check(&index).expect("consistent");
        for user in [3, 4, 50] {
            index.delete(user).expect("delete");
        }
        assert!(segments.check(&index).is_err());
        assert_eq!(segments.retain_indexed(&index).expect("retain"), 3);
        segments.check(&index).expect("consistent again");
    }
}
