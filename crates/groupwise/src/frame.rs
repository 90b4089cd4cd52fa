//! The framing shared by snapshots and replica deltas: a fixed header that
//! never changes between format versions, then a MessagePack payload.
//!
//! ```text
//! offset  size  field
//!      0     8  magic (identifies the kind of file)
//!      8     4  format version, u32 little-endian
//!     12     4  flags, u32 little-endian (reserved: must be 0)
//!     16     8  payload length in bytes, u64 little-endian
//!     24     8  XXH3-64 of bytes 8..24 followed by the payload, u64 little-endian
//!     32     …  payload (rmp-serde)
//! ```
//!
//! The checksum covers the version, flags and length as well as the payload,
//! so a flipped bit anywhere after the magic is reported as corruption; a
//! file whose checksum holds but whose version is unknown was written by
//! another build, and is reported as such. Reserved flags other than 0 are
//! refused (a later format that sets them is not readable by this build).
//!
//! A file is read by [`read_file`]: only a regular file, its header first,
//! then exactly the payload length the header declares, which must match
//! the file's size and stay under [`MAX_PAYLOAD_BYTES`].

use std::io::Read;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::limits::MAX_PAYLOAD_BYTES;

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 32;

/// What a frame's header says, once its checksum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub payload_len: u64,
    pub checksum: u64,
}

fn checksum(meta: &[u8], payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(meta);
    h.update(payload);
    h.digest()
}

/// Frames `payload` (already serialized).
pub(crate) fn encode(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    encode_with_flags(magic, version, 0, payload)
}

/// [`encode`] with other reserved flags than 0 (which [`decode`] refuses;
/// for tests).
pub(crate) fn encode_with_flags(
    magic: &[u8; 8],
    version: u32,
    flags: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = checksum(&out[8..24], payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn corrupt(path: &Path, problem: impl Into<String>) -> Error {
    Error::CorruptSnapshot {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks a frame and returns its header and payload. `path` names the
/// source in errors; `versions` is the range this build reads.
pub(crate) fn decode<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u32>,
    path: &Path,
) -> Result<(Header, &'a [u8])> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            path,
            format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header (truncated?)",
                bytes.len()
            ),
        ));
    }
    let payload_len = check_header(&bytes[..HEADER_LEN], magic, path)?;
    let version = le_u32(&bytes[8..12]);
    let flags = le_u32(&bytes[12..16]);
    let stored = le_u64(&bytes[24..32]);
    let payload = &bytes[HEADER_LEN..];
    check_length(payload_len, payload.len() as u64, path)?;
    let actual = checksum(&bytes[8..24], payload);
    if actual != stored {
        return Err(corrupt(
            path,
            format!("checksum mismatch (stored {stored:016x}, computed {actual:016x})"),
        ));
    }
    if flags != 0 {
        return Err(corrupt(
            path,
            format!("reserved header flags are {flags:#010x}, not 0 (written by another format?)"),
        ));
    }
    if !versions.contains(&version) {
        return Err(Error::SnapshotVersion {
            path: path.to_path_buf(),
            found: version,
            oldest: *versions.start(),
            newest: *versions.end(),
            advice: if version > *versions.end() {
                "it was written by a newer groupwise; upgrade this build to read it"
            } else {
                "it is older than any format this build can migrate; load it with an older groupwise and save again"
            },
        });
    }
    Ok((
        Header {
            version,
            payload_len,
            checksum: stored,
        },
        payload,
    ))
}

