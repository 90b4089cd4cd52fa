//! Writes the seed corpora of the `snapshot` and `delta` targets: a few tiny
//! snapshots of synthetic engines (no encoders, no real data) and two replica
//! deltas, each in the input modes of its target (raw bytes, bare payload to
//! be reframed, and an edit list on each built-in seed; see
//! `fuzz_targets/snapshot.rs` and `fuzz_targets/delta.rs`).
//!
//! Run from `fuzz/` after a snapshot or delta format change:
//! `cargo run --release --example snapshot_seeds`

use std::path::Path;

use groupwise::bandit::{BanditConfig, SlateBandit};
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
    // Mode 2: a built-in seed (one byte) and edits (none here: libFuzzer
    // grows them). Edit lists of 11 bytes each follow the pick.
    for pick in 0u8..4 {
        std::fs::write(out.join(format!("edit-seed{pick}")), [2u8, pick])?;
    }
    // One edit: node 40, operation 2 (a special double), argument 1 (+inf).
    let mut one = vec![2u8, 3, 40, 0, 2];
    one.extend_from_slice(&1u64.to_le_bytes());
    std::fs::write(out.join("edit-seed3-inf"), &one)?;

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/delta");
    std::fs::create_dir_all(&out)?;
    for (name, half_life) in [("plain", None), ("decayed", Some(3600.0))] {
        let a = SlateBandit::new(BanditConfig {
            record_deltas: true,
            replica_id: 1,
            half_life,
            ..BanditConfig::default()
        })?;
        a.set_item_categories(&[(5, 1), (6, 2)]);
        a.record(Some(3), Some(9), &[(5, 1.0, 2.0), (6, 0.0, 1.0)], Some(10.0))?;
        a.record(Some(4), Some(8), &[(7, 2.0, 0.5)], Some(100.0))?;
        let bytes = a.export_delta().to_bytes()?;
        for (mode, body) in [(0u8, &bytes[..]), (1u8, &bytes[32..])] {
            let mut data = vec![mode];
            data.extend_from_slice(body);
            std::fs::write(out.join(format!("{name}-mode{mode}")), &data)?;
        }
        println!("delta {name}: {} bytes", bytes.len());
    }
    for pick in 0u8..2 {
        std::fs::write(out.join(format!("edit-seed{pick}")), [2u8, pick])?;
    }
    Ok(())
}
