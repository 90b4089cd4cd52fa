//! `groupwise eval segments`: how good the segments are, and how groupwise's
//! Leiden, Louvain and spherical k-means compare with leidenalg (igraph) and
//! scikit-learn's KMeans on the same embeddings and the same kNN graph.
//!
//! Per method, over several seeds: number of segments, modularity on the kNN
//! graph, cosine silhouette on a sample, agreement with known labels (NMI; on
//! MovieLens each user's dominant genre), the size-weighted mean of each
//! segment's top genre lift, stability between seeds (ARI and NMI), and time.
//! With `--peers PYTHON`, the same numbers from bench/peers_segments.py run on
//! files this command writes, printed side by side with ratios.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use groupwise::data::{Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec};
use groupwise::graph::KnnGraph;
use groupwise::io::{write_npy, EmbeddingTable};
use groupwise::segments::metrics::{ari, nmi, silhouette};
use groupwise::segments::{
    detect, spherical_kmeans, Algorithm, CommunityConfig, KMeansConfig, SegmentConfig, Segments,
    WeightedGraph,
};
use groupwise::{Encoder, EncoderOptions, SearchOptions, UserIndex};

use crate::paths;

/// Arguments of `groupwise eval segments`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run on MovieLens 100K (the reference encoder's embeddings; genre labels).
    #[arg(long, conflicts_with = "embeddings")]
    pub movielens: bool,
    /// MovieLens 100K folder (default: .groupwise/data/ml-100k).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Or: an embeddings file (`.npy` + `.ids.txt`).
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Known labels for the embeddings' rows, one per line (e.g. from
    /// `groupwise synth --labels-out`).
    #[arg(long, requires = "embeddings")]
    pub truth: Option<PathBuf>,
    /// Seeds per method (stability is measured between them).
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Neighbours per user in the kNN graph.
    #[arg(long, default_value_t = 15)]
    pub knn: usize,
    /// Search width for the kNN graph (default: the index's).
    #[arg(long)]
    pub ef: Option<usize>,
    /// k-means clusters (default: as many as Leiden finds with the first seed).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Users sampled for the silhouette.
    #[arg(long, default_value_t = 2000)]
    pub silhouette_sample: usize,
    /// Privacy floor for the production row (segments as served).
    #[arg(long, default_value_t = 30)]
    pub min_size: usize,
    /// Leave out the production row (it builds the kNN graph again).
    #[arg(long)]
    pub skip_served: bool,
    /// A Python with leidenalg, igraph, scikit-learn and hnswlib: runs
    /// bench/peers_segments.py on the same data (bench/run.sh sets one up).
    #[arg(long)]
    pub peers: Option<PathBuf>,
    /// Where the files for the peers go (default: a temporary folder).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Also write the report (Markdown) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The data under evaluation.
struct Data {
    name: String,
    index: UserIndex,
    /// Rows in graph node order.
    users: Vec<u64>,
    vectors: Vec<f32>,
    graph: WeightedGraph,
    /// Seconds to index the users.
    index_seconds: f64,
    /// Seconds to build the kNN graph from the index.
    graph_seconds: f64,
    /// Known label per row (dominant genre, or planted cluster).
    truth: Option<Vec<u32>>,
    /// Per row, interactions per genre (`rows × genres`).
    genres: Option<(Vec<f32>, usize)>,
}

