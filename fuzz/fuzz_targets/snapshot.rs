//! Fuzzes snapshot decoding: `engine::inspect_bytes` and `Engine::from_bytes`
//! on arbitrary bytes. A snapshot may be truncated, corrupted, crafted or
//! written by another build; either call must return an error, never panic,
//! hang or allocate without bound (`-rss_limit_mb`).
//!
//! Input: one selector byte, then the bytes.
//!
//! | selector % 3 | the bytes are |
//! |--------------|---------------|
//! | 0 | the snapshot file as it is (exercises the frame checks) |
//! | 1 | the MessagePack payload; the target frames it with this build's magic and version, the right length and a valid XXH3 checksum, so that mutations reach payload decoding and the engine's consistency checks instead of stopping at "checksum mismatch" |
//! | 2 | structure-aware: byte 0 picks one of seven real engines built at start (empty; users with the usearch graph stored at f16, f32 and i8; users without it; users with a deleted user, segments and a bandit with categories, user state, a replica journal and an open decision; an hnsw_rs graph with a tombstone), the rest is a list of value edits of its payload (`groupwise_fuzz::edit`: numbers set to NaN, ±inf, -1, 1e308, 2^53+1, lengths cut, elements repeated, removed or swapped, vector bytes overwritten, nodes copied over others), framed with a valid checksum |
//!
//! **Invariant.** What loads is used a little (stats, a search, a decision
//! and its feedback, an upsert, a delete) and must then save, and what it
//! saves must load again: a host never writes a snapshot it cannot restore.
//!
//! **Panics.** groupwise loads a stored hnsw_rs graph through `hnsw_rs` inside
//! `catch_unwind` and turns a panic there into an error. libfuzzer-sys aborts
//! on *every* panic, caught or not, which would report those as crashes; so
//! this target swaps in a quiet hook and only aborts (printing the panic) when
//! a panic escapes a groupwise call. Set `GROUPWISE_FUZZ_STRICT_PANICS=1` to
//! keep libfuzzer-sys's abort-on-any-panic (what a host built with
//! `panic = "abort"` gets). Aborts that are not panics (allocation failure,
//! `std::process::exit`) are always reported.

#![no_main]

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use groupwise::bandit::{Feedback, Request};
use groupwise::index::{Backend, Precision};
use groupwise::{Engine, EngineConfig};
use groupwise_fuzz::{edit, frame, split};
use libfuzzer_sys::fuzz_target;

/// The first 12 bytes (magic and format version) of this build's snapshots,
/// taken from a real one so the target follows format changes.
fn magic_and_version() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let engine = Engine::new(EngineConfig::new(2)).expect("an empty engine");
        engine.to_bytes().expect("a snapshot")[..12].to_vec()
    })
}

/// A deterministic vector (splitmix64).
fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed;
    (0..dim)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn engine(dim: usize, users: u64, store_graph: bool) -> Engine {
    engine_on(dim, users, store_graph, Backend::Usearch, Precision::F16)
}

fn engine_on(
    dim: usize,
    users: u64,
    store_graph: bool,
    backend: Backend,
    precision: Precision,
) -> Engine {
    let mut config = EngineConfig::new(dim);
    config.snapshot.store_graph = store_graph;
    config.index.backend = backend;
    config.index.graph_precision = precision;
    config.segments.min_size = 5;
    config.replica_id = Some(1);
    let engine = Engine::new(config).expect("config");
    for user in 0..users {
        engine
            .upsert_embedding(user * 7 + 1, &vector(user, dim))
            .expect("upsert");
    }
    engine
}

/// The payloads of the seed engines, as value trees.
fn seeds() -> &'static [rmpv::Value] {
    static SEEDS: OnceLock<Vec<rmpv::Value>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let full = engine(4, 30, true);
        full.delete_user(8).expect("delete");
        full.build_segments().expect("segments");
        full.bandit().set_item_categories(&[(1, 1), (2, 2)]);
        for user in [1, 15, 22, 29, 36] {
            let d = full
                .decide(&Request::new(Some(user), None, &[1, 2, 3, 4], 3))
                .expect("decide");
            full.feedback(&Feedback {
                decision: d.id,
                clicks: &[1],
                visible: None,
                now: Some(user as f64),
            })
            .expect("feedback");
        }
        full.decide(&Request::new(Some(43), None, &[1, 2], 2))
            .expect("an open decision");
        let hnsw = engine_on(4, 12, true, Backend::HnswRs, Precision::F32);
        hnsw.delete_user(8).expect("delete");
        [
            engine(2, 0, true),
            engine(4, 12, true),
            engine(3, 12, false),
            full,
            hnsw,
            engine_on(4, 12, true, Backend::Usearch, Precision::I8),
            engine_on(4, 12, true, Backend::Usearch, Precision::F32),
        ]
            .iter()
            .map(|e| edit::decode(&e.to_bytes().expect("snapshot")[32..]))
            .collect()
    })
}

thread_local! {
    /// The last panic's message and location, for when it escapes.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Replaces libfuzzer-sys's abort-on-any-panic hook with one that only
/// records the panic (see the module docs), unless strict mode is asked for.
fn install_panic_hook() {
    // Built before the hook is replaced: a failure here is a plain crash.
    let _ = (magic_and_version(), seeds());
    if std::env::var_os("GROUPWISE_FUZZ_STRICT_PANICS").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        LAST_PANIC.with(|p| *p.borrow_mut() = text);
    }));
}

fuzz_target!(init: install_panic_hook(), |data: &[u8]| {
    let (sel, bytes) = split(data);
    let snapshot = match sel % 3 {
        0 => bytes.to_vec(),
        1 => frame(magic_and_version(), bytes),
        _ => {
            let (pick, edits) = split(bytes);
            let mut tree = seeds()[usize::from(pick) % seeds().len()].clone();
            edit::apply(&mut tree, edits);
            frame(magic_and_version(), &edit::encode(&tree))
        }
    };
    let escaped = std::panic::catch_unwind(AssertUnwindSafe(|| exercise(&snapshot)));
    if escaped.is_err() {
        LAST_PANIC.with(|p| eprintln!("a panic escaped groupwise: {}", p.borrow()));
        std::process::abort();
    }
});

fn exercise(snapshot: &[u8]) {
    let _ = groupwise::engine::inspect_bytes(snapshot);
    let Ok(engine) = Engine::from_bytes(snapshot) else {
        return;
    };
    let _ = engine.stats();
    let dim = engine.config().dim;
    let v = vector(99, dim);
    let _ = engine.search(&v, 3);
    if let Ok(d) = engine.decide(&Request::new(Some(1), None, &[1, 2, 3, 4], 2)) {
        let _ = engine.feedback(&Feedback {
            decision: d.id,
            clicks: &[0],
            visible: None,
            now: Some(1e6),
        });
    }
    let _ = engine.upsert_embedding(1_000_000_007, &v);
    if let Some(&first) = engine.index().ids().first() {
        let _ = engine.delete_user(first);
    }
    // What loaded and was used saves, and what it saves loads again.
    let bytes = engine
        .to_bytes()
        .unwrap_or_else(|e| panic!("a loaded engine cannot save: {e}"));
    if let Err(e) = Engine::from_bytes(&bytes) {
        panic!("a loaded engine saved a snapshot that does not load: {e}");
    }
}
