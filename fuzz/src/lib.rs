//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every parser target reads its first input byte as a *selector* that picks
//! the parser options (column names, delimiter, how the bytes are fed), and
//! the remaining bytes as the file contents. Seeds in `corpus/<target>/` start
//! with such a byte; see README.md for each target's bit layout.

use std::io::Read;

/// Splits fuzz input into the selector byte and the file bytes (empty input
/// gives selector 0 and no bytes).
pub fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, &[]),
    }
}

/// A reader that hands out at most `chunk` bytes per `read` call, so the CSV
/// reader's buffer refills happen at arbitrary points inside fields, quotes
/// and line endings.
pub struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl<'a> Chunked<'a> {
    /// Wraps `data`, serving at most `chunk` (at least 1) bytes per read.
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Chunked {
            data,
            chunk: chunk.max(1),
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = tail;
        Ok(n)
    }
}

/// The byte source for a parser: the whole slice at once, or (when `chunked`)
/// a [`Chunked`] reader serving `chunk` bytes per call.
pub fn source(data: &[u8], chunked: bool, chunk: usize) -> Box<dyn Read + '_> {
    if chunked {
        Box::new(Chunked::new(data, chunk))
    } else {
        Box::new(data)
    }
}

/// The delimiter and the source name for a target: tab or comma, either given
/// explicitly (`infer == false`) or left to the loader to infer from the
/// name's extension (`fuzz.<tab_ext>` for tab, `fuzz.csv` for comma).
pub fn delimiter_and_name(tab: bool, infer: bool, tab_ext: &str) -> (Option<u8>, String) {
    let delimiter = if tab { b'\t' } else { b',' };
    let name = if tab {
        format!("fuzz.{tab_ext}")
    } else {
        "fuzz.csv".to_string()
    };
    (if infer { None } else { Some(delimiter) }, name)
}
