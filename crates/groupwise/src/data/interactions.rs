//! Interaction logs: (user, item, optional weight, optional timestamp) rows.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::ids::IdMapper;
use super::table::{open_file, Table};
use crate::error::Result;

/// Which columns of an interactions file hold what.
#[derive(Debug, Clone)]
pub struct InteractionsSpec {
    /// Column with the user id (default `user_id`).
    pub user_col: String,
    /// Column with the item id (default `item_id`).
    pub item_col: String,
    /// Optional column with a weight or rating (a finite number within the
    /// `f32` range, |w| ≤ 3.4e38).
    pub weight_col: Option<String>,
    /// Optional column with a timestamp (any finite number; only the order matters).
    pub time_col: Option<String>,
    /// Field delimiter; `None` picks tab for `.tsv`/`.inter`-like files, else comma.
    pub delimiter: Option<u8>,
}

impl Default for InteractionsSpec {
    fn default() -> Self {
        InteractionsSpec {
            user_col: "user_id".into(),
            item_col: "item_id".into(),
            weight_col: None,
            time_col: None,
            delimiter: None,
        }
    }
}

impl InteractionsSpec {
    /// The spec for MovieLens-style logs: `user_id`, `item_id`, `rating`, `timestamp`.
    pub fn movielens() -> Self {
        InteractionsSpec {
            weight_col: Some("rating".into()),
            time_col: Some("timestamp".into()),
            ..Self::default()
        }
    }
}

/// One row of an interactions file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    /// Stable user id.
    pub user: u64,
    /// Stable item id.
    pub item: u64,
    /// Weight (1.0 when the file has no weight column).
    pub weight: f32,
    /// Timestamp (the row number when the file has no time column).
    pub time: f64,
}

/// A user's interactions in time order (ties keep file order).
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    /// Stable user id.
    pub user: u64,
    /// Item ids, oldest first.
    pub items: Vec<u64>,
    /// Weights aligned with `items`.
    pub weights: Vec<f32>,
    /// Timestamps aligned with `items`.
    pub times: Vec<f64>,
}

/// A loaded interactions log.
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    /// Rows in file order.
    pub rows: Vec<Interaction>,
    /// Original string ids of users.
    pub users: IdMapper,
    /// Original string ids of items.
    pub items: IdMapper,
}

impl Interactions {
    /// Reads an interactions file. Every row must have the header's number of
    /// fields, a non-empty user and item id, a finite weight within the `f32`
    /// range and a finite time.
    ///
    /// Same as [`Interactions::from_reader`] on the opened file, with the path
    /// as the name.
    pub fn load(path: impl AsRef<Path>, spec: &InteractionsSpec) -> Result<Self> {
        let path = path.as_ref();
        Self::read(open_file(path)?, path, spec)
    }

    /// Reads an interactions log from any byte source (a buffer, a socket, a
    /// decompressor), with the same rules as [`Interactions::load`].
    ///
    /// `name` stands in for the file path: errors report it (`name:line:
    /// problem`), and when `spec.delimiter` is `None` its extension picks the
    /// delimiter as for a path (`"log.tsv"` → tab, `"log.csv"` or `""` → comma).
    ///
    /// ```
    /// use groupwise::data::{Interactions, InteractionsSpec};
    /// let text = "user_id,item_id\nalice,7\nbob,7\n";
    /// let log = Interactions::from_reader(text.as_bytes(), "inline.csv", &InteractionsSpec::default())?;
    /// assert_eq!(log.len(), 2);
    /// # Ok::<(), groupwise::Error>(())
    /// ```
    pub fn from_reader(reader: impl Read, name: &str, spec: &InteractionsSpec) -> Result<Self> {
        Self::read(reader, Path::new(name), spec)
    }

