//! The embeddings file format written by `groupwise encode` and read by the other
//! commands: a NumPy `.npy` file (float32, C order, shape `[users, dim]`) next to
//! a text file with one user id per line, in row order (`<name>.ids.txt`).
//!
//! `.npy` is read by NumPy (`np.load`), and by most data tools through it, so
//! embeddings leave groupwise without a converter.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Embedding rows with their user ids.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    /// User ids as written by the host (one per row).
    pub ids: Vec<String>,
    /// Row-major `ids.len() * dim` values.
    pub data: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
}

/// The ids file that goes with an `.npy` file: `x.npy` → `x.ids.txt`.
pub fn ids_path(npy: &Path) -> PathBuf {
    npy.with_extension("ids.txt")
}

/// Writes a float32 matrix as `.npy` (version 1.0 header).
pub fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<()> {
    if data.len() != rows * cols {
        return Err(Error::invalid(
            "data",
            format!("{} values for a {rows}x{cols} matrix", data.len()),
        ));
    }
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&bytes)
        .and_then(|_| w.flush())
        .map_err(|e| Error::io(path, e))
}

/// Reads a 2-D float32 little-endian C-order `.npy` file: `(data, rows, cols)`.
/// Only a regular file is read (a FIFO or device is an [`Error::Io`]).
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = crate::files::read_regular(path, None)?;
    let bad = |problem: &str| Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        problem: problem.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated .npy header"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad(
            "only float32 little-endian ('<f4') arrays are supported",
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in the .npy header"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("bad shape in the .npy header"))
        })
        .collect::<Result<_>>()?;
    let (rows, cols) = match dims.as_slice() {
        [r, c] => (*r, *c),
        _ => return Err(bad("expected a 2-D array")),
    };
    let body = &bytes[start + hlen..];
    if rows.checked_mul(cols).and_then(|n| n.checked_mul(4)) != Some(body.len()) {
        return Err(bad(
            "the data size does not match the shape (truncated file?)",
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((data, rows, cols))
}

impl EmbeddingTable {
    /// Writes `path` (`.npy`) and its ids file.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_npy(path, &self.data, self.ids.len(), self.dim)?;
        let ids = ids_path(path);
        let mut text = self.ids.join("\n");
        text.push('\n');
        std::fs::write(&ids, text).map_err(|e| Error::io(&ids, e))
    }

    /// Reads `path` (`.npy`) and its ids file; the row counts must agree, and
    /// an id listed twice is an error naming both lines (one of the two rows
    /// would otherwise be lost when the rows are indexed by id).
    pub fn load(path: &Path) -> Result<Self> {
        let (data, rows, dim) = read_npy(path)?;
        let ids_file = ids_path(path);
        let text = crate::files::read_text(&ids_file, None)?;
        let mut ids: Vec<String> = Vec::with_capacity(rows);
        let mut line_of: HashMap<&str, u64> = HashMap::with_capacity(rows);
        for (n, id) in text.lines().enumerate() {
            if id.is_empty() {
                continue;
            }
            let line = n as u64 + 1;
            if let Some(first) = line_of.insert(id, line) {
                return Err(Error::Parse {
                    path: ids_file,
                    line,
                    problem: format!(
                        "user id {id:?} is listed twice (lines {first} and {line}); \
                         every row needs its own id"
                    ),
                });
            }
            ids.push(id.to_string());
        }
        if ids.len() != rows {
            return Err(Error::Parse {
                path: ids_file,
                line: ids.len() as u64,
                problem: format!("{} ids for {rows} embedding rows", ids.len()),
            });
        }
        Ok(EmbeddingTable { ids, data, dim })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_header_alignment() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("e.npy");
        let t = EmbeddingTable {
            ids: vec!["a".into(), "7".into()],
            data: vec![1.0, -2.5, 3.25, 0.0, f32::MIN_POSITIVE, 1e9],
            dim: 3,
        };
        t.save(&p)?;
        let bytes = std::fs::read(&p).expect("read");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0, "numpy aligns the data to 64 bytes");
        assert_eq!(EmbeddingTable::load(&p)?, t);

        std::fs::write(&p, &bytes[..bytes.len() - 2]).expect("truncate");
        assert!(EmbeddingTable::load(&p).is_err());
        Ok(())
    }

    #[test]
    fn an_id_listed_twice_is_an_error_naming_both_lines() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("e.npy");
        EmbeddingTable {
            ids: vec!["a".into(), "b".into(), "c".into()],
            data: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            dim: 2,
        }
        .save(&p)?;
        // A blank line does not shift the line numbers reported.
        std::fs::write(ids_path(&p), "a\n\nb\na\n").expect("write ids");
        let err = EmbeddingTable::load(&p).expect_err("duplicate id");
        let msg = err.to_string();
        assert!(matches!(err, Error::Parse { line: 4, .. }), "{msg}");
        assert!(
            msg.contains("e.ids.txt:4:") && msg.contains("\"a\"") && msg.contains("lines 1 and 4"),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn special_files_and_absurd_shapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("e.npy");
        crate::files::tests::mkfifo(&fifo);
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            let err = read_npy(path).expect_err("refused");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        // A shape whose byte size overflows: refused, not wrapped around.
        let p = dir.path().join("big.npy");
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 1), }}\n",
            1u64 << 62
        );
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        std::fs::write(&p, &bytes).expect("write");
        assert!(read_npy(&p).is_err());
    }
}
