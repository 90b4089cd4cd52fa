//! `groupwise bench`: measurements printed as JSON lines, one per setting, in
//! the schema bench/report.py joins with the Python peers' rows (see
//! BENCHMARKS.md for the commands that produce the published figures).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::encoder::InputKind;
use groupwise::index::recall_at_k;
use groupwise::io::read_npy;
use groupwise::{
    Encoder, EncoderOptions, IndexConfig, SearchMode, SearchOptions, Sequence, UserIndex,
};
use serde_json::json;

use crate::paths;

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Encode throughput on MovieLens histories; writes the exact rows used so
    /// that bench/peers_encode.py encodes the same ones.
    Encode(EncodeArgs),
    /// Index build time, recall@10 and single-thread queries/s over a range of `ef`.
    Index(IndexArgs),
}

/// Arguments of `groupwise bench encode`.
#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// Model to run (default models/ml100k-seq.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// MovieLens 100K folder (default: found by scripts/setup.sh's layout).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024")]
    pub batches: Vec<usize>,
    /// ONNX Runtime intra-op threads (one session).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds per batch size.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Items per user row (users with fewer are skipped; longer histories keep the last ones).
    #[arg(long, default_value_t = 50)]
    pub len: usize,
    /// Where to write the input rows for the Python peer (JSON).
    #[arg(long)]
    pub inputs_out: PathBuf,
}

/// Arguments of `groupwise bench index`.
#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// Vectors (`.npy`, float32 [n, d]).
    #[arg(long)]
    pub vectors: PathBuf,
    /// Queries (`.npy`, float32 [q, d]).
    #[arg(long)]
    pub queries: PathBuf,
    /// Dataset name for the report.
    #[arg(long)]
    pub dataset: String,
    /// HNSW links per node (M).
    #[arg(long, default_value_t = 24)]
    pub m: usize,
    /// efConstruction.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Search widths to try.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub efs: Vec<usize>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Threads used to build the graph.
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
}

pub fn run(c: &Command) -> Result<(), Box<dyn std::error::Error>> {
    match c {
        Command::Encode(a) => encode(a),
        Command::Index(a) => index(a),
    }
}

fn encode(a: &EncodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let model = match &a.model {
        Some(m) => m.clone(),
        None => paths::model("ml100k-seq.onnx")?,
    };
    let dir = paths::movielens_dir(a.data_dir.as_deref())?;
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let encoder = Encoder::load(
        &model,
        &EncoderOptions {
            sessions: 1,
            intra_op_threads: a.threads,
            batch_size: a.batches.iter().copied().max().unwrap_or(1).max(1),
            ..Default::default()
        },
    )?;
    let c = encoder.contract();
    // Rows of exactly `len` known items, so both sides run identical tensors.
    let rows: Vec<Vec<u64>> = log
        .histories()
        .into_iter()
        .filter(|h| h.items.len() >= a.len)
        .map(|h| h.items[h.items.len() - a.len..].to_vec())
        .filter(|items| items.iter().all(|&i| c.item_index(i).is_some()))
        .collect();
    if rows.is_empty() {
        return Err(format!("no user has {} known items", a.len).into());
    }
    let mapped: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| r.iter().filter_map(|&i| c.item_index(i)).collect())
        .collect();
    let f = c.feature_dim.unwrap_or(0);
    let bags: Vec<Vec<f32>> = mapped
        .iter()
        .map(|r| {
            let mut v = vec![0.0f32; f];
            for &ix in r {
                if let Some(x) = usize::try_from(ix).ok().and_then(|i| v.get_mut(i)) {
                    *x += 1.0;
                }
            }
            v
        })
        .collect();
    let inputs = match c.kind {
        InputKind::ItemSequence => json!({
            "item_ids": mapped,
            "weights": mapped.iter().map(|r| vec![1.0f32; r.len()]).collect::<Vec<_>>(),
        }),
        InputKind::Features => json!({ "features": bags }),
    };
    std::fs::write(&a.inputs_out, serde_json::to_vec(&inputs)?)?;

    let model_name = model
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    for &b in &a.batches {
        if b == 0 {
            continue;
        }
        // Pre-build every batch outside the timed loop, as the Python peer does.
        let batch_rows: Vec<usize> = (0..b).map(|i| i % rows.len()).collect();
        let flat: Vec<f32> = batch_rows
            .iter()
            .flat_map(|&i| bags[i].iter().copied())
            .collect();
        let seqs: Vec<Sequence<'_>> = batch_rows
            .iter()
            .map(|&i| Sequence::new(&rows[i]))
            .collect();
        let call = || -> groupwise::Result<usize> {
            let e = match c.kind {
                InputKind::ItemSequence => encoder.encode_sequences(&seqs)?,
                InputKind::Features => encoder.encode_features(&flat)?,
            };
            Ok(e.rows())
        };
        for _ in 0..3 {
            call()?;
        }
        let budget = Duration::from_secs_f64(a.seconds);
        let start = Instant::now();
        let (mut calls, mut done) = (0usize, 0usize);
        while start.elapsed() < budget || calls < 3 {
            done += call()?;
            calls += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        emit(&json!({
                "bench": "encode", "impl": "groupwise", "model": model_name, "batch": b,
                "threads": a.threads, "rows_per_s": done as f64 / secs,
                "ms_per_batch": secs * 1e3 / calls as f64,
        }))?;
    }
    Ok(())
}

fn index(a: &IndexArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (data, n, dim) = read_npy(&a.vectors)?;
    let (queries, nq, qdim) = read_npy(&a.queries)?;
    if qdim != dim {
        return Err(format!("queries are {qdim}-d, vectors {dim}-d").into());
    }
    let build_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.build_threads)
        .build()?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut config = IndexConfig::new(dim);
    config.max_connections = a.m;
    config.ef_construction = a.ef_construction;
    config.capacity_hint = n;
    let index = UserIndex::new(config)?;
    let ids: Vec<u64> = (0..n as u64).collect();
    let t = Instant::now();
    build_pool.install(|| index.upsert_batch(&ids, &data))?;
    let build_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let truth = one.install(|| index.exact_search_batch(&queries, a.k))?;
    let exact_s = t.elapsed().as_secs_f64();
    let row = |imp: &str, ef: usize, recall: f64, qps: f64| {
        json!({
            "bench": "index", "impl": imp, "dataset": a.dataset, "n": n, "dim": dim,
            "m": a.m, "ef_construction": a.ef_construction, "build_s": build_s,
            "build_threads": a.build_threads, "ef": ef, "recall_at_10": recall,
            "qps": qps, "query_threads": 1,
        })
    };
    emit(&row("groupwise-exact", 0, 1.0, nq as f64 / exact_s))?;
    for &ef in &a.efs {
        let opts = SearchOptions {
            ef: Some(ef),
            mode: SearchMode::Approximate,
            ..Default::default()
        };
        // One query at a time on this thread, repeated for at least half a
        // second (as bench/peers_index.py does) so short runs are not noise.
        let t = Instant::now();
        let mut passes = 0usize;
        let mut approx = Vec::new();
        while passes == 0 || t.elapsed().as_secs_f64() < 0.5 {
            approx = queries
                .chunks(dim)
                .map(|q| index.search(q, a.k, &opts))
                .collect::<groupwise::Result<Vec<_>>>()?;
            passes += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        emit(&row(
            "groupwise",
            ef,
            recall_at_k(&approx, &truth),
            (nq * passes) as f64 / secs,
        ))?;
    }
    Ok(())
}

/// Prints one JSON line; a closed pipe (`| head`) is an error, not a panic.
fn emit(v: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}