    fn read(reader: impl Read, path: &Path, spec: &InteractionsSpec) -> Result<Self> {
        let mut table = Table::new(reader, path, spec.delimiter)?;
        let user_col = table.column(&spec.user_col)?;
        let item_col = table.column(&spec.item_col)?;
        let weight_col = table.optional_column(spec.weight_col.as_deref())?;
        let time_col = table.optional_column(spec.time_col.as_deref())?;

        let mut out = Interactions::default();
        table.for_each_record(|table, record, line| {
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let (user_raw, item_raw) = (field(user_col), field(item_col));
            if user_raw.is_empty() || item_raw.is_empty() {
                return Err(table.row_error(line, "empty user or item id"));
            }
            let bad = |what: &str, c: usize, problem: &str| {
                table.row_error(line, format!("{what} {:?} {problem}", field(c)))
            };
            let weight = match weight_col {
                Some(c) => parse_weight(field(c))
                    .ok_or_else(|| bad("weight", c, "is not a finite number within ±3.4e38"))?,
                None => 1.0,
            };
            let time = match time_col {
                Some(c) => parse_finite(field(c))
                    .ok_or_else(|| bad("timestamp", c, "is not a finite number"))?,
                None => out.rows.len() as f64,
            };
            let user = out.users.map(user_raw)?;
            let item = out.items.map(item_raw)?;
            out.rows.push(Interaction {
                user,
                item,
                weight,
                time,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the log has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each user's history in time order, users sorted by id.
    pub fn histories(&self) -> Vec<UserHistory> {
        let mut by_user: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            by_user.entry(r.user).or_default().push(i);
        }
        let mut users: Vec<u64> = by_user.keys().copied().collect();
        users.sort_unstable();
        users
            .into_iter()
            .map(|user| {
                let mut idx = by_user.remove(&user).unwrap_or_default();
                // Stable sort: equal timestamps keep file order.
                idx.sort_by(|&a, &b| self.rows[a].time.total_cmp(&self.rows[b].time));
                UserHistory {
                    user,
                    items: idx.iter().map(|&i| self.rows[i].item).collect(),
                    weights: idx.iter().map(|&i| self.rows[i].weight).collect(),
                    times: idx.iter().map(|&i| self.rows[i].time).collect(),
                }
            })
            .collect()
    }
}

fn parse_finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses a weight straight to `f32` (correctly rounded). A value that is
/// finite as an `f64` can still overflow `f32` (`1e39`); it is rejected rather
/// than stored as infinity.
fn parse_weight(s: &str) -> Option<f32> {
    s.parse::<f32>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        p
    }

    #[test]
    fn loads_typed_headers_and_orders_histories() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            &dir,
            "log.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
             7\t100\t4\t30\n7\t200\t5\t10\nbob\t100\t1\t5\n7\t300\t3\t10\n",
        );
        let log = Interactions::load(&p, &InteractionsSpec::movielens())?;
        assert_eq!(log.len(), 4);
        let h = log.histories();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].user, 7);
        assert_eq!(h[0].items, vec![200, 300, 100]);
        assert_eq!(h[0].weights, vec![5.0, 3.0, 4.0]);
        let bob = super::super::ids::stable_id("bob");
        assert_eq!(h[1].user, bob);
        assert_eq!(log.users.name(bob), Some("bob"));
        Ok(())
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("u,i,w\n1,2,3\n1,2\n", 3, "fields"),
            ("u,i,w\n1,2,3\n1,2,abc\n", 3, "weight"),
            ("u,i,w\n1,2,nan\n", 2, "weight"),
            ("u,i,w\n1,,1\n", 2, "empty"),
        ];
        for (text, line, needle) in cases {
            let p = write(&dir, "bad.csv", text);
            let spec = InteractionsSpec {
                user_col: "u".into(),
                item_col: "i".into(),
                weight_col: Some("w".into()),
                ..Default::default()
            };
            match Interactions::load(&p, &spec) {
                Err(Error::Parse {
                    line: l, problem, ..
                }) => {
                    assert_eq!(l, line, "{text:?}: {problem}");
                    assert!(problem.contains(needle), "{problem}");
                }
                other => panic!("expected a parse error for {text:?}, got {other:?}"),
            }
        }
        let p = write(&dir, "nocol.csv", "a,b\n1,2\n");
        let err = Interactions::load(&p, &InteractionsSpec::default()).expect_err("missing column");
        assert!(err.to_string().contains("no column `user_id`"), "{err}");
    }

    /// Found by `fuzz/` (target `interactions`): `1e308` is a finite `f64` but
    /// overflowed to an infinite `f32` weight, breaking the finite-weight
    /// contract (and every score computed from it).
    #[test]
    fn weights_beyond_f32_are_rejected() -> Result<()> {
        let spec = InteractionsSpec {
            user_col: "u".into(),
            item_col: "i".into(),
            weight_col: Some("w".into()),
            delimiter: Some(b','),
            ..Default::default()
        };
        // The fuzzer's input, minus its selector byte.
        let crash: &[u8] = b"u,i,w\n \xef\xbb\xbf\x0c\0ri\x16\0,\x02u,1e308";
        for text in [crash, b"u,i,w\n1,2,1e39\n", b"u,i,w\n1,2,-3.5e38\n"] {
            match Interactions::from_reader(text, "w.csv", &spec) {
                Err(Error::Parse {
                    line: 2, problem, ..
                }) => {
                    assert!(
                        problem.contains("weight") && problem.contains("3.4e38"),
                        "{problem}"
                    );
                }
                other => panic!("expected a weight error on line 2, got {other:?}"),
            }
        }
        // The largest finite f32 and a tiny value that rounds to zero still load.
        let ok = Interactions::from_reader(&b"u,i,w\n1,2,3.4e38\n1,3,1e-50\n"[..], "w.csv", &spec)?;
        assert_eq!(ok.rows[0].weight, 3.4e38);
        assert_eq!(ok.rows[1].weight, 0.0);
        Ok(())
    }

    #[test]
    fn from_reader_matches_load_and_names_the_source() -> Result<()> {
        let text = "user_id\titem_id\trating\ttimestamp\n7\t100\t4\t30\nbob\t200\t5\t10\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(&dir, "log.tsv", text);
        let spec = InteractionsSpec::movielens();
        let from_file = Interactions::load(&p, &spec)?;
        // The name's extension picks the delimiter like a path's would.
        let from_mem = Interactions::from_reader(text.as_bytes(), "log.tsv", &spec)?;
        assert_eq!(from_mem.rows, from_file.rows);
        assert_eq!(from_mem.users, from_file.users);
        assert_eq!(from_mem.items, from_file.items);

        let bad = "user_id,item_id\n1,\n";
        match Interactions::from_reader(bad.as_bytes(), "upload #3", &InteractionsSpec::default()) {
            Err(err @ Error::Parse { line: 2, .. }) => {
                assert!(err.to_string().starts_with("upload #3:2:"), "{err}");
            }
            other => panic!("expected a parse error on line 2, got {other:?}"),
        }
        Ok(())
    }
}
