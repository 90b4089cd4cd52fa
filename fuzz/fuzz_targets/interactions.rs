//! Fuzzes `Interactions::from_reader` (the parser behind `Interactions::load`).
//!
//! Input: one selector byte, then the file bytes.
//!
//! | bits | meaning |
//! |------|---------|
//! | 0-1  | columns: 0 `user_id,item_id`; 1 MovieLens (`rating`, `timestamp`); 2 `u,i` + weight `w`; 3 `u,i` + time `t` |
//! | 2    | tab (1) or comma (0) |
//! | 3    | delimiter inferred from the name `fuzz.tsv`/`fuzz.csv` (1) or given (0) |
//! | 4    | feed the bytes in chunks of 1 + bits 5-7 bytes (1) or all at once (0) |
//!
//! Errors are fine; a panic is a bug. A successful parse must also be
//! consistent: the id mappers hold exactly the rows' ids, each mapped by the
//! documented rule, weights and times are finite, and `histories()`
//! partitions the rows.

#![no_main]

use std::collections::HashSet;

use groupwise::data::ids::{stable_id, IdMapper};
use groupwise::data::{Interactions, InteractionsSpec};
use groupwise_fuzz::{delimiter_and_name, source, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, bytes) = split(data);
    let (delimiter, name) = delimiter_and_name(sel & 0b100 != 0, sel & 0b1000 != 0, "tsv");
    let mut spec = match sel & 0b11 {
        0 => InteractionsSpec::default(),
        1 => InteractionsSpec::movielens(),
        2 => InteractionsSpec {
            user_col: "u".into(),
            item_col: "i".into(),
            weight_col: Some("w".into()),
            ..InteractionsSpec::default()
        },
        _ => InteractionsSpec {
            user_col: "u".into(),
            item_col: "i".into(),
            time_col: Some("t".into()),
            ..InteractionsSpec::default()
        },
    };
    spec.delimiter = delimiter;
    let reader = source(bytes, sel & 0b1_0000 != 0, 1 + usize::from(sel >> 5));
    let Ok(log) = Interactions::from_reader(reader, &name, &spec) else {
        return;
    };
    check(&log, &spec);
});

fn check(log: &Interactions, spec: &InteractionsSpec) {
    // The mappers hold exactly the ids that occur in the rows.
    let same_ids = |mapper: &IdMapper, ids: &HashSet<u64>| {
        ids.len() == mapper.len() && mapper.iter().all(|(id, _)| ids.contains(&id))
    };
    let users: HashSet<u64> = log.rows.iter().map(|r| r.user).collect();
    let items: HashSet<u64> = log.rows.iter().map(|r| r.item).collect();
    assert!(same_ids(&log.users, &users) && same_ids(&log.items, &items));
    for (i, row) in log.rows.iter().enumerate() {
        for (id, mapper) in [(row.user, &log.users), (row.item, &log.items)] {
            let raw = mapper.name(id).expect("every row id has a name");
            assert!(!raw.is_empty() && raw == raw.trim(), "{raw:?}");
            assert_eq!(stable_id(raw), id, "{raw:?}");
        }
        assert!(row.weight.is_finite(), "row {i}: weight {}", row.weight);
        assert!(row.time.is_finite(), "row {i}: time {}", row.time);
        if spec.weight_col.is_none() {
            assert_eq!(row.weight, 1.0);
        }
        if spec.time_col.is_none() {
            assert_eq!(row.time, i as f64);
        }
    }
    let histories = log.histories();
    assert!(histories.windows(2).all(|w| w[0].user < w[1].user));
    let mut total = 0;
    for h in &histories {
        assert!(!h.items.is_empty());
        assert_eq!(h.items.len(), h.weights.len());
        assert_eq!(h.items.len(), h.times.len());
        assert!(h.times.windows(2).all(|w| w[0] <= w[1]), "{:?}", h.times);
        total += h.items.len();
    }
    assert_eq!(total, log.len());
    assert_eq!(histories.len(), log.users.len());
}
