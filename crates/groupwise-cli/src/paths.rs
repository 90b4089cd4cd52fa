//! Where the project-local files are: the data installed by scripts/setup.sh and
//! the reference models committed in models/.

use std::path::{Path, PathBuf};

/// First existing `rel` in the current directory or a parent, then next to the
/// executable or in a parent of it.
pub fn find_up(rel: &Path) -> Option<PathBuf> {
    groupwise::runtime::upward_candidates(rel)
        .into_iter()
        .find(|p| p.exists())
}

/// The MovieLens 100K folder: explicit, else `$GROUPWISE_HOME/data/ml-100k`,
/// else `.groupwise/data/ml-100k` found upwards.
pub fn movielens_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    data_dir(explicit, "ml-100k", "MovieLens 100K")
}

fn data_dir(explicit: Option<&Path>, name: &str, what: &str) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(home) = std::env::var_os("GROUPWISE_HOME").filter(|h| !h.is_empty()) {
        let p = PathBuf::from(home).join("data").join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    find_up(&Path::new(".groupwise").join("data").join(name))
        .ok_or_else(|| format!("{what} not found; run `scripts/setup.sh` (or pass the folder)"))
}

/// The Open Bandit Dataset sample: explicit, else `$GROUPWISE_HOME/data/obd`,
/// else `.groupwise/data/obd` found upwards.
pub fn obd_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    data_dir(explicit, "obd", "the Open Bandit Dataset sample")
}

/// Writes `contents` to `path`; an error names the file.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// Gets the file a user named with `flag` (e.g. `--out`) ready to be
/// written: a directory is refused, and missing parent folders are created.
/// Every error names the flag and the path as typed. Every command calls
/// this (or [`write_output`]) for each file it writes.
pub fn prepare_output(flag: &str, path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(format!("{flag}: the path is empty; give a file to write"));
    }
    if path.is_dir() {
        return Err(format!(
            "{flag} {shown}: is a directory; name the file to write, not a folder"
        ));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if parent.exists() && !parent.is_dir() {
            return Err(format!(
                "{flag} {shown}: {} is a file, not a folder",
                parent.display()
            ));
        }
        std::fs::create_dir_all(parent).map_err(|e| {
            format!(
                "{flag} {shown}: cannot create the folder {}: {e}",
                parent.display()
            )
        })?;
    }
    Ok(())
}

/// Writes `contents` to the file given with `flag` (see [`prepare_output`]).
pub fn write_output(flag: &str, path: &Path, contents: impl AsRef<[u8]>) -> Result<(), String> {
    prepare_output(flag, path)?;
    std::fs::write(path, contents).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// A committed model under models/, found upwards.
pub fn model(name: &str) -> Result<PathBuf, String> {
    find_up(&Path::new("models").join(name)).ok_or_else(|| {
        format!("models/{name} not found; run from a groupwise checkout or pass --model")
    })
}