/// One method's numbers, averaged over seeds.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Row {
    pub system: String,
    pub method: String,
    pub segments: f64,
    pub modularity: f64,
    pub silhouette: f64,
    pub nmi_truth: Option<f64>,
    pub top_genre_lift: Option<f64>,
    pub stability_ari: Option<f64>,
    pub stability_nmi: Option<f64>,
    pub seconds: f64,
    /// k-means only: mean cosine to the (normalised) cluster mean.
    pub objective: Option<f64>,
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // A bad output path is reported before the work, not after it.
    if let Some(p) = &a.out {
        paths::prepare_output("--out", p)?;
    }
    let data = if let Some(e) = &a.embeddings {
        from_embeddings(e, a.truth.as_deref(), a)?
    } else {
        movielens(a)?
    };
    eprintln!(
        "{}: {} users indexed in {:.1} s, kNN graph of {} edges in {:.1} s",
        data.name,
        data.users.len(),
        data.index_seconds,
        data.graph.edge_count(),
        data.graph_seconds
    );
    let mut rows = Vec::new();
    let leiden = evaluate(&data, "leiden", a, |seed| {
        let c = detect(&data.graph, &community(Algorithm::Leiden, seed))?;
        Ok((c.membership, None))
    })?;
    let clusters = a
        .clusters
        .unwrap_or(leiden.segments.round() as usize)
        .max(2);
    rows.push(leiden);
    rows.push(evaluate(&data, "louvain", a, |seed| {
        let c = detect(&data.graph, &community(Algorithm::Louvain, seed))?;
        Ok((c.membership, None))
    })?);
    rows.push(evaluate(
        &data,
        &format!("kmeans (k={clusters})"),
        a,
        |seed| {
            let config = KMeansConfig {
                seed,
                ..KMeansConfig::new(clusters)
            };
            let km = spherical_kmeans(&data.vectors, data.index.dim(), &config)?;
            Ok((km.labels, Some(km.objective)))
        },
    )?);
    if !a.skip_served {
        rows.push(production_row(&data, a)?);
    }
    // Baseline: Leiden's segment sizes, members drawn at random.
    let sizes_from = detect(&data.graph, &community(Algorithm::Leiden, 0))?.membership;
    rows.push(evaluate(&data, "random (Leiden's sizes)", a, |seed| {
        use rand::seq::SliceRandom;
        let mut labels = sizes_from.clone();
        labels.shuffle(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed));
        Ok((labels, None))
    })?);
    if let Some(python) = &a.peers {
        rows.extend(peers(&data, a, python, clusters)?);
    }
    let report = render(&data, &rows, a, clusters);
    print!("{report}");
    if let Some(p) = &a.out {
        paths::write_output("--out", p, &report)?;
    }
    Ok(())
}

fn community(algorithm: Algorithm, seed: u64) -> CommunityConfig {
    CommunityConfig {
        algorithm,
        seed,
        ..Default::default()
    }
}

type Labels = (Vec<u32>, Option<f64>);

/// Runs `cluster` once per seed and averages the metrics.
fn evaluate(
    data: &Data,
    method: &str,
    a: &Args,
    cluster: impl Fn(u64) -> groupwise::Result<Labels>,
) -> Result<Row, Box<dyn std::error::Error>> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut row = Row {
        system: "groupwise".into(),
        method: method.into(),
        ..Default::default()
    };
    let mut objective = 0.0;
    let n = a.seeds.max(1);
    for seed in 0..n {
        let t = Instant::now();
        let (labels, obj) = cluster(seed)?;
        row.seconds += t.elapsed().as_secs_f64();
        objective += obj.unwrap_or(0.0);
        if obj.is_some() {
            row.objective = Some(objective / (seed + 1) as f64);
        }
        let q = quality(data, &labels, a.silhouette_sample, seed);
        row.segments += q.segments;
        row.modularity += q.modularity;
        row.silhouette += q.silhouette;
        row.nmi_truth = add(row.nmi_truth, q.nmi_truth);
        row.top_genre_lift = add(row.top_genre_lift, q.top_genre_lift);
        runs.push(labels);
    }
    let n = n as f64;
    row.segments /= n;
    row.modularity /= n;
    row.silhouette /= n;
    row.seconds /= n;
    row.nmi_truth = row.nmi_truth.map(|x| x / n);
    row.top_genre_lift = row.top_genre_lift.map(|x| x / n);
    (row.stability_ari, row.stability_nmi) = stability(&runs);
    Ok(row)
}

fn add(acc: Option<f64>, x: Option<f64>) -> Option<f64> {
    x.map(|x| acc.unwrap_or(0.0) + x)
}

