//! `groupwise demo`: the main job on real data (MovieLens 100K).
//!
//! Encodes every user's rating history with the reference encoder, indexes the
//! embeddings, prints a few users with their nearest neighbours and the genres
//! they share, measures how much more genre taste neighbours share than random
//! pairs do, and checks the HNSW index against exact search.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use groupwise::data::{
    Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec, UserHistory,
};
use groupwise::index::recall_at_k;
use groupwise::{
    Encoder, EncoderOptions, IndexConfig, Neighbor, RuntimeConfig, SearchMode, SearchOptions,
    UserIndex,
};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::paths;

/// Arguments of `groupwise demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// MovieLens 100K folder (default: .groupwise/data/ml-100k, installed by scripts/setup.sh).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Encoder (default: models/ml100k-seq.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Path to libonnxruntime.so (default: ORT_DYLIB_PATH, then .groupwise/lib).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// How many users to show.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Neighbours per user.
    #[arg(short, long, default_value_t = 5)]
    pub k: usize,
    /// Seed for the choice of users shown and the random baseline.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the picture of the segments (SVG).
    #[arg(long, default_value = "ml100k-segments.svg")]
    pub picture: PathBuf,
    /// Where to write the regret curves of the simulated slate session (SVG).
    #[arg(long, default_value = "ml100k-slates-regret.svg")]
    pub slates_picture: PathBuf,
    /// Where to save the engine snapshot (reloaded and checked at the end).
    #[arg(long, default_value = "ml100k.gw")]
    pub snapshot: PathBuf,
}

/// Share of a user's ratings in each genre.
fn genre_profile(h: &UserHistory, meta: &ItemMetadata) -> Vec<f32> {
    let mut p = vec![0.0f32; meta.category_names.len()];
    for &item in &h.items {
        for &c in meta.categories(item) {
            p[c as usize] += 1.0;
        }
    }
    let total: f32 = p.iter().sum();
    if total > 0.0 {
        p.iter_mut().for_each(|x| *x /= total);
    }
    p
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = groupwise::vector::dot(a, b);
    let n = groupwise::vector::norm(a) * groupwise::vector::norm(b);
    if n > 0.0 {
        d / n
    } else {
        0.0
    }
}

fn top_genres(p: &[f32], meta: &ItemMetadata, n: usize) -> Vec<(String, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(n)
        .filter(|&i| p[i] > 0.0)
        .map(|i| (meta.category_names[i].clone(), p[i]))
        .collect()
}

