//! `groupwise bench engine`: snapshot save and load (with the HNSW graph
//! stored, and rebuilt on load), file sizes, and the throughput of a mixed
//! load of engine operations, on synthetic users. JSON lines on stdout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use groupwise::bandit::{Feedback, Request};
use groupwise::engine::{LoadOptions, SnapshotConfig};
use groupwise::lookalike::{LookalikeRequest, Scorer, Seeds, Size};
use groupwise::{Engine, EngineConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Arguments of `groupwise bench engine`.
#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Users.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Slate decisions (with feedback) recorded before saving.
    #[arg(long, default_value_t = 100_000)]
    pub decisions: usize,
    /// Operations per thread in the mixed load.
    #[arg(long, default_value_t = 5_000)]
    pub ops: usize,
    /// Thread counts for the mixed load.
    #[arg(long, value_delimiter = ',', default_value = "1,2,8")]
    pub threads: Vec<usize>,
    /// Folder for the snapshot files (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// One operation of the mixed load.
fn mixed_op(
    engine: &Engine,
    rng: &mut SmallRng,
    next_new: &mut u64,
    n: u64,
) -> groupwise::Result<()> {
    let dim = engine.config().dim;
    match rng.random_range(0..20) {
        0 => {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            engine.upsert_embedding(*next_new, &v)?;
            *next_new += 1;
        }
        1 => {
            engine.delete_user(rng.random_range(0..n))?;
        }
        2..=7 => {
            let _ = engine.neighbors(rng.random_range(0..n), 10);
        }
        8 => {
            let start = rng.random_range(0..n.saturating_sub(200).max(1));
            let seeds: Vec<u64> = (start..start + 200).collect();
            let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(100));
            request.scorer = Scorer::Centroid;
            let _ = engine.lookalike(&request)?;
        }
        _ => serve(engine, rng, n)?,
    }
    Ok(())
}

/// A slate of 10 from items 0..100 for a random user, and its feedback (a
/// click with probability 0.3 on one of the 5 visible slots).
fn serve(engine: &Engine, rng: &mut SmallRng, n: u64) -> groupwise::Result<()> {
    let candidates: Vec<u64> = (0..100).collect();
    let user = rng.random_range(0..n);
    let d = engine.decide(&Request::new(Some(user), None, &candidates, 10))?;
    let clicks: Vec<usize> = if rng.random_bool(0.3) {
        vec![rng.random_range(0..5)]
    } else {
        vec![]
    };
    engine.feedback(&Feedback {
        decision: d.id,
        clicks: &clicks,
        visible: Some(5),
        now: None,
    })
}

pub fn engine(a: &EngineArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let centres = crate::synth::centres(100, a.dim, &mut rng);
    let vectors = crate::synth::clustered(a.n, a.dim, &centres, 0.6, &mut rng);
    let ids: Vec<u64> = (0..a.n as u64).collect();
    let mut config = EngineConfig::new(a.dim);
    config.index.capacity_hint = a.n;
    let engine = Arc::new(Engine::new(config)?);
    let t = Instant::now();
    for (chunk_ids, chunk) in ids.chunks(50_000).zip(vectors.chunks(50_000 * a.dim)) {
        engine.upsert_embeddings(chunk_ids, chunk)?;
    }
    let index_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    engine.build_segments()?;
    let segments_s = t.elapsed().as_secs_f64();
    for _ in 0..a.decisions {
        serve(&engine, &mut rng, a.n as u64)?;
    }
    println!(
        "{}",
        json!({"bench": "engine-build", "impl": "groupwise", "users": a.n, "dim": a.dim,
               "index_s": index_s, "segments_s": segments_s, "segments": engine.stats().segments})
    );

    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let probe: Vec<u64> = (0..200).map(|i| (i * 7919) % a.n as u64).collect();
    let before: Vec<_> = probe
        .iter()
        .map(|&u| engine.neighbors(u, 10).ok())
        .collect();
    for store_graph in [true, false] {
        let path = dir.join(if store_graph {
            "bench-graph.gw"
        } else {
            "bench-nograph.gw"
        });
        let t = Instant::now();
        let info = engine.save_with(&path, &SnapshotConfig { store_graph })?;
        let save_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let loaded = Engine::load_with(
            &path,
            LoadOptions {
                load_encoders: false,
                ..LoadOptions::default()
            },
        )?;
        let load_s = t.elapsed().as_secs_f64();
        let after: Vec<_> = probe
            .iter()
            .map(|&u| loaded.neighbors(u, 10).ok())
            .collect();
        let same = before.iter().zip(&after).filter(|(b, a)| b == a).count();
        println!(
            "{}",
            json!({"bench": "snapshot", "impl": "groupwise", "users": a.n, "dim": a.dim,
                   "graph_stored": store_graph, "bytes": info.bytes, "save_s": save_s,
                   "load_s": load_s, "same_neighbors_of_200": same})
        );
    }

    for &threads in &a.threads {
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let engine = engine.clone();
                let ops = a.ops;
                let n = a.n as u64;
                let seed = a.seed + 1000 + k as u64;
                std::thread::spawn(move || -> groupwise::Result<()> {
                    let mut rng = SmallRng::seed_from_u64(seed);
                    let mut next_new = 1u64 << 40 | (k as u64) << 32 | seed;
                    for _ in 0..ops {
                        mixed_op(&engine, &mut rng, &mut next_new, n)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a load thread panicked")??;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "engine-mixed", "impl": "groupwise", "users": a.n, "threads": threads,
                   "ops": threads * a.ops, "seconds": s, "ops_per_s": (threads * a.ops) as f64 / s,
                   "mix": "5% upsert, 5% delete, 30% neighbors, 5% lookalike (centroid, 200 seeds), 55% decide+feedback"})
        );
    }
    Ok(())
}
