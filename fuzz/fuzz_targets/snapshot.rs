//! Fuzzes snapshot decoding: `Engine::from_bytes` and `engine::inspect_bytes`
//! on arbitrary bytes. A snapshot file may be truncated, corrupted or written
//! by another version; either call must return an error, never panic or
//! allocate without bound.
//!
//! Input: the snapshot bytes as they are (no selector byte).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = groupwise::engine::inspect_bytes(data);
    let _ = groupwise::Engine::from_bytes(data);
});
