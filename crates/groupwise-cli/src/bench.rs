//! `groupwise bench`: measurements printed as JSON lines, one per setting, in
//! the schema bench/report.py joins with the Python peers' rows (see
//! BENCHMARKS.md for the commands that produce the published figures).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::encoder::InputKind;
use groupwise::engine::{Engine, EngineConfig, LoadOptions};
use groupwise::index::{recall_at_k, Backend, Precision};
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
    /// Lookalike expansion time and peak memory per scorer on synthetic users,
    /// next to an exact brute-force expansion.
    Lookalike(LookalikeArgs),
    /// Slate decisions per second and latency, and feedback throughput.
    Slates(crate::bench_slates::SlatesArgs),
    /// Snapshot save/load time and size (graph stored or rebuilt), and the
    /// throughput of a mixed load of engine operations.
    Engine(crate::bench_engine::EngineArgs),
}

/// Arguments of `groupwise bench lookalike`.
#[derive(clap::Args, Debug)]
pub struct LookalikeArgs {
    /// Population size.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Seed counts to try.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub seeds: Vec<usize>,
    /// Users to return.
    #[arg(long, default_value_t = 100_000)]
    pub out_size: usize,
    /// Scorers to time (centroid, knn, classifier, diffusion, fusion, brute-knn).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "centroid,knn,classifier,diffusion,fusion,brute-knn"
    )]
    pub scorers: Vec<String>,
    /// Random seed of the data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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
    /// Insert in batches of this many vectors (0 = one batch).
    #[arg(long, default_value_t = 0)]
    pub insert_chunk: usize,
    /// Index backend: usearch or hnsw_rs.
    #[arg(long, default_value = "usearch")]
    pub backend: String,
    /// Precision of the graph's copy of the vectors: f32, f16 or i8
    /// (usearch).
    #[arg(long, default_value = "f16")]
    pub graph_precision: String,
    /// Also save a snapshot here and time loading it (memory-mapped and
    /// copied); the file is removed afterwards.
    #[arg(long)]
    pub snapshot_dir: Option<PathBuf>,
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere), after
/// asking the allocator to return freed memory.
fn rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn run(c: &Command) -> Result<(), Box<dyn std::error::Error>> {
    match c {
        Command::Encode(a) => encode(a),
        Command::Index(a) => index(a),
        Command::Lookalike(a) => lookalike(a),
        Command::Slates(a) => crate::bench_slates::slates(a),
        Command::Engine(a) => crate::bench_engine::engine(a),
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
    crate::paths::write_output("--inputs-out", &a.inputs_out, serde_json::to_vec(&inputs)?)?;

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
    let backend: Backend = a
        .backend
        .parse()
        .map_err(|_| format!("--backend {}: expected usearch or hnsw_rs", a.backend))?;
    let precision: Precision = a.graph_precision.parse().map_err(|_| {
        format!(
            "--graph-precision {}: expected f32, f16 or i8",
            a.graph_precision
        )
    })?;
    let (data, n, dim) = read_npy(&a.vectors)?;
    let (queries, nq, qdim) = read_npy(&a.queries)?;
    if qdim != dim {
        return Err(format!("queries are {qdim}-d, vectors {dim}-d").into());
    }
    let build_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.build_threads)
        .build()?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut config = EngineConfig::new(dim);
    config.index.max_connections = a.m;
    config.index.ef_construction = a.ef_construction;
    config.index.capacity_hint = n;
    config.index.backend = backend;
    config.index.graph_precision = precision;
    let rss0 = rss_bytes();
    let engine = Engine::new(config)?;
    let ids: Vec<u64> = (0..n as u64).collect();
    let t = Instant::now();
    let chunk = if a.insert_chunk == 0 {
        n.max(1)
    } else {
        a.insert_chunk
    };
    build_pool.install(|| -> groupwise::Result<()> {
        for (c, rows) in ids.chunks(chunk).zip(data.chunks(chunk * dim)) {
            engine.upsert_embeddings(c, rows)?;
        }
        Ok(())
    })?;
    let build_s = t.elapsed().as_secs_f64();
    let rss_per_user = rss_bytes().saturating_sub(rss0) as f64 / n.max(1) as f64;
    let index = engine.index();
    let memory_per_user = index.stats().memory_bytes as f64 / n.max(1) as f64;
    eprintln!(
        "{backend} ({precision} graph): built {n} users in {build_s:.1} s; \
         {memory_per_user:.0} bytes per user held, {rss_per_user:.0} resident"
    );

    // The operating point groupwise would pick by itself (recall@10 >= 0.95 on
    // the first 200 queries), reported next to the fixed `ef` sweep.
    let t = Instant::now();
    let calib = &queries[..queries.len().min(200 * dim)];
    let cal = index.calibrate_ef(calib, 0.95, a.k, 4096)?;
    eprintln!(
        "calibrate_ef: ef {} gives recall@{} {:.4} on the first 200 queries ({:.1} s)",
        cal.ef,
        a.k,
        cal.recall,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let truth = one.install(|| index.exact_search_batch(&queries, a.k))?;
    let exact_s = t.elapsed().as_secs_f64();
    let imp = format!("groupwise-{backend}-{precision}");
    let row = |imp: &str, ef: usize, recall: f64, qps: f64| {
        json!({
            "bench": "index", "impl": imp, "dataset": a.dataset, "n": n, "dim": dim,
            "m": a.m, "ef_construction": a.ef_construction, "build_s": build_s,
            "build_threads": a.build_threads, "ef": ef, "recall_at_10": recall,
            "qps": qps, "query_threads": 1, "rss_bytes_per_user": rss_per_user,
            "memory_bytes_per_user": memory_per_user, "calibrated_ef": cal.ef,
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
            &imp,
            ef,
            recall_at_k(&approx, &truth),
            (nq * passes) as f64 / secs,
        ))?;
    }
    if let Some(dir) = &a.snapshot_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--snapshot-dir {}: {e}", dir.display()))?;
        let path = dir.join(format!("bench-index-{backend}-{precision}-{n}.gw"));
        let t = Instant::now();
        let info = engine.save(&path)?;
        let save_s = t.elapsed().as_secs_f64();
        let probe = &queries[..queries.len().min(100 * dim)];
        let opts = SearchOptions {
            ef: Some(cal.ef),
            mode: SearchMode::Approximate,
            ..Default::default()
        };
        let before = index.search_batch(probe, a.k, &opts)?;
        drop(engine);
        for mmap in [true, false] {
            let t = Instant::now();
            let loaded = Engine::load_with(
                &path,
                LoadOptions {
                    load_encoders: false,
                    mmap,
                    backend: None,
                },
            )?;
            let load_s = t.elapsed().as_secs_f64();
            // The first searches after a mapped load read the file.
            let t = Instant::now();
            let after = loaded.index().search_batch(probe, a.k, &opts)?;
            let first_s = t.elapsed().as_secs_f64();
            let same = before == after;
            emit(&json!({
                "bench": "index-snapshot", "impl": imp, "dataset": a.dataset, "n": n,
                "bytes": info.bytes, "save_s": save_s, "mmap": mmap, "load_s": load_s,
                "first_100_queries_s": first_s, "same_answers": same,
                "mapped": loaded.index().stats().mapped,
            }))?;
        }
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Prints one JSON line; a closed pipe (`| head`) is an error, not a panic.
pub(crate) fn emit(v: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

fn lookalike(a: &LookalikeArgs) -> Result<(), Box<dyn std::error::Error>> {
    use groupwise::graph::KnnGraph;
    use groupwise::lookalike::{expand, LookalikeConfig, LookalikeRequest, Scorer, Seeds, Size};
    use rand::{Rng, SeedableRng};

    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let clusters = 100;
    let centres = crate::synth::centres(clusters, a.dim, &mut rng);
    let mut labels = Vec::with_capacity(a.n);
    let mut data = Vec::with_capacity(a.n * a.dim);
    for _ in 0..a.n {
        let c = rng.random_range(0..clusters);
        labels.push(c);
        data.extend(crate::synth::clustered(
            1,
            a.dim,
            &centres[c * a.dim..(c + 1) * a.dim],
            0.6,
            &mut rng,
        ));
    }
    // The scorers read the population directly; only diffusion needs a graph,
    // so the index is exact-only and the kNN graph below is built from the
    // clusters (its size, not its provenance, sets the cost of diffusion).
    let mut cfg = IndexConfig::new(a.dim);
    cfg.build_graph = false;
    cfg.capacity_hint = a.n;
    let index = UserIndex::new(cfg)?;
    let ids: Vec<u64> = (0..a.n as u64).collect();
    index.upsert_batch(&ids, &data)?;
    drop(data);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for (i, &c) in labels.iter().enumerate() {
        members[c].push(i as u32);
    }
    let lists: Vec<Vec<(u32, f32)>> = labels
        .iter()
        .map(|&c| {
            (0..10)
                .map(|_| (members[c][rng.random_range(0..members[c].len())], 0.8))
                .collect()
        })
        .collect();
    let graph = KnnGraph::from_neighbor_lists(ids.clone(), &lists)?;
    drop(lists);

    for &m in &a.seeds {
        // Seeds from 3 clusters: a multi-modal segment.
        let segment = labels.iter().filter(|&&c| c < 3).count();
        let seeds: Vec<u64> = (0..a.n)
            .filter(|&i| labels[i] < 3)
            .take(m)
            .map(|i| i as u64)
            .collect();
        let mut knn_result: Option<std::collections::HashSet<u64>> = None;
        for name in &a.scorers {
            let base = crate::alloc::current();
            crate::alloc::reset_peak();
            let t = Instant::now();
            let got: Vec<u64> = if name == "brute-knn" {
                brute_knn(&index, &seeds, 10, a.out_size)
            } else {
                let scorer = Scorer::parse(name).ok_or_else(|| format!("unknown scorer {name}"))?;
                let mut req = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(a.out_size));
                req.scorer = scorer;
                let g = matches!(scorer, Scorer::Diffusion | Scorer::Fusion).then_some(&graph);
                expand(&index, g, &req, &LookalikeConfig::default())?
                    .users
                    .iter()
                    .map(|u| u.id)
                    .collect()
            };
            let secs = t.elapsed().as_secs_f64();
            let extra = crate::alloc::peak().saturating_sub(base);
            // Share of the seed clusters' other users that the expansion found.
            let in_segment = got.iter().filter(|&&u| labels[u as usize] < 3).count() as f64
                / (segment - seeds.len()).max(1) as f64;
            if name == "knn" {
                knn_result = Some(got.iter().copied().collect());
            }
            // How much of the exact expansion the sampled kNN scorer reproduces.
            let overlap = match (&knn_result, name.as_str()) {
                (Some(k), "brute-knn") => Some(
                    got.iter().filter(|u| k.contains(u)).count() as f64 / got.len().max(1) as f64,
                ),
                _ => None,
            };
            emit(&json!({
                "overlap_knn_vs_brute": overlap,
                "bench": "lookalike", "impl": name, "n": a.n, "dim": a.dim, "seeds": m,
                "out": got.len(), "seconds": secs, "extra_peak_mib": extra as f64 / (1024.0 * 1024.0),
                "recall_of_seed_clusters": in_segment, "threads": rayon::current_num_threads(),
            }))?;
        }
    }
    Ok(())
}

/// The exact brute-force kNN-density expansion: every candidate against every
/// seed with plain dot products (no matrix product, no seed sampling).
fn brute_knn(index: &UserIndex, seeds: &[u64], k: usize, out: usize) -> Vec<u64> {
    use rayon::prelude::*;
    let seed_set: std::collections::HashSet<u64> = seeds.iter().copied().collect();
    index.with_population(|pop| {
        let sv: Vec<&[f32]> = seeds
            .iter()
            .filter_map(|&s| pop.slot_of(s))
            .map(|s| pop.vector(s))
            .collect();
        let mut scored: Vec<(f64, u64)> = pop
            .live_slots()
            .collect::<Vec<_>>()
            .par_iter()
            .filter(|&&s| !seed_set.contains(&pop.id(s)))
            .map(|&s| {
                let v = pop.vector(s);
                let mut sims: Vec<f32> = sv.iter().map(|x| groupwise::vector::dot(v, x)).collect();
                let kk = k.min(sims.len());
                sims.select_nth_unstable_by(kk.saturating_sub(1), |a, b| b.total_cmp(a));
                (
                    sims[..kk].iter().map(|&x| f64::from(x)).sum::<f64>() / kk as f64,
                    pop.id(s),
                )
            })
            .collect();
        scored.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(out).map(|p| p.1).collect()
    })
}