fn demographics(dir: &std::path::Path) -> HashMap<String, String> {
    // Optional: age, gender and occupation make the output easier to read.
    let mut out = HashMap::new();
    let Ok(mut r) = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .from_path(dir.join("ml-100k.user"))
    else {
        return out;
    };
    for rec in r.records().flatten() {
        if let (Some(u), Some(a), Some(g), Some(o)) =
            (rec.get(0), rec.get(1), rec.get(2), rec.get(3))
        {
            out.insert(u.to_string(), format!("{a} {g} {o}"));
        }
    }
    out
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Bad output paths are reported before the work, not after it.
    paths::prepare_output("--picture", &a.picture)?;
    paths::prepare_output("--slates-picture", &a.slates_picture)?;
    paths::prepare_output("--snapshot", &a.snapshot)?;
    let dir = paths::movielens_dir(a.data_dir.as_deref())?;
    let model = match &a.model {
        Some(m) => m.clone(),
        None => paths::model("ml100k-seq.onnx")?,
    };
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let meta = ItemMetadata::load(dir.join("ml-100k.item"), &ItemMetadataSpec::movielens())?;
    let people = demographics(&dir);
    let histories = log.histories();
    println!(
        "groupwise demo on MovieLens 100K: {} users, {} movies, {} ratings ({})",
        histories.len(),
        meta.len(),
        log.len(),
        dir.display()
    );

    // 1. Encode.
    let encoder = Encoder::load(
        &model,
        &EncoderOptions {
            runtime: RuntimeConfig {
                library_path: a.ort_lib.clone(),
            },
            ..Default::default()
        },
    )?;
    println!(
        "encoder: {} ({:?}, {}-d, vocabulary of {} items) on ONNX Runtime {}",
        model.display(),
        encoder.contract().kind,
        encoder.dim(),
        encoder.contract().vocab_len(),
        groupwise::runtime::loaded_library()
            .map_or_else(|| "?".into(), |p| p.display().to_string())
    );
    let t = Instant::now();
    let encoded = crate::embed::encode_histories(&encoder, &histories, false)?;
    let embeddings = encoded.data;
    println!(
        "encoded {} users in {:.0} ms ({} unknown items)",
        histories.len(),
        t.elapsed().as_secs_f64() * 1e3,
        encoded.unknown_items
    );

    // 2. Index.
    let t = Instant::now();
    let mut config = IndexConfig::new(encoder.dim());
    config.capacity_hint = histories.len();
    let index = UserIndex::new(config)?;
    let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
    index.upsert_batch(&ids, &embeddings)?;
    println!(
        "indexed {} users in {:.0} ms (HNSW, M={}, efConstruction={})",
        index.len(),
        t.elapsed().as_secs_f64() * 1e3,
        index.config().max_connections,
        index.config().ef_construction
    );

    // 3. Neighbours with the genres they share.
    let profiles: HashMap<u64, Vec<f32>> = histories
        .iter()
        .map(|h| (h.user, genre_profile(h, &meta)))
        .collect();
    let name = |u: u64| log.users.name(u).unwrap_or("?").to_string();
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let shown: Vec<&UserHistory> = histories.choose_multiple(&mut rng, a.show).collect();
    let graph = SearchOptions {
        mode: SearchMode::Approximate,
        ..Default::default()
    };
    for h in shown {
        let p = &profiles[&h.user];
        let who = people.get(&name(h.user)).cloned().unwrap_or_default();
        let tops: Vec<String> = top_genres(p, &meta, 3)
            .iter()
            .map(|(g, s)| format!("{g} {:.0}%", s * 100.0))
            .collect();
        println!(
            "\nuser {} ({who}, {} ratings) likes {}",
            name(h.user),
            h.items.len(),
            tops.join(", ")
        );
        let mine: Vec<String> = top_genres(p, &meta, 3)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        for (rank, n) in index.neighbors(h.user, a.k, &graph)?.iter().enumerate() {
            let q = &profiles[&n.id];
            let shared: Vec<String> = top_genres(q, &meta, 3)
                .into_iter()
                .map(|(g, _)| g)
                .filter(|g| mine.contains(g))
                .collect();
            println!(
                "  {}. user {:>4}  similarity {:.3}  genre-taste cosine {:.2}  shares top genres: {}",
                rank + 1,
                name(n.id),
                n.similarity,
                cosine(p, q),
                if shared.is_empty() { "-".to_string() } else { shared.join(", ") }
            );
        }
    }

    // 4. Do neighbours share taste more than random users do?
    let k = 10;
    let mut near = 0.0f64;
    let mut rand_pairs = 0.0f64;
    let mut count = 0usize;
    let all_neighbors: Vec<Vec<Neighbor>> = ids
        .iter()
        .map(|&u| index.neighbors(u, k, &graph))
        .collect::<groupwise::Result<_>>()?;
    for (&u, ns) in ids.iter().zip(&all_neighbors) {
        for n in ns {
            near += f64::from(cosine(&profiles[&u], &profiles[&n.id]));
            let mut r = ids[rng.random_range(0..ids.len())];
            while r == u {
                r = ids[rng.random_range(0..ids.len())];
            }
            rand_pairs += f64::from(cosine(&profiles[&u], &profiles[&r]));
            count += 1;
        }
    }
    let (near, rand_pairs) = (near / count as f64, rand_pairs / count as f64);
    println!(
        "\ngenre-taste distance (1 - cosine of genre shares) to the {k} nearest users: {:.3}, \
         to random users: {:.3} ({:.1}x closer)",
        1.0 - near,
        1.0 - rand_pairs,
        (1.0 - rand_pairs) / (1.0 - near).max(1e-9)
    );

    // 5. Index against exact search.
    let exact = SearchOptions {
        mode: SearchMode::Exact,
        ..Default::default()
    };
    let truth: Vec<Vec<Neighbor>> = ids
        .iter()
        .map(|&u| index.neighbors(u, k, &exact))
        .collect::<groupwise::Result<_>>()?;
    println!(
        "index check: recall@{k} of the HNSW graph against exact search, every user as a query: {:.4} (ef={})",
        recall_at_k(&all_neighbors, &truth),
        index.config().ef_search
    );

    lookalike_section(&encoder, &histories, &meta, &log, a.seed)?;
    let segments = segments_section(&index, &histories, &meta, &log, a)?;
    slates_section(&histories, &segments, a)?;
    engine_section(&model, &ids, &embeddings, &histories, a)
}

