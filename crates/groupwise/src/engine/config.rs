//! The engine's configuration: one struct with production defaults, loadable
//! from a JSON file in which every field is optional.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bandit::BanditConfig;
use crate::error::{Error, Result};
use crate::index::IndexConfig;
use crate::lookalike::LookalikeConfig;
use crate::segments::SegmentConfig;

/// An encoder the engine loads at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// The name operations refer to (e.g. `"seq"`).
    pub name: String,
    /// The ONNX model file. In a config file, a relative path is relative to
    /// the file's folder.
    pub path: PathBuf,
}

/// What snapshots store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotConfig {
    /// Store the HNSW graph (default true). Loading then skips re-inserting
    /// every user, which is the slow part of a load (BENCHMARKS.md: at 100k
    /// users, seconds instead of minutes), at the price of a larger file.
    pub store_graph: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { store_graph: true }
    }
}

/// Everything an [`Engine`](super::Engine) is built from.
///
/// As JSON (all fields optional but `dim`; omitted ones take the defaults
/// documented on each type):
///
/// ```json
/// {
///   "dim": 64,
///   "encoders": [{ "name": "seq", "path": "models/ml100k-seq.onnx" }],
///   "segments": { "min_size": 50 },
///   "bandit": { "prior_beta": 99.0, "half_life": 604800.0 },
///   "replica_id": 3
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Embedding dimension: the encoders' output size and the index's
    /// vector size.
    pub dim: usize,
    /// The user index (its `dim` is set from [`dim`](Self::dim)).
    #[serde(default)]
    pub index: IndexConfig,
    /// Segment discovery and serving.
    #[serde(default)]
    pub segments: SegmentConfig,
    /// The slate bandit.
    #[serde(default)]
    pub bandit: BanditConfig,
    /// Lookalike expansion.
    #[serde(default)]
    pub lookalike: LookalikeConfig,
    /// Encoders loaded at start (default none; see [`Engine::load_encoder`](super::Engine::load_encoder)).
    #[serde(default)]
    pub encoders: Vec<EncoderSpec>,
    /// What snapshots store.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// Neighbours per user of the kNN graph the graph-based lookalike scorers
    /// use (default 15). The graph is built on first use and after each
    /// segment build.
    #[serde(default = "default_graph_k")]
    pub graph_k: usize,
    /// This replica's id when several engines merge their bandit learning
    /// (default none: no journal is kept). See [`crate::bandit::Delta`].
    #[serde(default)]
    pub replica_id: Option<u64>,
}

fn default_graph_k() -> usize {
    15
}

impl EngineConfig {
    /// Defaults for embeddings of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        EngineConfig {
            dim,
            index: IndexConfig::new(dim),
            segments: SegmentConfig::default(),
            bandit: BanditConfig::default(),
            lookalike: LookalikeConfig::default(),
            encoders: Vec::new(),
            snapshot: SnapshotConfig::default(),
            graph_k: default_graph_k(),
            replica_id: None,
        }
    }

    /// Reads a JSON config file. Relative encoder paths are resolved
    /// against the file's folder.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config = Self::parse(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: e.line() as u64,
            problem: format!("not a valid engine config: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for e in &mut config.encoders {
            if e.path.is_relative() {
                e.path = base.join(&e.path);
            }
        }
        Ok(config)
    }

    /// Parses a JSON config.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::parse(text)
            .map_err(|e| Error::invalid("config", format!("not a valid engine config: {e}")))
    }

    fn parse(text: &str) -> serde_json::Result<Self> {
        let mut config: EngineConfig = serde_json::from_str(text)?;
        config.index.dim = config.dim;
        Ok(config)
    }

    /// The config as pretty JSON (what [`from_json`](Self::from_json) reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The bandit configuration in force (replication settings applied).
    pub(crate) fn effective_bandit(&self) -> BanditConfig {
        let mut b = self.bandit.clone();
        if let Some(id) = self.replica_id {
            b.record_deltas = true;
            b.replica_id = id;
        }
        b
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::invalid("dim", "must be at least 1"));
        }
        if self.index.dim != self.dim {
            return Err(Error::DimensionMismatch {
                what: "index config".into(),
                expected: self.dim,
                got: self.index.dim,
            });
        }
        if self.graph_k == 0 {
            return Err(Error::invalid("graph_k", "must be at least 1"));
        }
        let mut names: Vec<&str> = self.encoders.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(
                "encoders",
                format!("the name {:?} is used twice", w[0]),
            ));
        }
        self.index.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_few_fields_takes_defaults() {
        let c = EngineConfig::from_json(
            r#"{"dim": 32, "bandit": {"prior_beta": 99.0}, "replica_id": 4}"#,
        )
        .expect("valid");
        assert_eq!(c.dim, 32);
        assert_eq!(c.index.dim, 32);
        assert_eq!(c.bandit.prior_beta, 99.0);
        assert_eq!(c.bandit.prior_alpha, BanditConfig::default().prior_alpha);
        assert!(c.effective_bandit().record_deltas);
        assert_eq!(c.segments, SegmentConfig::default());
        let again = EngineConfig::from_json(&c.to_json()).expect("round trip");
        assert_eq!(again, c);
    }

    #[test]
    fn a_bad_config_file_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("engine.json");
        std::fs::write(&path, "{\n  \"dim\": 8,\n  \"graph_k\": \"many\"\n}\n").expect("write");
        match EngineConfig::from_file(&path) {
            Err(Error::Parse {
                line: 3, problem, ..
            }) => assert!(
                problem.contains("graph_k") || problem.contains("string"),
                "{problem}"
            ),
            other => panic!("expected a parse error on line 3, got {other:?}"),
        }
    }

    #[test]
    fn unknown_or_wrong_fields_are_errors() {
        assert!(EngineConfig::from_json(r#"{"dim": 8, "dimm": 3}"#).is_err());
        assert!(EngineConfig::from_json(r#"{"dim": "eight"}"#).is_err());
        assert!(EngineConfig::from_json("{}").is_err());
        let mut c = EngineConfig::new(8);
        c.encoders = vec![
            EncoderSpec {
                name: "a".into(),
                path: "x.onnx".into(),
            },
            EncoderSpec {
                name: "a".into(),
                path: "y.onnx".into(),
            },
        ];
        assert!(c.validate().is_err());
    }
}
