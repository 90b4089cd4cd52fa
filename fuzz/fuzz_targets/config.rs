//! Fuzzes the engine config: `EngineConfig::from_json` on arbitrary text,
//! then `Engine::new` and a short life of the engine. A config is host
//! input: whatever it says, opening and using the engine must never panic,
//! abort (an allocation the size of a setting), hang (a loop as long as a
//! setting) or use memory without bound (`-rss_limit_mb`; `-timeout` flags
//! a slow input).
//!
//! Input: the JSON text (bytes that are not UTF-8 are skipped). Seeds in
//! `corpus/config/`; `config.dict` lists every key and variant name.
//!
//! **Invariants** (a violation aborts): a config `from_json` accepts opens
//! (`Engine::new`), and it round-trips through `to_json`. With a dimension
//! of at most 64 (so that one input stays fast), 64 users are upserted, then
//! searched, segmented, expanded with every scorer and served a slate with
//! feedback; errors are fine. The engine must then save a snapshot that loads.
//! Encoders listed are dropped before opening (their paths name files).

#![no_main]

use groupwise::bandit::{Feedback, Request};
use groupwise::lookalike::{LookalikeRequest, Scorer, Seeds, Size};
use groupwise::{Engine, EngineConfig};
use libfuzzer_sys::fuzz_target;

/// A deterministic vector around one of four directions.
fn vector(user: u64, dim: usize) -> Vec<f32> {
    let mut x = user.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
        })
        .collect();
    v[(user % 4) as usize % dim] += 1.0;
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = EngineConfig::from_json(text) else {
        return;
    };
    let again = EngineConfig::from_json(&config.to_json())
        .unwrap_or_else(|e| panic!("an accepted config does not round-trip: {e}"));
    assert_eq!(again, config, "a config changed through JSON");
    config.encoders.clear();
    let engine = Engine::new(config).unwrap_or_else(|e| panic!("an accepted config does not open: {e}"));
    let dim = engine.config().dim;
    if dim > 64 {
        let _ = engine.upsert_embedding(1, &vector(1, dim));
        let _ = engine.search(&vector(2, dim), 5);
        return;
    }
    let users: Vec<u64> = (1..=64).collect();
    let vectors: Vec<f32> = users.iter().flat_map(|&u| vector(u, dim)).collect();
    engine.upsert_embeddings(&users, &vectors).expect("upsert");
    let _ = engine.neighbors(3, 10);
    let _ = engine.search(&vector(99, dim), 1000);
    let _ = engine.build_segments();
    let seeds: Vec<u64> = (1..=64).filter(|u| u % 4 == 1).collect();
    for scorer in Scorer::ALL {
        let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(10));
        request.scorer = scorer;
        request.explain = true;
        let _ = engine.lookalike(&request);
    }
    for user in [5, 6, 1000] {
        let candidates: Vec<u64> = (100..120).collect();
        if let Ok(d) = engine.decide(&Request::new(Some(user), None, &candidates, 4)) {
            let _ = engine.feedback(&Feedback {
                decision: d.id,
                clicks: &[0, 2],
                visible: Some(3),
                now: Some(user as f64),
            });
        }
    }
    let _ = engine.delete_user(7);
    let bytes = engine
        .to_bytes()
        .unwrap_or_else(|e| panic!("the engine cannot save: {e}"));
    if let Err(e) = Engine::from_bytes(&bytes) {
        panic!("the engine saved a snapshot that does not load: {e}");
    }
});