/// Mean ARI and NMI over all pairs of runs.
fn stability(runs: &[Vec<u32>]) -> (Option<f64>, Option<f64>) {
    let mut pairs = 0usize;
    let (mut sa, mut sn) = (0.0, 0.0);
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            sa += ari(&runs[i], &runs[j]);
            sn += nmi(&runs[i], &runs[j]);
            pairs += 1;
        }
    }
    if pairs == 0 {
        (None, None)
    } else {
        (Some(sa / pairs as f64), Some(sn / pairs as f64))
    }
}

struct Quality {
    segments: f64,
    modularity: f64,
    silhouette: f64,
    nmi_truth: Option<f64>,
    top_genre_lift: Option<f64>,
}

fn quality(data: &Data, labels: &[u32], sample: usize, seed: u64) -> Quality {
    let segments = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    Quality {
        segments: segments as f64,
        modularity: data.graph.modularity(labels, 1.0),
        silhouette: silhouette(&data.vectors, data.index.dim(), labels, Some(sample), seed),
        nmi_truth: data.truth.as_ref().map(|t| nmi(labels, t)),
        top_genre_lift: data
            .genres
            .as_ref()
            .map(|(g, width)| top_genre_lift(g, *width, labels)),
    }
}

/// Size-weighted mean over segments of the largest genre lift (segment's
/// share of interactions in the genre over the population's), among genres
/// with at least 5 interactions in the segment.
pub fn top_genre_lift(genres: &[f32], width: usize, labels: &[u32]) -> f64 {
    let segments = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut seg = vec![0.0f64; segments * width];
    let mut pop = vec![0.0f64; width];
    let mut size = vec![0usize; segments];
    for (row, &l) in genres.chunks_exact(width).zip(labels) {
        size[l as usize] += 1;
        for (g, &c) in row.iter().enumerate() {
            seg[l as usize * width + g] += f64::from(c);
            pop[g] += f64::from(c);
        }
    }
    let pop_total: f64 = pop.iter().sum();
    let mut weighted = 0.0;
    for s in 0..segments {
        let counts = &seg[s * width..(s + 1) * width];
        let total: f64 = counts.iter().sum();
        if total == 0.0 {
            continue;
        }
        let best = (0..width)
            .filter(|&g| counts[g] >= 5.0 && pop[g] > 0.0)
            .map(|g| (counts[g] / total) / (pop[g] / pop_total))
            .fold(0.0f64, f64::max);
        weighted += best * size[s] as f64;
    }
    weighted / labels.len().max(1) as f64
}

/// The segments as served: Leiden with the privacy floor, through the public API.
fn production_row(data: &Data, a: &Args) -> Result<Row, Box<dyn std::error::Error>> {
    let method = groupwise::segments::Method::Graph {
        algorithm: Algorithm::Leiden,
        k: a.knn,
        resolution: 1.0,
        iterations: 2,
        ef: a.ef,
    };
    let t = Instant::now();
    let segments = Segments::build(
        &data.index,
        SegmentConfig {
            method,
            min_size: a.min_size,
            ..Default::default()
        },
    )?;
    let seconds = t.elapsed().as_secs_f64();
    let mut labels: Vec<u32> = data
        .users
        .iter()
        .map(|&u| segments.segment_of(u).unwrap_or(0))
        .collect();
    groupwise::segments::renumber(&mut labels);
    let q = quality(data, &labels, a.silhouette_sample, 0);
    Ok(Row {
        system: "groupwise".into(),
        method: format!("leiden + floor {} (as served, incl. graph)", a.min_size),
        segments: q.segments,
        modularity: q.modularity,
        silhouette: q.silhouette,
        nmi_truth: q.nmi_truth,
        top_genre_lift: q.top_genre_lift,
        seconds,
        ..Default::default()
    })
}

