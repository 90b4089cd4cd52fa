//! Engine snapshots: the whole engine in one file, written atomically and
//! checked on the way back.
//!
//! The file is a frame (magic `GWSNAP\0\x1a`, format version, length and an
//! XXH3-64 checksum over everything after the magic; see `frame.rs`) around a
//! MessagePack (rmp-serde) payload: the config, the index (vectors, ids,
//! tombstones and, by default, the HNSW graph), the segments and the bandit
//! (counts at every level, per-user state, open decisions, replica journal).
//! Encoders are not copied into the snapshot: the config names their files,
//! and loading opens them again.
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

use super::{Engine, EngineConfig, SnapshotConfig};
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

/// The payload.
#[derive(Serialize, Deserialize)]
struct Body {
    groupwise_version: String,
    created_unix_ms: u64,
    config: EngineConfig,
    index: IndexState,
    segments: Option<Segments>,
    bandit: BanditState,
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
    /// The snapshot as bytes (what [`save`](Self::save) writes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_bytes_with(&self.config.snapshot)
    }

    fn to_bytes_with(&self, snapshot: &SnapshotConfig) -> Result<Vec<u8>> {
        let (index, segments, bandit) = self.parts(snapshot.store_graph)?;
        let body = Body {
            groupwise_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            config: self.config.clone(),
            index,
            segments,
            bandit,
        };
        let payload = rmp_serde::to_vec(&body)
            .map_err(|e| Error::invalid("snapshot", format!("cannot serialize: {e}")))?;
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
        let bytes = self.to_bytes_with(snapshot)?;
        frame::write_atomic(path, &bytes)?;
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
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
        Engine::assemble(config, index, body.segments, bandit, options.load_encoders)
    }
}