/// The same users in one [`Engine`]: segments, a live slate session with
/// clicks from the fitted click probabilities, then a snapshot saved,
/// reloaded, and checked query by query.
fn engine_section(
    model: &std::path::Path,
    ids: &[u64],
    embeddings: &[f32],
    histories: &[UserHistory],
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    use groupwise::bandit::sim::GroundTruth;
    use groupwise::bandit::{Feedback, Request};
    use groupwise::engine::{inspect, EncoderSpec};
    use groupwise::{Engine, EngineConfig};

    let dim = embeddings.len() / ids.len().max(1);
    let mut config = EngineConfig::new(dim);
    config.encoders = vec![EncoderSpec {
        name: "seq".into(),
        path: model.to_path_buf(),
    }];
    config.segments.min_size = 30;
    let engine = Engine::new(config)?;
    engine.upsert_embeddings(ids, embeddings)?;
    engine.build_segments()?;
    let truth = GroundTruth::from_ratings(histories, 200, 10)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let (requests, mut clicks) = (3_000, 0);
    for _ in 0..requests {
        let u = rng.random_range(0..truth.users.len());
        let d = engine.decide(&Request::new(Some(truth.users[u]), None, &truth.items, 12))?;
        // Cascade: the user scans the 3 visible slots and clicks the first
        // that attracts them.
        let slot = (0..3).find(|&s| {
            let j = truth
                .items
                .iter()
                .position(|&i| i == d.items[s])
                .unwrap_or(0);
            rng.random_bool(truth.p(u, j).clamp(0.0, 1.0))
        });
        clicks += usize::from(slot.is_some());
        engine.feedback(&Feedback {
            decision: d.id,
            clicks: slot.as_slice(),
            visible: Some(3),
            now: None,
        })?;
    }
    println!(
        "
engine: {} users, {} segments, {requests} live slate requests with feedback ({:.3} CTR)",
        engine.stats().users,
        engine.stats().segments,
        clicks as f64 / requests as f64
    );
    let t = Instant::now();
    let saved = engine.save(&a.snapshot)?;
    let save_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let loaded = Engine::load(&a.snapshot)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    // The check: every user's neighbours and segment, every posterior, the
    // counters, and the next slate are the same after the round trip.
    let mut differences = 0usize;
    for &u in ids {
        differences += usize::from(loaded.neighbors(u, 10)? != engine.neighbors(u, 10)?);
        differences += usize::from(loaded.segment_of(u) != engine.segment_of(u));
    }
    for s in engine.segment_ids() {
        for &i in &truth.items {
            differences += usize::from(
                loaded.bandit().posterior_of(Some(s), None, i)
                    != engine.bandit().posterior_of(Some(s), None, i),
            );
        }
    }
    differences += usize::from(loaded.stats().bandit != engine.stats().bandit);
    // The same slate; its id differs (ids follow the clock, so a loaded
    // engine never reissues one).
    let next = Request::new(Some(truth.users[0]), None, &truth.items, 12);
    let (x, y) = (loaded.decide(&next)?, engine.decide(&next)?);
    differences += usize::from((x.items, x.scores) != (y.items, y.scores));
    if differences > 0 {
        return Err(
            format!("snapshot check failed: {differences} answers differ after reloading").into(),
        );
    }
    let info = inspect(&a.snapshot)?;
    println!(
        "snapshot: {} ({:.1} MB, format {}, checksum {:016x}) saved in {save_ms:.0} ms, reloaded in {load_ms:.0} ms; \
         check passed: neighbours and segments of all {} users, {} posteriors, counters and the next slate are identical",
        a.snapshot.display(),
        saved.bytes as f64 / 1e6,
        info.version,
        info.checksum,
        ids.len(),
        engine.segment_ids().len() * truth.items.len()
    );
    println!(
        "see what it holds: groupwise snapshot inspect {}",
        a.snapshot.display()
    );
    Ok(())
}

