//! Fuzzes snapshot decoding: `engine::inspect_bytes` and `Engine::from_bytes`
//! on arbitrary bytes. A snapshot may be truncated, corrupted or written by
//! another build; either call must return an error, never panic or allocate
//! without bound (`-rss_limit_mb`).
//!
//! Input: one selector byte, then the bytes.
//!
//! | bit 0 | the bytes are |
//! |-------|---------------|
//! | 0     | the snapshot file as it is (exercises the frame checks) |
//! | 1     | the MessagePack payload; the target frames it with this build's magic and version, the right length and a valid XXH3 checksum, so that mutations reach payload decoding and the engine's consistency checks instead of stopping at "checksum mismatch" |
//!
//! When a snapshot loads, the engine is also used a little (stats, a search,
//! saving again); errors there are fine too.
//!
//! **Panics.** groupwise loads a stored HNSW graph through `hnsw_rs` inside
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

use groupwise::{Engine, EngineConfig};
use groupwise_fuzz::split;
use libfuzzer_sys::fuzz_target;
use xxhash_rust::xxh3::Xxh3;

/// The first 12 bytes (magic and format version) of this build's snapshots,
/// taken from a real one so the target follows format changes.
fn magic_and_version() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let engine = Engine::new(EngineConfig::new(2)).expect("an empty engine");
        engine.to_bytes().expect("a snapshot")[..12].to_vec()
    })
}

/// `payload` framed as a snapshot: magic, version, flags 0, length, XXH3-64
/// of bytes 8..24 and the payload, then the payload (see `frame.rs`).
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = magic_and_version().to_vec();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&out[8..24]);
    h.update(payload);
    out.extend_from_slice(&h.digest().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

thread_local! {
    /// The last panic's message and location, for when it escapes.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Replaces libfuzzer-sys's abort-on-any-panic hook with one that only
/// records the panic (see the module docs), unless strict mode is asked for.
fn install_panic_hook() {
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
    let owned;
    let snapshot = if sel & 1 == 0 {
        bytes
    } else {
        owned = framed(bytes);
        &owned[..]
    };
    let escaped = std::panic::catch_unwind(AssertUnwindSafe(|| exercise(snapshot)));
    if escaped.is_err() {
        LAST_PANIC.with(|p| eprintln!("a panic escaped groupwise: {}", p.borrow()));
        std::process::abort();
    }
});

fn exercise(snapshot: &[u8]) {
    let _ = groupwise::engine::inspect_bytes(snapshot);
    if let Ok(engine) = Engine::from_bytes(snapshot) {
        let _ = engine.stats();
        let dim = engine.config().dim;
        // A decoded config may claim any dimension; only search small ones.
        if (1..=4096).contains(&dim) {
            let _ = engine.search(&vec![0.5; dim], 3);
        }
        let _ = engine.to_bytes();
    }
}
