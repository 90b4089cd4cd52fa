//! Reading whole files without trusting them: only regular files are read
//! (a FIFO would block the host and a device such as `/dev/zero` never
//! ends), and never more than they hold or a caller's cap.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// What a file that is not a regular file is, for error messages.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

fn not_regular(path: &Path, meta: &Metadata, action: &str) -> Error {
    let what = kind(meta);
    let problem = if what == "not a regular file" {
        format!("{what}; only regular files are {action}")
    } else {
        format!("is {what}, not a regular file; only regular files are {action}")
    };
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, problem),
    )
}

/// Opens `path` for reading if it is a regular file (following symbolic
/// links). Anything else is an error naming the path and what it is, given
/// before any byte is read. The file is opened without blocking (a FIFO put
/// in its place after the check cannot hang the open) and checked again once
/// open.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta, "read"));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta, "read"));
    }
    Ok((file, meta))
}

/// The whole of a regular file (see [`open_regular`]), refusing one larger
/// than `limit` bytes (`what` names the file's role in that error, e.g.
/// "an engine config").
pub(crate) fn read_regular(path: &Path, limit: Option<(u64, &str)>) -> Result<Vec<u8>> {
    let (file, meta) = open_regular(path)?;
    let too_big = |size: u64, max: u64, what: &str| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{size} bytes or more, larger than the {max} bytes {what} may have"),
            ),
        )
    };
    let cap = match limit {
        Some((max, what)) if meta.len() > max => return Err(too_big(meta.len(), max, what)),
        Some((max, _)) => max,
        None => u64::MAX - 1,
    };
    // Some regular files (in /proc, /sys) report a size of 0 but have
    // content: read up to the cap, never past it.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if let Some((max, what)) = limit {
        if bytes.len() as u64 > max {
            return Err(too_big(bytes.len() as u64, max, what));
        }
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub(crate) fn read_text(path: &Path, limit: Option<(u64, &str)>) -> Result<String> {
    let bytes = read_regular(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            ),
        )
    })
}

/// Refuses to write over `path` if it exists and is not a regular file (a
/// FIFO, a device, a directory or a socket would be replaced by the rename
/// of an atomic write, or block it).
pub(crate) fn check_writable(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(not_regular(path, &meta, "written")),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Makes a FIFO at `path` (with the `mkfifo` tool).
    pub(crate) fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    pub(crate) fn is_fifo(path: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
    }

    #[test]
    fn only_regular_files_are_read_and_never_past_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        mkfifo(&fifo);
        for (path, what) in [
            (fifo.as_path(), "is a FIFO (named pipe)"),
            (Path::new("/dev/zero"), "is a character device"),
            (Path::new("/dev/urandom"), "is a character device"),
            (dir.path(), "is a directory"),
        ] {
            let err = read_regular(path, None).expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains(what) && text.contains(&path.display().to_string()),
                "{text}"
            );
            assert!(matches!(err, Error::Io { .. }));
            assert!(check_writable(path).is_err());
        }
        assert!(is_fifo(&fifo), "the FIFO is still a FIFO");

        let file = dir.path().join("f.json");
        std::fs::write(&file, vec![b' '; 100]).expect("write");
        assert_eq!(
            read_regular(&file, Some((100, "x"))).expect("fits").len(),
            100
        );
        let err = read_regular(&file, Some((99, "an engine config"))).expect_err("too big");
        assert!(
            err.to_string()
                .contains("99 bytes an engine config may have"),
            "{err}"
        );
        check_writable(&file).expect("a regular file may be replaced");
        check_writable(&dir.path().join("new")).expect("a new file may be written");
        // Symbolic links are followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).expect("symlink");
        assert!(read_regular(&link, None).is_err());
    }
}