/// Indexes the users and builds the kNN graph; labels are filled in by the caller.
fn build(
    name: &str,
    ids: Vec<u64>,
    vectors: &[f32],
    dim: usize,
    a: &Args,
) -> Result<Data, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let index = crate::neighbors::index_rows(&ids, vectors, dim)?;
    let index_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let options = SearchOptions {
        ef: a.ef,
        ..Default::default()
    };
    let knn = KnnGraph::build(&index, a.knn, &options)?;
    let graph = WeightedGraph::from_knn(&knn);
    let seconds = t.elapsed().as_secs_f64();
    let users = knn.users().to_vec();
    let unit: Vec<f32> = index.with_population(|p| {
        users
            .iter()
            .filter_map(|&u| p.slot_of(u))
            .flat_map(|s| p.vector(s).iter().copied())
            .collect()
    });
    Ok(Data {
        name: name.into(),
        index,
        users,
        vectors: unit,
        graph,
        index_seconds,
        graph_seconds: seconds,
        truth: None,
        genres: None,
    })
}

fn movielens(a: &Args) -> Result<Data, Box<dyn std::error::Error>> {
    let dir = paths::movielens_dir(a.data_dir.as_deref())?;
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let meta = ItemMetadata::load(dir.join("ml-100k.item"), &ItemMetadataSpec::movielens())?;
    let histories = log.histories();
    let encoder = Encoder::load(paths::model("ml100k-seq.onnx")?, &EncoderOptions::default())?;
    let emb = crate::embed::encode_histories(&encoder, &histories, false)?;
    let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
    let mut data = build(
        "MovieLens 100K (reference encoder)",
        ids,
        &emb.data,
        emb.dim,
        a,
    )?;
    let users = &data.users;
    let width = meta.category_names.len();
    let by_user: HashMap<u64, &groupwise::data::UserHistory> =
        histories.iter().map(|h| (h.user, h)).collect();
    let mut genres = vec![0.0f32; users.len() * width];
    for (row, u) in users.iter().enumerate() {
        if let Some(h) = by_user.get(u) {
            for &item in &h.items {
                for &c in meta.categories(item) {
                    genres[row * width + c as usize] += 1.0;
                }
            }
        }
    }
    // Dominant genre: the most-rated genre (ties to the lower genre index).
    let truth = genres
        .chunks_exact(width)
        .map(|r| {
            (0..width)
                .max_by(|&x, &y| r[x].total_cmp(&r[y]).then(y.cmp(&x)))
                .unwrap_or(0) as u32
        })
        .collect();
    data.truth = Some(truth);
    data.genres = Some((genres, width));
    Ok(data)
}

fn from_embeddings(
    path: &Path,
    truth: Option<&Path>,
    a: &Args,
) -> Result<Data, Box<dyn std::error::Error>> {
    // Synthetic vectors have no ids file: rows are users 0..n. With an ids
    // file, its errors (a missing row, an id listed twice) are reported.
    let (raw, rows, dim) = if groupwise::io::ids_path(path).exists() {
        let t = EmbeddingTable::load(path)?;
        let n = t.ids.len();
        (t.data, n, t.dim)
    } else {
        groupwise::io::read_npy(path)?
    };
    let ids: Vec<u64> = (0..rows as u64).collect();
    let labels: Option<Vec<u32>> = match truth {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let l: Vec<u32> = text
                .lines()
                .map(|l| l.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if l.len() != rows {
                return Err(format!("{}: {} labels for {rows} rows", p.display(), l.len()).into());
            }
            Some(l)
        }
        None => None,
    };
    let mut data = build(&path.display().to_string(), ids, &raw, dim, a)?;
    data.truth = labels.map(|l| data.users.iter().map(|&u| l[u as usize]).collect());
    Ok(data)
}