/// A short simulated carousel session on the segments: CTR of in-slate TS
/// (hierarchical) against random and greedy, and the regret picture.
fn slates_section(
    histories: &[UserHistory],
    segments: &groupwise::Segments,
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    use groupwise::bandit::sim::{simulate, GroundTruth, SimConfig, Variant};
    let truth = GroundTruth::from_ratings(histories, 200, 10)?;
    let segment_of: Vec<u32> = truth
        .users
        .iter()
        .map(|&u| segments.segment_of(u).unwrap_or(0))
        .collect();
    let sim = SimConfig {
        rounds: 40,
        seed: a.seed,
        ..Default::default()
    };
    println!(
        "\nslates: a simulated carousel (12 slots, 3 visible, cascade clicks) over the 200 most-rated movies; \
         true click probabilities fitted on the ratings; {} rounds, each user arriving with probability {}",
        sim.rounds, sim.arrival
    );
    let chosen: Vec<Variant> = Variant::standard()
        .into_iter()
        .filter(|v| {
            v.name == "random" || v.name.starts_with("greedy") || v.name.starts_with("hierarchical")
        })
        .collect();
    let mut series = Vec::new();
    for v in &chosen {
        let c = simulate(&truth, &segment_of, v, &sim)?;
        let last = &c.ctr[c.ctr.len().saturating_sub(10)..];
        println!(
            "  {:<38} CTR over the last 10 rounds {:.3}   cumulative regret {:.0}",
            v.name,
            last.iter().sum::<f64>() / last.len().max(1) as f64,
            c.regret.last().copied().unwrap_or(0.0)
        );
        series.push(crate::plot::Series {
            name: v.name.clone(),
            y: c.regret,
            band: None,
        });
    }
    let x: Vec<f64> = (1..=sim.rounds).map(|r| r as f64).collect();
    let svg = crate::plot::lines_svg(
        "Simulated MovieLens carousel: cumulative regret",
        "round",
        "cumulative regret (expected clicks)",
        &x,
        &series,
    );
    paths::write_output("--slates-picture", &a.slates_picture, svg)?;
    println!(
        "regret curves: {} (all policies and seeds: `groupwise eval slates`)",
        a.slates_picture.display()
    );
    Ok(())
}

/// Data-driven segments of the MovieLens users: profiles and a picture.
fn segments_section(
    index: &UserIndex,
    histories: &[UserHistory],
    meta: &ItemMetadata,
    log: &Interactions,
    a: &Args,
) -> Result<groupwise::Segments, Box<dyn std::error::Error>> {
    use groupwise::segments::{Behaviour, ProfileOptions, SegmentConfig, Segments};
    // 943 users: the production privacy floor of 50 is lowered to 30 here.
    let config = SegmentConfig {
        min_size: 30,
        seed: a.seed,
        ..Default::default()
    };
    let segments = Segments::build(index, config)?;
    let behaviour = Behaviour {
        histories,
        items: Some(meta),
    };
    let profiles = segments.profiles(index, Some(&behaviour), &ProfileOptions::default())?;
    println!("\ndata-driven segments (Leiden on the 15-NN graph of the embeddings):");
    print!("{}", crate::segments::summary(&segments));
    let name = |u: u64| log.users.name(u).unwrap_or("?").to_string();
    print!("{}", crate::segments::profile_table(&profiles, &name, 3));
    let svg = crate::segments::picture(
        &segments,
        index,
        &profiles,
        "MovieLens 100K users by segment (projection on the segment centroids' principal plane)",
    );
    paths::write_output("--picture", &a.picture, svg)?;
    println!("picture of the segments: {}", a.picture.display());
    Ok(segments)
}

