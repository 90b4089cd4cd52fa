//! Shared plumbing of the delimited-text loaders: delimiter choice, header
//! lookup with typed names (`user_id:token`), and row errors with line numbers.
//!
//! A [`Table`] reads from any [`Read`]; the path-based loaders open the file
//! and hand it over, the in-memory entry points (`from_reader`) pass their
//! reader and a display name that stands in for the path in errors.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Picks the delimiter: the explicit one, else tab for `.tsv`/`.tab`/`.inter`/
/// `.item`/`.user` files, else comma.
pub(crate) fn delimiter_for(path: &Path, explicit: Option<u8>) -> u8 {
    if let Some(d) = explicit {
        return d;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("tsv" | "tab" | "inter" | "item" | "user") => b'\t',
        _ => b',',
    }
}

/// Opens `path` for reading; the error names the path.
pub(crate) fn open_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// An open delimited source with its header.
pub(crate) struct Table<R> {
    /// The file path, or the caller's name for an in-memory source; used in
    /// errors and (without an explicit delimiter) to pick the delimiter.
    pub path: PathBuf,
    pub reader: csv::Reader<R>,
    pub header: Vec<String>,
}

impl<R: Read> Table<R> {
    /// Wraps `source` and reads its header row. `path` names the source in
    /// errors and picks the delimiter by extension when `delimiter` is `None`.
    pub fn new(source: R, path: &Path, delimiter: Option<u8>) -> Result<Self> {
        let delimiter = delimiter_for(path, delimiter);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            // Tab-separated logs use no quoting (titles may contain `"`).
            .quoting(delimiter != b'\t')
            .has_headers(true)
            .flexible(false)
            .from_reader(source);
        let header = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_string)
            .collect();
        Ok(Table {
            path: path.to_path_buf(),
            reader,
            header,
        })
    }

    /// Index of the column called `name` (also matching a typed header such as
    /// `name:token`).
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name || h.split(':').next() == Some(name))
            .ok_or_else(|| Error::Parse {
                path: self.path.clone(),
                line: 1,
                problem: format!(
                    "no column `{name}` in the header (columns: {})",
                    self.header.join(", ")
                ),
            })
    }

    /// Index of an optional column.
    pub fn optional_column(&self, name: Option<&str>) -> Result<Option<usize>> {
        name.map(|n| self.column(n)).transpose()
    }

    /// Calls `f(record, line)` for every data row, stopping at the first error.
    pub fn for_each_record(
        &mut self,
        mut f: impl FnMut(&Self, &csv::StringRecord, u64) -> Result<()>,
    ) -> Result<()> {
        let mut record = csv::StringRecord::new();
        loop {
            match self.reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(csv_error(&self.path, e)),
            }
            let line = record.position().map_or(0, csv::Position::line);
            f(self, &record, line)?;
        }
    }

    pub fn row_error(&self, line: u64, problem: impl Into<String>) -> Error {
        Error::Parse {
            path: self.path.clone(),
            line,
            problem: problem.into(),
        }
    }
}

pub(crate) fn csv_error(path: &Path, err: csv::Error) -> Error {
    let line = err.position().map_or(0, csv::Position::line);
    let problem = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => err.to_string(),
    };
    Error::Parse {
        path: path.to_path_buf(),
        line,
        problem,
    }
}
