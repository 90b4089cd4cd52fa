//! Fuzzes replica deltas: `Delta::from_bytes`, then `merge_delta` into a
//! bandit that already holds state. Bytes from another replica are untrusted:
//! they must be refused or merged, never panic, and a merge must leave the
//! bandit in a state that saves and loads.
//!
//! Input: one selector byte, then the bytes.
//!
//! | selector % 3 | the bytes are |
//! |--------------|---------------|
//! | 0 | the delta as published (exercises the frame checks) |
//! | 1 | the MessagePack payload, framed with a valid checksum by the target |
//! | 2 | structure-aware: byte 0 picks one of two real deltas (pooled, segment, category and user counts, decayed or not), the rest is a list of value edits of its payload (`groupwise_fuzz::edit`), framed with a valid checksum |
//!
//! **Invariants** (a violation aborts):
//! * a refused merge changes nothing (the bandit's exported state is equal
//!   before and after);
//! * after a merge, the bandit's state is valid (`SlateBandit::from_state`
//!   accepts it: a snapshot taken now would load), and merging the same
//!   delta again is a no-op;
//! * a delta that decodes encodes to bytes that decode to the same delta.

#![no_main]

use std::sync::OnceLock;

use groupwise::bandit::{BanditConfig, BanditState, Delta, SlateBandit};
use groupwise_fuzz::{edit, frame, split};
use libfuzzer_sys::fuzz_target;

fn config(replica: u64, half_life: Option<f64>) -> BanditConfig {
    BanditConfig {
        record_deltas: true,
        replica_id: replica,
        half_life,
        ..BanditConfig::default()
    }
}

/// Two real deltas of replica 1 (without and with decay), as bytes.
fn deltas() -> &'static [Vec<u8>] {
    static DELTAS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    DELTAS.get_or_init(|| {
        [None, Some(3600.0)]
            .into_iter()
            .map(|h| {
                let a = SlateBandit::new(config(1, h)).expect("config");
                a.set_item_categories(&[(5, 1), (6, 2)]);
                a.record(Some(3), Some(9), &[(5, 1.0, 2.0), (6, 0.0, 1.0)], Some(10.0))
                    .expect("record");
                a.record(Some(4), Some(8), &[(7, 2.0, 0.5)], Some(100.0))
                    .expect("record");
                a.record(None, None, &[(5, 0.5, 0.5)], None).expect("record");
                a.export_delta().to_bytes().expect("bytes")
            })
            .collect()
    })
}

/// The receiving bandit's state (replica 2, with counts of its own).
fn receiver() -> &'static BanditState {
    static STATE: OnceLock<BanditState> = OnceLock::new();
    STATE.get_or_init(|| {
        let b = SlateBandit::new(config(2, None)).expect("config");
        b.record(Some(3), Some(9), &[(5, 3.0, 4.0), (8, 1.0, 0.0)], Some(5.0))
            .expect("record");
        b.export_state()
    })
}

fuzz_target!(init: { let _ = (deltas(), receiver()); }, |data: &[u8]| {
    let (sel, bytes) = split(data);
    let prefix = &deltas()[0][..12];
    let input = match sel % 3 {
        0 => bytes.to_vec(),
        1 => frame(prefix, bytes),
        _ => {
            let (pick, edits) = split(bytes);
            let seed = &deltas()[usize::from(pick) % deltas().len()];
            let mut tree = edit::decode(&seed[32..]);
            edit::apply(&mut tree, edits);
            frame(prefix, &edit::encode(&tree))
        }
    };
    let Ok(delta) = Delta::from_bytes(&input) else {
        return;
    };
    let again = Delta::from_bytes(&delta.to_bytes().expect("encode")).expect("re-encoded delta decodes");
    assert_eq!(again, delta, "a delta changed through its bytes");

    let bandit = SlateBandit::from_state(receiver().clone()).expect("receiver state");
    let before = bandit.export_state();
    match bandit.merge_delta(&delta) {
        Err(_) => assert_eq!(bandit.export_state(), before, "a refused merge changed the bandit"),
        Ok(merged) => {
            let after = bandit.export_state();
            if let Err(e) = SlateBandit::from_state(after.clone()) {
                panic!("a merge left a state that does not load: {e}");
            }
            if merged {
                assert!(!bandit.merge_delta(&delta).expect("merge again"), "merged twice");
                assert_eq!(bandit.export_state(), after, "a repeated merge changed the bandit");
            }
        }
    }
});