/// A lookalike expansion of a real segment, scored against held-out members.
fn lookalike_section(
    encoder: &Encoder,
    histories: &[UserHistory],
    meta: &ItemMetadata,
    log: &Interactions,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    use groupwise::lookalike::eval::{
        earlier_part, evaluate_segment, later_category_fans, EvalConfig,
    };
    use groupwise::lookalike::{expand, LookalikeConfig, LookalikeRequest, Seeds, Size};
    use rand::seq::SliceRandom;

    // The segment: fans of a genre in the last third of their history; the
    // embeddings see only the first two thirds, so nothing leaks.
    let mut fans = later_category_fans(histories, meta, 2.0 / 3.0, 1.5, 3, 40);
    fans.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let Some((genre, members)) = fans.into_iter().next() else {
        return Ok(());
    };
    let space = crate::eval::build_space(encoder, &earlier_part(histories, 2.0 / 3.0), false)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut shuffled = members.clone();
    shuffled.shuffle(&mut rng);
    let (hidden, seeds) = shuffled.split_at(members.len() / 2);
    let hidden: std::collections::HashSet<u64> = hidden.iter().copied().collect();
    // MovieLens is small: the production floor of 100 seeds is lowered here.
    let config = LookalikeConfig {
        min_seeds: 10,
        ..Default::default()
    };
    let mut req = LookalikeRequest::new(Seeds::Users(seeds), Size::Count(hidden.len()));
    req.explain = true;
    let e = expand(&space.index, Some(&space.graph), &req, &config)?;
    let name = |u: u64| log.users.name(u).unwrap_or("?").to_string();
    println!(
        "\nlookalike: segment \"{genre} fans\" ({} users who favour {genre} in the last third of their ratings); \
         seeded with {} of them, the other {} hidden; embeddings from the first two thirds only",
        members.len(),
        seeds.len(),
        hidden.len()
    );
    let found = e.users.iter().filter(|u| hidden.contains(&u.id)).count();
    println!(
        "expanded to {} users with the default scorer (classifier): {} are hidden members ({:.0}% vs {:.0}% for a random pick)",
        e.users.len(),
        found,
        100.0 * found as f64 / e.users.len().max(1) as f64,
        100.0 * hidden.len() as f64 / e.candidates.max(1) as f64
    );
    for u in e.users.iter().take(5) {
        let why: Vec<String> = u
            .nearest_seeds
            .iter()
            .map(|m| format!("{} ({:.3})", name(m.seed), m.similarity))
            .collect();
        println!(
            "  {}. user {:>4} {}  nearest seeds: {}",
            u.rank,
            name(u.id),
            if hidden.contains(&u.id) {
                "[hidden member]"
            } else {
                "               "
            },
            why.join(", ")
        );
    }
    let eval = EvalConfig::default();
    let res = evaluate_segment(
        &space.index,
        Some(&space.graph),
        &genre,
        &members,
        &crate::eval::methods(space.activity.is_some()),
        space.activity.as_ref(),
        &config,
        &eval,
    )?;
    println!(
        "held-out AUC over {} random splits, and within activity quartiles (ranking by activity alone scores about 0.5 there; \
         lift = precision@K / base rate, K = hidden count):",
        eval.splits
    );
    for r in &res {
        println!(
            "  {:<11} AUC {:.3} ± {:.3}   quartile AUC {}   lift {:.2}",
            r.method,
            r.auc,
            r.auc_sd,
            r.quartile_auc
                .map_or_else(|| "-".to_string(), |q| format!("{q:.3}")),
            r.lift[0]
        );
    }
    Ok(())
}
