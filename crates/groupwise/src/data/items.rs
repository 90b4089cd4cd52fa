//! Item metadata: each item's categories (genres, brands, ...) and an optional
//! title, used to describe users, neighbours and segments.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::ids::IdMapper;
use super::table::{open_file, Table};
use crate::error::Result;

/// Which columns of an item metadata file hold what.
#[derive(Debug, Clone)]
pub struct ItemMetadataSpec {
    /// Column with the item id (default `item_id`).
    pub item_col: String,
    /// Column with the categories (default `class`, as in MovieLens from recbole).
    pub category_col: String,
    /// Separator between categories inside the category field (default a space).
    pub category_sep: char,
    /// Optional column with a human-readable title.
    pub title_col: Option<String>,
    /// Field delimiter; `None` picks tab for `.tsv`/`.item`-like files, else comma.
    pub delimiter: Option<u8>,
}

impl Default for ItemMetadataSpec {
    fn default() -> Self {
        ItemMetadataSpec {
            item_col: "item_id".into(),
            category_col: "class".into(),
            category_sep: ' ',
            title_col: None,
            delimiter: None,
        }
    }
}

impl ItemMetadataSpec {
    /// The spec for MovieLens items from recbole: `item_id`, `class`, `movie_title`.
    pub fn movielens() -> Self {
        ItemMetadataSpec {
            title_col: Some("movie_title".into()),
            ..Self::default()
        }
    }
}

/// Categories (and titles) of items, with category names interned.
#[derive(Debug, Clone, Default)]
pub struct ItemMetadata {
    /// Category names; an item's categories are indices into this list.
    pub category_names: Vec<String>,
    categories: HashMap<u64, Vec<u32>>,
    titles: HashMap<u64, String>,
    /// Original string ids of items.
    pub items: IdMapper,
}

impl ItemMetadata {
    /// Reads an item metadata file. A repeated item id is an error.
    ///
    /// Same as [`ItemMetadata::from_reader`] on the opened file, with the path
    /// as the name.
    pub fn load(path: impl AsRef<Path>, spec: &ItemMetadataSpec) -> Result<Self> {
        let path = path.as_ref();
        Self::read(open_file(path)?, path, spec)
    }

    /// Reads item metadata from any byte source, with the same rules as
    /// [`ItemMetadata::load`].
    ///
    /// `name` stands in for the file path: errors report it, and when
    /// `spec.delimiter` is `None` its extension picks the delimiter as for a
    /// path (`"items.item"` → tab, `"items.csv"` or `""` → comma).
    ///
    /// ```
    /// use groupwise::data::{ItemMetadata, ItemMetadataSpec};
    /// let text = "item_id\tclass\n7\tAction Comedy\n";
    /// let meta = ItemMetadata::from_reader(text.as_bytes(), "items.tsv", &ItemMetadataSpec::default())?;
    /// assert_eq!(meta.categories(7).len(), 2);
    /// # Ok::<(), groupwise::Error>(())
    /// ```
    pub fn from_reader(reader: impl Read, name: &str, spec: &ItemMetadataSpec) -> Result<Self> {
        Self::read(reader, Path::new(name), spec)
    }

    fn read(reader: impl Read, path: &Path, spec: &ItemMetadataSpec) -> Result<Self> {
        let mut table = Table::new(reader, path, spec.delimiter)?;
        let item_col = table.column(&spec.item_col)?;
        let cat_col = table.column(&spec.category_col)?;
        let title_col = table.optional_column(spec.title_col.as_deref())?;
        let mut out = ItemMetadata::default();
        let mut index: HashMap<String, u32> = HashMap::new();
        table.for_each_record(|table, record, line| {
            let raw = record.get(item_col).unwrap_or("").trim();
            if raw.is_empty() {
                return Err(table.row_error(line, "empty item id"));
            }
            let item = out.items.map(raw)?;
            if out.categories.contains_key(&item) {
                return Err(table.row_error(line, format!("item {raw:?} appears twice")));
            }
            let mut cats = Vec::new();
            for name in record
                .get(cat_col)
                .unwrap_or("")
                .split(spec.category_sep)
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                let next = out.category_names.len() as u32;
                let id = *index.entry(name.to_string()).or_insert_with(|| {
                    out.category_names.push(name.to_string());
                    next
                });
                if !cats.contains(&id) {
                    cats.push(id);
                }
            }
            out.categories.insert(item, cats);
            if let Some(c) = title_col {
                out.titles
                    .insert(item, record.get(c).unwrap_or("").trim().to_string());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Number of items described.
    pub fn len(&self) -> usize {
        self.categories.len()
    }

    /// True when no item is described.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// The category indices of an item (empty for an unknown item).
    pub fn categories(&self, item: u64) -> &[u32] {
        self.categories.get(&item).map_or(&[], Vec::as_slice)
    }

    /// The title of an item, if the file had a title column.
    pub fn title(&self, item: u64) -> Option<&str> {
        self.titles.get(&item).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn loads_categories_and_rejects_duplicates() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("items.item");
        std::fs::write(
            &p,
            "item_id:token\tmovie_title:token_seq\tclass:token_seq\n\
             1\tToy Story\tAnimation Children's Comedy\n2\tHeat\tAction Thriller\n",
        )
        .expect("write");
        let meta = ItemMetadata::load(&p, &ItemMetadataSpec::movielens())?;
        assert_eq!(meta.len(), 2);
        let names: Vec<&str> = meta
            .categories(1)
            .iter()
            .map(|&c| meta.category_names[c as usize].as_str())
            .collect();
        assert_eq!(names, ["Animation", "Children's", "Comedy"]);
        assert_eq!(meta.title(2), Some("Heat"));
        assert!(meta.categories(99).is_empty());

        std::fs::write(&p, "item_id\tclass\n1\tA\n1\tB\n").expect("write");
        match ItemMetadata::load(&p, &ItemMetadataSpec::default()) {
            Err(Error::Parse { line: 3, .. }) => Ok(()),
            other => panic!("expected duplicate error on line 3, got {other:?}"),
        }
    }

    #[test]
    fn from_reader_reads_in_memory_text() -> Result<()> {
        let spec = ItemMetadataSpec {
            title_col: Some("title".into()),
            category_sep: '|',
            ..ItemMetadataSpec::default()
        };
        let text = "item_id,title,class\n1,\"Heat, 1995\",Action|Thriller\n";
        let meta = ItemMetadata::from_reader(text.as_bytes(), "items.csv", &spec)?;
        assert_eq!(meta.title(1), Some("Heat, 1995"));
        assert_eq!(meta.categories(1), [0, 1]);
        let err = ItemMetadata::from_reader("a,b\n".as_bytes(), "meta", &spec)
            .expect_err("missing column");
        assert!(err.to_string().starts_with("meta:1:"), "{err}");
        Ok(())
    }
}
