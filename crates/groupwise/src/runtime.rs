//! Finding and loading ONNX Runtime.
//!
//! groupwise links ONNX Runtime dynamically (`ort` with `load-dynamic`), so
//! nothing is downloaded at build time and hosts can ship the library they
//! trust. The library is looked up, in order:
//!
//! 1. [`RuntimeConfig::library_path`], when set;
//! 2. the `ORT_DYLIB_PATH` environment variable, when set;
//! 3. the project-local default installed by `scripts/setup.sh`:
//!    `$GROUPWISE_HOME/lib/libonnxruntime.so`, else `.groupwise/lib/libonnxruntime.so`
//!    in the current directory or any parent, else next to the running
//!    executable or any parent of it.
//!
//! An explicit path (1 or 2) that does not exist is an error; it never falls
//! back silently. Existence is checked *before* `ort` is touched: with a missing
//! library `ort` would panic or block on first use.
//!
//! ONNX Runtime allows one environment per process. The first successful load
//! wins; later calls return the same environment whatever path they name
//! ([`loaded_library`] tells which file is in use).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Where to find ONNX Runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Explicit path to `libonnxruntime.so` (version 1.22 or newer).
    pub library_path: Option<PathBuf>,
}

struct Loaded {
    env: Environment,
    path: PathBuf,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

const LIB_NAME: &str = "libonnxruntime.so";

/// The library file [`environment`] would load for this config, or why none is found.
pub fn resolve_library(config: &RuntimeConfig) -> Result<PathBuf> {
    if let Some(p) = &config.library_path {
        return existing(p, "RuntimeConfig::library_path");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&p), "ORT_DYLIB_PATH");
    }
    let mut tried = Vec::new();
    for candidate in default_candidates() {
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    Err(Error::RuntimeUnavailable {
        reason: format!("no library found (looked at: {})", tried.join(", ")),
    })
}

fn existing(path: &Path, source: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::RuntimeUnavailable {
            reason: format!("{source} points to {}, which is not a file", path.display()),
        })
    }
}

fn default_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("GROUPWISE_HOME").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(home).join("lib").join(LIB_NAME));
    }
    let rel = Path::new(".groupwise").join("lib").join(LIB_NAME);
    for c in upward_candidates(&rel) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// `rel` joined to the current directory and each of its parents, then to the
/// running executable's directory and each of its parents: where a checkout's
/// project-local files (`.groupwise/`, `models/`) are looked for.
pub fn upward_candidates(rel: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        roots.push(dir);
    }
    roots
        .iter()
        .flat_map(|r| r.ancestors())
        .map(|d| d.join(rel))
        .collect()
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment(config: &RuntimeConfig) -> Result<&'static Environment> {
    if let Some(l) = LOADED.get() {
        return Ok(&l.env);
    }
    let _guard = INIT.lock();
    if let Some(l) = LOADED.get() {
        return Ok(&l.env);
    }
    let path = resolve_library(config)?;
    let builder = ort::init_from(&path).map_err(|e| Error::RuntimeUnavailable {
        reason: format!("could not load {}: {e}", path.display()),
    })?;
    let env = builder
        .with_name("groupwise")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::RuntimeUnavailable {
            reason: format!(
                "could not create the environment from {}: {e}",
                path.display()
            ),
        })?;
    Ok(&LOADED.get_or_init(|| Loaded { env, path }).env)
}

/// The library file in use, once [`environment`] has succeeded.
pub fn loaded_library() -> Option<&'static Path> {
    LOADED.get().map(|l| l.path.as_path())
}
