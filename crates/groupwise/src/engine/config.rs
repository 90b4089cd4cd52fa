//! The engine's configuration: one struct with production defaults, loadable
//! from a JSON file in which every field is optional.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bandit::BanditConfig;
use crate::error::{Error, Result};
use crate::index::IndexConfig;
use crate::limits::{self, MAX_CONFIG_BYTES, MAX_DIM, MAX_ENCODERS, MAX_NAME_LEN, MAX_NEIGHBOURS};
use crate::lookalike::LookalikeConfig;
use crate::segments::SegmentConfig;

/// An encoder the engine loads at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// The name operations refer to (e.g. `"seq"`; 1 to
    /// [`MAX_NAME_LEN`] bytes, unique in the config).
    pub name: String,
    /// The ONNX model file. In a config file, a relative path is relative to
    /// the file's folder.
    pub path: PathBuf,
}

/// What snapshots store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
/// documented on each type; a field that does not exist, at any level, is an
/// error). Every setting has a documented range, checked when an engine
/// opens (see [`crate::limits`] and the README's configuration table):
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
    /// vector size (1..=[`MAX_DIM`]).
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
    /// Encoders loaded at start (default none; at most [`MAX_ENCODERS`]; see
    /// [`Engine::load_encoder`](super::Engine::load_encoder)).
    #[serde(default)]
    pub encoders: Vec<EncoderSpec>,
    /// What snapshots store.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// Neighbours per user of the kNN graph the graph-based lookalike scorers
    /// use (default 15; 1..=[`MAX_NEIGHBOURS`]). The graph is built on first
    /// use and after each segment build.
    #[serde(default = "default_graph_k")]
    pub graph_k: usize,
    /// This replica's id when several engines merge their bandit learning
    /// (default none: no journal is kept; any value). See [`crate::bandit::Delta`].
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
    /// against the file's folder. Only a regular file of at most
    /// [`MAX_CONFIG_BYTES`] is read (anything else is an [`Error::Io`]
    /// naming the path). Malformed JSON and unknown fields are
    /// [`Error::Parse`] (with the line); a value out of its range is
    /// [`Error::InvalidConfig`] (see [`validate`](Self::validate)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text(path, Some((MAX_CONFIG_BYTES, "an engine config")))?;
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
        config.validate()?;
        Ok(config)
    }

    /// Parses a JSON config. Malformed JSON and unknown fields (at any
    /// level) are [`Error::InvalidArgument`]; a value out of its range is
    /// [`Error::InvalidConfig`] naming its key (see [`validate`](Self::validate)).
    pub fn from_json(text: &str) -> Result<Self> {
        let config = Self::parse(text)
            .map_err(|e| Error::invalid("config", format!("not a valid engine config: {e}")))?;
        config.validate()?;
        Ok(config)
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

    /// Checks every setting, nested ones included, against its documented
    /// range ([`Error::InvalidConfig`] names the key, e.g. `index.ef_search`).
    pub fn validate(&self) -> Result<()> {
        limits::count("dim", self.dim, 1..=MAX_DIM)?;
        if self.index.dim != self.dim {
            return Err(Error::DimensionMismatch {
                what: "index config".into(),
                expected: self.dim,
                got: self.index.dim,
            });
        }
        limits::count("graph_k", self.graph_k, 1..=MAX_NEIGHBOURS)?;
        if let Some(id) = self.replica_id {
            crate::bandit::check_replica_id("replica_id", id)?;
        }
        if self.encoders.len() > MAX_ENCODERS {
            return Err(Error::config(
                "encoders",
                format!(
                    "must list at most {MAX_ENCODERS} encoders, got {}",
                    self.encoders.len()
                ),
            ));
        }
        for (i, e) in self.encoders.iter().enumerate() {
            if e.name.is_empty() || e.name.len() > MAX_NAME_LEN {
                return Err(Error::config(
                    format!("encoders[{i}].name"),
                    format!(
                        "must be 1 to {MAX_NAME_LEN} bytes long, got {}",
                        e.name.len()
                    ),
                ));
            }
        }
        let mut names: Vec<&str> = self.encoders.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::config(
                "encoders",
                format!("use the name {:?} twice", w[0]),
            ));
        }
        self.index.validate()?;
        self.segments.validate()?;
        self.bandit.validate()?;
        self.lookalike.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Engine;

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

    /// A JSON object with `dim` 8 and the setting at `key` (dotted, as the
    /// errors name it) set to `value`. Capitalised parts of the key are enum
    /// variants, which get their other fields at their defaults.
    fn config_with(key: &str, value: &str) -> String {
        let graph =
            r#""algorithm": "Leiden", "k": 15, "resolution": 1.0, "iterations": 2, "ef": null"#;
        let kmeans = r#""k": 8, "max_iter": 100, "n_init": 3"#;
        let evidence = r#""w_min": 0.3, "w_max": 0.9, "n_half": 20.0"#;
        let learned = r#""prior_sd": 1.0, "memory": 20000.0"#;
        // The variant's other fields (this one is appended by the caller).
        let fields = |all: &str, name: &str| -> String {
            all.split(", ")
                .filter(|f| !f.starts_with(&format!("\"{name}\"")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let inner = match key.split('.').collect::<Vec<_>>().as_slice() {
            ["dim"] => return format!(r#"{{"dim": {value}}}"#),
            [top] => format!(r#""{top}": {value}"#),
            ["segments", "method", "Graph", f] => format!(
                r#""segments": {{"method": {{"Graph": {{{}, "{f}": {value}}}}}}}"#,
                fields(graph, f)
            ),
            ["segments", "method", "KMeans", f] => format!(
                r#""segments": {{"method": {{"KMeans": {{{}, "{f}": {value}}}}}}}"#,
                fields(kmeans, f)
            ),
            ["segments", "assign", "KnnVote", "k"] => {
                format!(r#""segments": {{"assign": {{"KnnVote": {{"k": {value}}}}}}}"#)
            }
            ["bandit", "blend", "Evidence", f] => format!(
                r#""bandit": {{"blend": {{"Evidence": {{{}, "{f}": {value}}}}}}}"#,
                fields(evidence, f)
            ),
            ["bandit", "blend", "Learned", f] => format!(
                r#""bandit": {{"blend": {{"Learned": {{{}, "{f}": {value}}}}}}}"#,
                fields(learned, f)
            ),
            ["bandit", "blend", "Fixed"] => {
                format!(r#""bandit": {{"blend": {{"Fixed": {value}}}}}"#)
            }
            ["bandit", "blend", "PriorMean", "strength"] => {
                format!(r#""bandit": {{"blend": {{"PriorMean": {{"strength": {value}}}}}}}"#)
            }
            ["bandit", "click_model", "Pbm", "examination"] => {
                format!(r#""bandit": {{"click_model": {{"Pbm": {{"examination": {value}}}}}}}"#)
            }
            ["encoders", "name"] => {
                format!(r#""encoders": [{{"name": {value}, "path": "m.onnx"}}]"#)
            }
            [section, field] => format!(r#""{section}": {{"{field}": {value}}}"#),
            other => panic!("no template for {other:?}"),
        };
        format!(r#"{{"dim": 8, {inner}}}"#)
    }

    /// Every setting: the key errors name, values just outside its range
    /// and values at its bounds (settings of any value, such as seeds, are
    /// listed with no bad value).
    const SETTINGS: &[(&str, &[&str], &[&str])] = &[
        ("dim", &["0", "65537", "1000000000"], &["1", "65536"]),
        (
            "graph_k",
            &["0", "1025", "18446744073709551615"],
            &["1", "1024"],
        ),
        (
            "replica_id",
            &["1024", "18446744073709551615"],
            &["0", "1023"],
        ),
        ("index.max_connections", &["3", "256"], &["4", "255"]),
        (
            "index.ef_construction",
            &["0", "4097", "4000000000"],
            &["1", "4096"],
        ),
        (
            "index.ef_search",
            &["0", "4097", "4000000000"],
            &["1", "4096"],
        ),
        ("index.capacity_hint", &["268435457"], &["0", "268435456"]),
        ("index.exact_below", &[], &["0", "18446744073709551615"]),
        ("index.exact_selectivity", &["-0.01", "1.01"], &["0", "1"]),
        (
            "index.rebuild_tombstone_fraction",
            &["0", "1.01"],
            &["1e-9", "1"],
        ),
        ("index.build_graph", &[], &["false", "true"]),
        ("segments.min_size", &["0"], &["1", "18446744073709551615"]),
        ("segments.min_overlap", &["0", "-3", "1.01"], &["1e-9", "1"]),
        ("segments.seed", &[], &["0", "18446744073709551615"]),
        ("segments.assign.KnnVote.k", &["0", "1025"], &["1", "1024"]),
        (
            "segments.method.Graph.k",
            &["0", "1025", "18446744073709551615"],
            &["1", "1024"],
        ),
        (
            "segments.method.Graph.resolution",
            &["0", "-1", "10001"],
            &["1e-9", "10000"],
        ),
        (
            "segments.method.Graph.iterations",
            &["0", "101", "18446744073709551615"],
            &["1", "100"],
        ),
        (
            "segments.method.Graph.ef",
            &["0", "4097"],
            &["1", "4096", "null"],
        ),
        (
            "segments.method.KMeans.k",
            &["0", "100001"],
            &["1", "100000"],
        ),
        (
            "segments.method.KMeans.max_iter",
            &["0", "10001"],
            &["1", "10000"],
        ),
        (
            "segments.method.KMeans.n_init",
            &["0", "101"],
            &["1", "100"],
        ),
        (
            "bandit.prior_alpha",
            &["0", "-1", "1.1e9"],
            &["1e-9", "1e9"],
        ),
        ("bandit.prior_beta", &["0", "-1", "1.1e9"], &["1e-9", "1e9"]),
        ("bandit.pooling_strength", &["-1", "1.1e9"], &["0", "1e9"]),
        ("bandit.category_strength", &["-1", "1.1e9"], &["0", "1e9"]),
        ("bandit.user_strength", &["-1", "1.1e9"], &["0", "1e9"]),
        ("bandit.half_life", &["0", "-5"], &["1e-9", "1e300", "null"]),
        ("bandit.max_users", &["0", "100000001"], &["1", "100000000"]),
        ("bandit.max_user_items", &["0", "100001"], &["1", "100000"]),
        (
            "bandit.max_pending",
            &["0", "100000001"],
            &["1", "100000000"],
        ),
        ("bandit.blend.Evidence.w_min", &["-0.1", "1.1"], &["0", "1"]),
        ("bandit.blend.Evidence.w_max", &["-0.1", "1.1"], &["0", "1"]),
        (
            "bandit.blend.Evidence.n_half",
            &["0", "1.1e9"],
            &["1e-9", "1e9"],
        ),
        ("bandit.blend.Fixed", &["-0.1", "1.1"], &["0", "1"]),
        (
            "bandit.blend.Learned.prior_sd",
            &["0", "-1", "100.1"],
            &["1e-9", "100"],
        ),
        (
            "bandit.blend.Learned.memory",
            &["0.5", "-1", "1.1e12"],
            &["1", "1e12"],
        ),
        ("bandit.pooling", &[], &["\"Evidence\"", "\"Mean\""]),
        (
            "bandit.blend.PriorMean.strength",
            &["0", "1.1e9"],
            &["1e-9", "1e9"],
        ),
        (
            "bandit.click_model.Pbm.examination",
            &["[]", "[1.5]", "[0.5, -0.1]"],
            &["[1]", "[0, 0.5, 1]"],
        ),
        ("bandit.prune", &[], &["false", "true"]),
        ("bandit.seed", &[], &["0", "18446744073709551615"]),
        ("bandit.record_deltas", &[], &["false", "true"]),
        (
            "bandit.replica_id",
            &["1024", "18446744073709551615"],
            &["0", "1023"],
        ),
        ("lookalike.min_seeds", &["10000001"], &["0", "10000000"]),
        (
            "lookalike.knn_k",
            &["0", "1025", "18446744073709551615"],
            &["1", "1024"],
        ),
        (
            "lookalike.knn_max_seeds",
            &["0", "1000001"],
            &["1", "1000000"],
        ),
        ("lookalike.negatives_per_seed", &["1001"], &["0", "1000"]),
        ("lookalike.min_negatives", &["20001"], &["0", "20000"]),
        (
            "lookalike.max_negatives",
            &["0", "1000001", "18446744073709551615"],
            &["1000", "1000000"],
        ),
        ("lookalike.l2", &["-1", "1000001"], &["0", "1000000"]),
        ("lookalike.restart", &["0", "1.5"], &["1e-9", "1"]),
        (
            "lookalike.iterations",
            &["0", "1001", "18446744073709551615"],
            &["1", "1000"],
        ),
        ("lookalike.explain_k", &["1025"], &["0", "1024"]),
        ("lookalike.seed", &[], &["0", "18446744073709551615"]),
        ("snapshot.store_graph", &[], &["false", "true"]),
    ];

    #[test]
    fn every_setting_is_refused_out_of_its_range_by_key_and_accepted_at_its_bounds() {
        for &(key, bad, good) in SETTINGS {
            for value in bad {
                let json = config_with(key, value);
                match EngineConfig::from_json(&json) {
                    Err(Error::InvalidConfig { key: got, problem }) => {
                        assert!(got.starts_with(key), "{json}: key {got}, expected {key}");
                        assert!(problem.contains("must"), "{json}: {problem}");
                    }
                    other => panic!("{json}: expected an error naming {key}, got {other:?}"),
                }
                // A config built in Rust is checked when the engine opens.
                let mut config: EngineConfig = serde_json::from_str(&json).expect("parses");
                config.index.dim = config.dim;
                assert!(
                    matches!(Engine::new(config), Err(Error::InvalidConfig { .. })),
                    "{json}"
                );
            }
            for value in good {
                let json = config_with(key, value);
                let config =
                    EngineConfig::from_json(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
                // Opening reserves the capacity hint up front: skip the
                // largest one.
                if key != "index.capacity_hint" {
                    Engine::new(config).unwrap_or_else(|e| panic!("{json}: {e}"));
                }
            }
        }
        // Encoder names (opening would load the model: check only).
        for (name, ok) in [
            ("\"\"".to_string(), false),
            (format!("\"{}\"", "n".repeat(257)), false),
            ("\"seq\"".to_string(), true),
        ] {
            let json = config_with("encoders.name", &name);
            match EngineConfig::from_json(&json) {
                Err(Error::InvalidConfig { key, .. }) => {
                    assert!(!ok && key == "encoders[0].name", "{json}: {key}")
                }
                Ok(_) => assert!(ok, "{json}"),
                Err(e) => panic!("{json}: {e}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_errors_at_every_level() {
        let graph =
            r#""algorithm": "Leiden", "k": 15, "resolution": 1.0, "iterations": 2, "ef": null"#;
        let cases = [
            r#"{"dim": 8, "typo": 1}"#.to_string(),
            r#"{"dim": 8, "index": {"typo": 1}}"#.into(),
            r#"{"dim": 8, "segments": {"typo": 1}}"#.into(),
            format!(r#"{{"dim": 8, "segments": {{"method": {{"Graph": {{{graph}, "typo": 1}}}}}}}}"#),
            r#"{"dim": 8, "segments": {"method": {"KMeans": {"k": 3, "max_iter": 9, "n_init": 1, "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "segments": {"method": {"Kmeans": {"k": 3, "max_iter": 9, "n_init": 1}}}}"#.into(),
            r#"{"dim": 8, "segments": {"assign": {"KnnVote": {"k": 3, "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "bandit": {"foo": 1}}"#.into(),
            r#"{"dim": 8, "bandit": {"blend": {"Evidence": {"w_min": 0, "w_max": 1, "n_half": 2, "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "bandit": {"blend": {"PriorMean": {"strength": 2, "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "bandit": {"blend": {"Learned": {"prior_sd": 1, "memory": 9, "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "bandit": {"pooling": "Median"}}"#.into(),
            r#"{"dim": 8, "bandit": {"click_model": {"Pbm": {"examination": [1], "typo": 1}}}}"#.into(),
            r#"{"dim": 8, "bandit": {"hierarchy": "Flat"}}"#.into(),
            r#"{"dim": 8, "lookalike": {"typo": 1}}"#.into(),
            r#"{"dim": 8, "snapshot": {"typo": 1}}"#.into(),
            r#"{"dim": 8, "encoders": [{"name": "a", "path": "m.onnx", "typo": 1}]}"#.into(),
        ];
        for json in cases {
            match EngineConfig::from_json(&json) {
                Err(Error::InvalidArgument { problem, .. }) => assert!(
                    problem.contains("unknown field") || problem.contains("unknown variant"),
                    "{json}: {problem}"
                ),
                other => panic!("{json}: expected an unknown-field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("engine.json");
        crate::files::tests::mkfifo(&fifo);
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            match EngineConfig::from_file(path) {
                Err(Error::Io { source, .. }) => {
                    assert!(
                        source.to_string().contains("not a regular file"),
                        "{source}"
                    )
                }
                other => panic!("{}: expected an I/O error, got {other:?}", path.display()),
            }
        }
        let big = dir.path().join("big.json");
        let mut text = String::from("{\"dim\": 8}");
        text.push_str(&" ".repeat(MAX_CONFIG_BYTES as usize));
        std::fs::write(&big, text).expect("write");
        let err = EngineConfig::from_file(&big).expect_err("too big");
        assert!(
            err.to_string().contains("an engine config may have"),
            "{err}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"dim": 8, "index": {"ef_search": 4000000000}}"#).expect("write");
        let err = EngineConfig::from_file(&bad).expect_err("out of range");
        assert_eq!(
            err.to_string(),
            "invalid config: `index.ef_search` must be in 1..=4096, got 4000000000"
        );
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
