//! User labels: a user → label file (a CRM list, demographics, a segment
//! export), grouped into segments of user ids.

use std::collections::BTreeMap;
use std::path::Path;

use super::ids::IdMapper;
use super::table::Table;
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
    pub fn load(
        path: impl AsRef<Path>,
        user_col: &str,
        label_col: &str,
        delimiter: Option<u8>,
    ) -> Result<Self> {
        let mut table = Table::open(path.as_ref(), delimiter)?;
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
}
