//! User labels: a user → label file (a CRM list, demographics, a segment
//! export), grouped into segments of user ids.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::ids::IdMapper;
use super::table::{open_file, Table};
use crate::error::Result;

/// Segments read from a labels file: label → users, labels in sorted order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    /// Label → stable ids of its users (in file order, without duplicates).
    pub segments: BTreeMap<String, Vec<u64>>,
    /// Original string ids of the users.
    pub users: IdMapper,
}

impl Labels {
    /// Reads `user_col` and `label_col` of a delimited file with a header
    /// (tab for `.tsv`/`.user`-like files, comma otherwise, unless `delimiter`
    /// is given). Empty labels are skipped; an empty user id is an error.
    ///
    /// Same as [`Labels::from_reader`] on the opened file, with the path as
    /// the name.
    pub fn load(
        path: impl AsRef<Path>,
        user_col: &str,
        label_col: &str,
        delimiter: Option<u8>,
    ) -> Result<Self> {
        let path = path.as_ref();
        Self::read(open_file(path)?, path, user_col, label_col, delimiter)
    }

    /// Reads labels from any byte source, with the same rules as
    /// [`Labels::load`].
    ///
    /// `name` stands in for the file path: errors report it, and when
    /// `delimiter` is `None` its extension picks the delimiter as for a path
    /// (`"u.user"` → tab, `"labels.csv"` or `""` → comma).
    ///
    /// ```
    /// use groupwise::data::Labels;
    /// let text = "user_id,plan\n1,pro\n2,free\n3,pro\n";
    /// let labels = Labels::from_reader(text.as_bytes(), "crm.csv", "user_id", "plan", None)?;
    /// assert_eq!(labels.segments["pro"], vec![1, 3]);
    /// # Ok::<(), groupwise::Error>(())
    /// ```
    pub fn from_reader(
        reader: impl Read,
        name: &str,
        user_col: &str,
        label_col: &str,
        delimiter: Option<u8>,
    ) -> Result<Self> {
        Self::read(reader, Path::new(name), user_col, label_col, delimiter)
    }

    fn read(
        reader: impl Read,
        path: &Path,
        user_col: &str,
        label_col: &str,
        delimiter: Option<u8>,
    ) -> Result<Self> {
        let mut table = Table::new(reader, path, delimiter)?;
        let u = table.column(user_col)?;
        let l = table.column(label_col)?;
        let mut out = Labels::default();
        table.for_each_record(|table, record, line| {
            let user = record.get(u).unwrap_or("").trim();
            if user.is_empty() {
                return Err(table.row_error(line, "empty user id"));
            }
            let label = record.get(l).unwrap_or("").trim();
            if label.is_empty() {
                return Ok(());
            }
            let id = out.users.map(user)?;
            let members = out.segments.entry(label.to_string()).or_default();
            if !members.contains(&id) {
                members.push(id);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_users_by_label() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("u.user");
        std::fs::write(
            &p,
            "user_id:token\tjob:token\n1\tartist\n2\tdoctor\n3\tartist\n4\t\n3\tartist\n",
        )
        .expect("write");
        let l = Labels::load(&p, "user_id", "job", None)?;
        assert_eq!(l.segments.len(), 2);
        assert_eq!(l.segments["artist"], vec![1, 3]);
        assert_eq!(l.segments["doctor"], vec![2]);
        Ok(())
    }

    #[test]
    fn from_reader_matches_load() -> Result<()> {
        let text = "user_id\tjob\n1\tartist\n2\tdoctor\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("u.user");
        std::fs::write(&p, text).expect("write");
        let from_file = Labels::load(&p, "user_id", "job", None)?;
        let from_mem = Labels::from_reader(text.as_bytes(), "u.user", "user_id", "job", None)?;
        assert_eq!(from_mem, from_file);
        // Without an extension and delimiter the text is read as CSV: one
        // column, so `job` is missing.
        assert!(Labels::from_reader(text.as_bytes(), "", "user_id", "job", None).is_err());
        Ok(())
    }
}
