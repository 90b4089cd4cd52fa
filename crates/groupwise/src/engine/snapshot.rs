//! Engine snapshots: the whole engine in one file, written atomically and
//! checked on the way back.
//!
//! The file is a frame (magic `GWSNAP\0\x1a`, format version, length and an
//! XXH3-64 checksum over everything after the magic; see `frame.rs`) around a
//! MessagePack (rmp-serde) payload: the config, the index (vectors, ids,
//! tombstones and, by default, the HNSW graph), the segments and the bandit
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
//! **Versions.** [`SNAPSHOT_VERSION`] is written; every version from
//! `OLDEST_VERSION` up is read, older payloads migrated on load. A newer
//! file gives [`Error::SnapshotVersion`] telling to upgrade.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Counters, Engine, EngineConfig, Parts, SnapshotConfig};
use crate::bandit::{BanditState, SlateBandit, Stats};
use crate::error::{Error, Result};
use crate::frame;
use crate::index::{IndexState, UserIndex};
use crate::segments::Segments;

const MAGIC: &[u8; 8] = b"GWSNAP\0\x1a";

/// The snapshot format version this build writes.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 1;

/// The payload. MessagePack stores it as an array of its fields in this
/// order: new fields go at the end with `#[serde(default)]`, so older files
/// (a shorter array) still decode.
#[derive(Serialize, Deserialize)]
struct Body {
    groupwise_version: String,
    created_unix_ms: u64,
    config: EngineConfig,
    index: IndexState,
    segments: Option<Segments>,
    bandit: BanditState,
    /// Not in files written before groupwise stored it: zeros then.
    #[serde(default)]
    counters: SavedCounters,
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
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            load_encoders: true,
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
fn decode(bytes: &[u8], path: &Path) -> Result<(frame::Header, Body)> {
    let (header, payload) = frame::decode(bytes, MAGIC, OLDEST_VERSION..=SNAPSHOT_VERSION, path)?;
    // Version 1 is the only one so far. A version 2 keeps decoding version
    // 1 payloads here (into the v1 body type) and converts them.
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
        segments: body.segments.as_ref().map(|s| s.ids().len()),
        bandit_items: body.bandit.items(),
        bandit_users: body.bandit.users(),
        pending_decisions: body.bandit.pending(),
        bandit_stats: *body.bandit.stats(),
        replica_id: body.config.replica_id,
    }
}

/// Reads a snapshot file's header and contents without building an engine.
/// Damaged files give [`Error::CorruptSnapshot`].
pub fn inspect(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    inspect_at(&bytes, path)
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
    /// it holds.
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

    /// Loads a snapshot (and the encoders its config names).
    pub fn load(path: impl AsRef<Path>) -> Result<Engine> {
        Self::load_with(path, LoadOptions::default())
    }

    /// Loads a snapshot with options.
    pub fn load_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Engine> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes_at(&bytes, path, options)
    }

    /// Builds an engine from snapshot bytes, without opening encoders.
    pub fn from_bytes(bytes: &[u8]) -> Result<Engine> {
        Self::from_bytes_at(
            bytes,
            Path::new("<bytes>"),
            LoadOptions {
                load_encoders: false,
            },
        )
    }

    fn from_bytes_at(bytes: &[u8], path: &Path, options: LoadOptions) -> Result<Engine> {
        let (_, body) = decode(bytes, path)?;
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
        }
        let invalid = |e: Error| corrupt(path, e.to_string());
        let index = UserIndex::from_state(body.index).map_err(invalid)?;
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
}