/// Checks the magic and the declared payload length of a header (exactly
/// [`HEADER_LEN`] bytes); returns that length.
fn check_header(header: &[u8], magic: &[u8; 8], path: &Path) -> Result<u64> {
    if &header[..8] != magic {
        return Err(corrupt(
            path,
            format!(
                "the file does not start with the magic bytes {:?}",
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    let payload_len = le_u64(&header[16..24]);
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(corrupt(
            path,
            format!(
                "the header announces {payload_len} payload bytes, more than the {MAX_PAYLOAD_BYTES} \
                 a snapshot or delta may hold"
            ),
        ));
    }
    Ok(payload_len)
}

/// Checks that the payload length a header announces is what follows it.
fn check_length(announced: u64, follows: u64, path: &Path) -> Result<()> {
    if announced != follows {
        return Err(corrupt(
            path,
            format!(
                "the header announces {announced} payload bytes but {follows} follow (truncated or extended)"
            ),
        ));
    }
    Ok(())
}

/// Reads a framed file for [`decode`]: only a regular file (a FIFO, a
/// device, a directory or a socket is an I/O error naming what it is,
/// refused before anything is read), and no more than its header declares.
/// The header's magic and length are checked before the payload is read: a
/// declared length beyond [`MAX_PAYLOAD_BYTES`] or other than what the file
/// holds is [`Error::CorruptSnapshot`]. A file shorter than a header is
/// returned as it is (for [`decode`] to report).
pub(crate) fn read_file(path: &Path, magic: &[u8; 8]) -> Result<Vec<u8>> {
    let (file, meta) = crate::files::open_regular(path)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    let mut reader = file.take(HEADER_LEN as u64);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() < HEADER_LEN {
        return Ok(bytes);
    }
    let payload_len = check_header(&bytes, magic, path)?;
    check_length(
        payload_len,
        meta.len().saturating_sub(HEADER_LEN as u64),
        path,
    )?;
    let mut file = reader.into_inner();
    bytes.reserve_exact(usize::try_from(payload_len).unwrap_or(0));
    (&mut file)
        .take(payload_len)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// [`read_file`] through a read-only memory map instead of a copy: the
/// same checks (a regular file whose header's magic and length agree with
/// its size) before the map is returned. A file shorter than a header is
/// read as it is. The map is private: a file replaced by a later save (a
/// rename) does not change it; a file truncated in place by another program
/// while mapped would fault the reader, as with any memory-mapped file.
pub(crate) fn map_file(path: &Path, magic: &[u8; 8]) -> Result<Mapped> {
    let (file, meta) = crate::files::open_regular(path)?;
    if meta.len() < HEADER_LEN as u64 {
        return Ok(Mapped::Copied(read_file(path, magic)?));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let payload_len = check_header(&header, magic, path)?;
    check_length(
        payload_len,
        meta.len().saturating_sub(HEADER_LEN as u64),
        path,
    )?;
    // SAFETY: a read-only private mapping of a regular file; see the doc
    // comment for what a concurrent truncation would do.
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Mapped::Map(std::sync::Arc::new(map)))
}

/// A file read by [`map_file`].
pub(crate) enum Mapped {
    /// Memory-mapped.
    Map(std::sync::Arc<memmap2::Mmap>),
    /// Too short to map usefully: read.
    Copied(Vec<u8>),
}

impl Mapped {
    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Map(m) => m,
            Mapped::Copied(v) => v,
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory is written and fsynced, renamed over `path`, and the directory
/// is fsynced. Until the rename, the previous file at `path` stays intact; a
/// crash leaves either the old or the new file, never a mix.
///
/// A crash mid-write leaves the temporary file (`.<name>.<pid>.*.tmp`);
/// the next save into the folder removes those of processes that are gone.
/// A new file is readable by its owner only (snapshots hold user data);
/// replacing a file keeps that file's permissions. A `path` that exists
/// and is not a regular file (a FIFO, a device, a directory) is refused and
/// left as it is.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    crate::files::check_writable(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} names no file", path.display())))?
        .to_string_lossy()
        .into_owned();
    let stem = format!(".{name}");
    sweep_leftovers(&dir, &stem);
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&stem))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        // Keep the permissions of the file being replaced (best effort).
        let _ = tmp.as_file().set_permissions(meta.permissions());
    }
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&dir, e))?;
    Ok(())
}

/// `<stem>.<pid>.`: the prefix of this process's temporary files, so that a
/// later process can tell the leftovers of dead ones.
pub(crate) fn temp_prefix(stem: &str) -> String {
    format!("{stem}.{}.", std::process::id())
}

