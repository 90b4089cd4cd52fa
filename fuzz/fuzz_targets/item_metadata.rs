//! Fuzzes `ItemMetadata::from_reader` (the parser behind `ItemMetadata::load`).
//!
//! Input: one selector byte, then the file bytes.
//!
//! | bits | meaning |
//! |------|---------|
//! | 0    | MovieLens spec with a `movie_title` column (1) or the default `item_id,class` (0) |
//! | 1    | tab (1) or comma (0) |
//! | 2    | categories separated by `|` (1) or a space (0) |
//! | 3    | delimiter inferred from the name `fuzz.item`/`fuzz.csv` (1) or given (0) |
//! | 4    | feed the bytes in chunks of 1 + bits 5-7 bytes (1) or all at once (0) |
//!
//! Errors are fine; a panic is a bug. A successful parse must describe each
//! item once, with distinct category indices inside `category_names`.

#![no_main]

use groupwise::data::ids::stable_id;
use groupwise::data::{ItemMetadata, ItemMetadataSpec};
use groupwise_fuzz::{delimiter_and_name, source, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, bytes) = split(data);
    let (delimiter, name) = delimiter_and_name(sel & 0b10 != 0, sel & 0b1000 != 0, "item");
    let mut spec = if sel & 1 != 0 {
        ItemMetadataSpec::movielens()
    } else {
        ItemMetadataSpec::default()
    };
    spec.delimiter = delimiter;
    if sel & 0b100 != 0 {
        spec.category_sep = '|';
    }
    let reader = source(bytes, sel & 0b1_0000 != 0, 1 + usize::from(sel >> 5));
    let Ok(meta) = ItemMetadata::from_reader(reader, &name, &spec) else {
        return;
    };
    assert_eq!(meta.len(), meta.items.len());
    for name in &meta.category_names {
        assert!(
            !name.is_empty() && !name.contains(spec.category_sep),
            "{name:?}"
        );
    }
    for (id, raw) in meta.items.iter() {
        assert_eq!(stable_id(raw), id, "{raw:?}");
        let cats = meta.categories(id);
        for (i, &c) in cats.iter().enumerate() {
            assert!((c as usize) < meta.category_names.len());
            assert!(!cats[..i].contains(&c), "repeated category in {cats:?}");
        }
        assert_eq!(meta.title(id).is_some(), spec.title_col.is_some());
    }
});