/// Writes the data for the peers and runs bench/peers_segments.py.
fn peers(
    data: &Data,
    a: &Args,
    python: &Path,
    clusters: usize,
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let temp;
    let dir = match &a.export {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("--export {}: cannot create the folder: {e}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let dim = data.index.dim();
    write_npy(
        &dir.join("vectors.npy"),
        &data.vectors,
        data.users.len(),
        dim,
    )?;
    let mut edges = Vec::with_capacity(data.graph.edge_count() * 8);
    let mut weights = Vec::with_capacity(data.graph.edge_count());
    for v in 0..data.graph.len() {
        for (j, w) in data.graph.neighbors(v) {
            if j > v {
                edges.extend_from_slice(&(v as u32).to_le_bytes());
                edges.extend_from_slice(&(j as u32).to_le_bytes());
                weights.push(w as f32);
            }
        }
    }
    paths::write(&dir.join("edges.u32"), edges)?;
    write_npy(&dir.join("weights.npy"), &weights, weights.len(), 1)?;
    if let Some(t) = &data.truth {
        let text: String = t.iter().map(|l| format!("{l}\n")).collect();
        paths::write(&dir.join("truth.txt"), text)?;
    }
    if let Some((g, width)) = &data.genres {
        write_npy(&dir.join("genres.npy"), g, data.users.len(), *width)?;
    }
    let script = paths::find_up(Path::new("bench/peers_segments.py"))
        .ok_or("bench/peers_segments.py not found; run from a groupwise checkout")?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg("--dir")
        .arg(&dir)
        .args(["--seeds", &a.seeds.to_string()])
        .args(["--clusters", &clusters.to_string()])
        .args(["--knn", &a.knn.to_string()])
        .args(["--silhouette-sample", &a.silhouette_sample.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("{} {} failed", python.display(), script.display()).into());
    }
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str::<Row>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn render(data: &Data, rows: &[Row], a: &Args, clusters: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Segments on {}\n\n{} users, {}-NN graph ({} edges, built in {:.2} s), {} seeds per method; k-means with k = {clusters}; silhouette on {} users.\n",
        data.name,
        data.users.len(),
        a.knn,
        data.graph.edge_count(),
        data.graph_seconds,
        a.seeds,
        a.silhouette_sample.min(data.users.len())
    );
    let _ = writeln!(
        s,
        "| system | method | segments | modularity | silhouette | NMI vs labels | top-genre lift | stability ARI | stability NMI | k-means objective | seconds |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.method != "graph build") {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.3} |",
            r.system,
            r.method,
            r.segments,
            r.modularity,
            r.silhouette,
            opt(r.nmi_truth),
            opt(r.top_genre_lift),
            opt(r.stability_ari),
            opt(r.stability_nmi),
            opt(r.objective),
            r.seconds
        );
    }
    // Ratios against the peers, where both ran.
    let find = |system: &str, prefix: &str| {
        rows.iter()
            .find(|r| r.system == system && r.method.starts_with(prefix))
    };
    let pairs = [
        ("leiden", "leidenalg", "leiden"),
        ("leiden", "igraph", "leiden (C)"),
        ("kmeans", "scikit-learn", "kmeans"),
    ];
    let mut first = true;
    for (ours, peer_system, peer_method) in pairs {
        if let (Some(o), Some(p)) = (find("groupwise", ours), find(peer_system, peer_method)) {
            if first {
                let _ = writeln!(s, "\nRatios (groupwise / peer, same data and graph):\n");
                first = false;
            }
            let _ = writeln!(
                s,
                "* {ours} vs {peer_system} {peer_method}: time {:.2}x, modularity {:.3}x, silhouette {:+.3}, NMI vs labels {}",
                o.seconds / p.seconds.max(1e-9),
                o.modularity / p.modularity.max(1e-9),
                o.silhouette - p.silhouette,
                match (o.nmi_truth, p.nmi_truth) {
                    (Some(x), Some(y)) => format!("{:+.3}", x - y),
                    _ => "-".into(),
                }
            );
        }
    }
    if let Some(p) = find("hnswlib", "graph build") {
        let _ = writeln!(
            s,
            "* kNN graph (index + {}-NN lists) vs hnswlib (M 24, efC 200, same k): time {:.2}x ({:.1} s = {:.1} s index + {:.1} s lists, vs {:.1} s)",
            a.knn,
            (data.index_seconds + data.graph_seconds) / p.seconds.max(1e-9),
            data.index_seconds + data.graph_seconds,
            data.index_seconds,
            data.graph_seconds,
            p.seconds
        );
    }
    s
}