/// Removes `<stem>.<pid>.*` entries (files or folders) in `dir` left by
/// processes that no longer run (a crash mid-save). Best effort: errors are
/// ignored, and nothing is removed where `/proc` cannot tell which
/// processes run.
pub(crate) fn sweep_leftovers(dir: &Path, stem: &str) {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(stem))
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().filter(|p| p.parse::<u32>().is_ok()) else {
            continue;
        };
        if pid == own || proc_root.join(pid).exists() {
            continue;
        }
        let p = entry.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"GWTEST\0\x1a";

    #[test]
    fn round_trip_and_every_single_bit_flip_is_detected() {
        let payload = b"hello, snapshot".to_vec();
        let framed = encode(MAGIC, 3, &payload);
        let (h, p) = decode(&framed, MAGIC, 1..=3, Path::new("x")).expect("valid");
        assert_eq!(h.version, 3);
        assert_eq!(p, &payload[..]);
        for bit in 0..framed.len() * 8 {
            let mut bad = framed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = decode(&bad, MAGIC, 1..=3, Path::new("x")).expect_err("flip detected");
            assert!(matches!(err, Error::CorruptSnapshot { .. }), "{err}");
        }
        for cut in 0..framed.len() {
            assert!(decode(&framed[..cut], MAGIC, 1..=3, Path::new("x")).is_err());
        }
    }

    #[test]
    fn versions_outside_the_range_get_a_version_error() {
        let framed = encode(MAGIC, 7, b"x");
        match decode(&framed, MAGIC, 1..=3, Path::new("x")) {
            Err(Error::SnapshotVersion {
                found: 7,
                newest: 3,
                ..
            }) => {}
            other => panic!("expected a version error, got {other:?}"),
        }
    }

    #[test]
    fn reserved_flags_must_be_zero() {
        for flags in [1u32, 0x8000_0000, u32::MAX] {
            let framed = encode_with_flags(MAGIC, 3, flags, b"payload");
            let err = decode(&framed, MAGIC, 1..=3, Path::new("x")).expect_err("flags refused");
            assert!(
                matches!(&err, Error::CorruptSnapshot { problem, .. } if problem.contains("reserved header flags")),
                "{err}"
            );
        }
        assert!(decode(
            &encode_with_flags(MAGIC, 3, 0, b"p"),
            MAGIC,
            1..=3,
            Path::new("x")
        )
        .is_ok());
    }

    /// A header declaring `len` payload bytes, with a valid checksum over
    /// an empty payload (what a crafted file would carry).
    fn header_declaring(len: u64) -> Vec<u8> {
        let mut out = encode(MAGIC, 3, b"");
        out[16..24].copy_from_slice(&len.to_le_bytes());
        let sum = checksum(&out[8..24], b"");
        out[24..32].copy_from_slice(&sum.to_le_bytes());
        out
    }

    #[test]
    fn files_are_read_only_as_far_as_their_header_declares() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.gw");
        let framed = encode(MAGIC, 3, b"hello, snapshot");
        std::fs::write(&path, &framed).expect("write");
        assert_eq!(read_file(&path, MAGIC).expect("read"), framed);

        // More declared than the file holds, and less.
        for (declared, follows) in [(1000u64, 0usize), (4, 15), (u64::MAX / 2, 15)] {
            let mut bytes = header_declaring(declared);
            bytes.extend(std::iter::repeat_n(b'x', follows));
            std::fs::write(&path, &bytes).expect("write");
            let err = read_file(&path, MAGIC).expect_err("refused");
            assert!(matches!(err, Error::CorruptSnapshot { .. }), "{err}");
            assert!(decode(&bytes, MAGIC, 1..=3, &path).is_err());
        }
        // Beyond the cap, whatever the file holds: refused before reading.
        let bytes = header_declaring(MAX_PAYLOAD_BYTES + 1);
        std::fs::write(&path, &bytes).expect("write");
        let err = read_file(&path, MAGIC).expect_err("refused");
        assert!(err.to_string().contains("more than the"), "{err}");
        let err = decode(&bytes, MAGIC, 1..=3, &path).expect_err("refused");
        assert!(err.to_string().contains("more than the"), "{err}");

        // Short files and other magics are left to decode / reported as such.
        std::fs::write(&path, b"short").expect("write");
        assert_eq!(read_file(&path, MAGIC).expect("short"), b"short");
        std::fs::write(&path, [b'{'; 64]).expect("write");
        let err = read_file(&path, MAGIC).expect_err("not ours");
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn non_regular_files_are_neither_read_nor_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe.gw");
        crate::files::tests::mkfifo(&fifo);
        for path in [
            fifo.as_path(),
            Path::new("/dev/zero"),
            Path::new("/dev/urandom"),
            dir.path(),
        ] {
            let err = read_file(path, MAGIC).expect_err("refused");
            assert!(matches!(err, Error::Io { .. }), "{err}");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let err = write_atomic(&fifo, b"data").expect_err("refused");
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(crate::files::tests::is_fifo(&fifo), "still a FIFO");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        assert!(write_atomic(&sub, b"data").is_err());
        assert!(sub.is_dir());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.gw");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let stray: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(stray.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn leftovers_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Pid 0 never names a user process; ours is alive.
        let dead = dir.path().join(".snap.gw.0.abc.tmp");
        let dead_dir = dir.path().join(".snap.gw.0.xyz");
        let live = dir
            .path()
            .join(format!(".snap.gw.{}.def.tmp", std::process::id()));
        let other = dir.path().join(".other.gw.0.abc.tmp");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"x").expect("write");
        }
        std::fs::create_dir(&dead_dir).expect("mkdir");
        write_atomic(&dir.path().join("snap.gw"), b"new").expect("write");
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(live.exists() && other.exists());
    }
}
