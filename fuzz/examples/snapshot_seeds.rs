//! Writes the seed corpus of the `snapshot` target: a few tiny snapshots of
//! synthetic engines (no encoders, no real data), each in both input modes of
//! the target (raw file, and bare payload to be reframed; see
//! `fuzz_targets/snapshot.rs`).
//!
//! Run from `fuzz/` after a snapshot format change:
//! `cargo run --release --example snapshot_seeds`

use std::path::Path;

use groupwise::{Engine, EngineConfig};

/// A deterministic pseudo-random vector (splitmix64), so reruns give the same
/// seeds apart from the snapshot's creation time.
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

fn engine(dim: usize, users: u64, store_graph: bool) -> groupwise::Result<Engine> {
    let mut config = EngineConfig::new(dim);
    config.snapshot.store_graph = store_graph;
    config.segments.min_size = 5;
    let engine = Engine::new(config)?;
    for user in 0..users {
        engine.upsert_embedding(user * 7 + 1, &vector(user, dim))?;
    }
    Ok(engine)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/snapshot");
    std::fs::create_dir_all(&out)?;
    let segmented = engine(4, 24, true)?;
    segmented.build_segments()?;
    let seeds = [
        ("empty", engine(2, 0, true)?),
        ("users-graph", engine(4, 12, true)?),
        ("users-no-graph", engine(3, 12, false)?),
        ("segments", segmented),
    ];
    for (name, engine) in seeds {
        let bytes = engine.to_bytes()?;
        // Mode 0: the file as it is; mode 1: the payload after the 32-byte header.
        for (mode, body) in [(0u8, &bytes[..]), (1u8, &bytes[32..])] {
            let path = out.join(format!("{name}-mode{mode}"));
            let mut data = vec![mode];
            data.extend_from_slice(body);
            std::fs::write(&path, &data)?;
        }
        println!("{name}: {} bytes", bytes.len());
    }
    Ok(())
}
