//! Fuzzes `Labels::from_reader` (the parser behind `Labels::load`).
//!
//! Input: one selector byte, then the file bytes.
//!
//! | bits | meaning |
//! |------|---------|
//! | 0-1  | columns (user, label): 0 `user_id,job`; 1 `user_id,age`; 2 `u,l`; 3 `user_id,user_id` (one column as both) |
//! | 2    | tab (1) or comma (0) |
//! | 3    | delimiter inferred from the name `fuzz.user`/`fuzz.csv` (1) or given (0) |
//! | 4    | feed the bytes in chunks of 1 + bits 5-7 bytes (1) or all at once (0) |
//!
//! Errors are fine; a panic is a bug. A successful parse must give non-empty
//! segments of distinct, named users.

#![no_main]

use groupwise::data::Labels;
use groupwise_fuzz::{delimiter_and_name, source, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, bytes) = split(data);
    let (delimiter, name) = delimiter_and_name(sel & 0b100 != 0, sel & 0b1000 != 0, "user");
    let (user_col, label_col) = match sel & 0b11 {
        0 => ("user_id", "job"),
        1 => ("user_id", "age"),
        2 => ("u", "l"),
        _ => ("user_id", "user_id"),
    };
    let reader = source(bytes, sel & 0b1_0000 != 0, 1 + usize::from(sel >> 5));
    let Ok(labels) = Labels::from_reader(reader, &name, user_col, label_col, delimiter) else {
        return;
    };
    for (label, members) in &labels.segments {
        assert!(!label.is_empty() && !members.is_empty());
        for (i, &id) in members.iter().enumerate() {
            assert!(labels.users.name(id).is_some());
            assert!(!members[..i].contains(&id), "duplicate {id} in {label:?}");
        }
    }
});
