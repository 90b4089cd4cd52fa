//! `groupwise eval lookalike`: the seed-held-out evaluation of every scorer
//! against the random and activity baselines, on any interactions file plus a
//! user → segment labels file, or on the MovieLens 100K preset (occupations,
//! gender, age bands, and behavioural segments defined on later ratings).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use groupwise::data::{
    Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec, Labels, UserHistory,
};
use groupwise::graph::KnnGraph;
use groupwise::lookalike::eval::{
    earlier_part, evaluate_segment, later_category_fans, EvalConfig, Method, SegmentResult,
};
use groupwise::lookalike::{LookalikeConfig, Scorer};
use groupwise::{Encoder, EncoderOptions, SearchOptions, UserIndex};

use crate::paths;
use crate::progress;

/// Evaluations.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Seed-held-out evaluation of lookalike scorers.
    Lookalike(LookalikeArgs),
    /// Quality, stability and speed of data-driven segments (vs leidenalg and
    /// scikit-learn with --peers).
    Segments(crate::eval_segments::Args),
    /// The slate simulator on MovieLens: regret and CTR of every policy.
    Slates(crate::eval_slates::Args),
}

/// Arguments of `groupwise eval lookalike`.
#[derive(clap::Args, Debug)]
pub struct LookalikeArgs {
    /// Run the MovieLens 100K preset (needs scripts/setup.sh's data).
    #[arg(long, conflicts_with_all = ["interactions", "labels"])]
    pub movielens: bool,
    /// MovieLens 100K folder (default: .groupwise/data/ml-100k).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Interactions file (CSV/TSV with a header).
    #[arg(long, requires = "labels")]
    pub interactions: Option<PathBuf>,
    #[command(flatten)]
    pub columns: crate::columns::Columns,
    /// User → segment labels file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Segment column of the labels file (its user column is --user-col).
    #[arg(long, default_value = "segment")]
    pub label_col: String,
    /// Encoder (default models/ml100k-seq.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Segments with fewer members are skipped.
    #[arg(long, default_value_t = 40)]
    pub min_members: usize,
    /// Share of each segment hidden from the seeds.
    #[arg(long, default_value_t = 0.5)]
    pub hide: f64,
    /// Random splits per segment.
    #[arg(long, default_value_t = 3)]
    pub splits: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(c: &Command) -> Result<(), Box<dyn std::error::Error>> {
    match c {
        Command::Lookalike(a) => lookalike(a),
        Command::Segments(a) => crate::eval_segments::run(a),
        Command::Slates(a) => crate::eval_slates::run(a),
    }
}

/// Methods compared: every scorer, then the two baselines.
pub fn methods() -> Vec<Method> {
    Scorer::ALL
        .into_iter()
        .map(Method::Scorer)
        .chain([Method::Random, Method::Activity])
        .collect()
}

/// Embeds histories and builds the index and kNN graph the scorers need.
pub struct Space {
    pub index: UserIndex,
    pub graph: KnnGraph,
    pub activity: HashMap<u64, f64>,
}

/// Every history encoded and indexed (users keyed by their history's user id).
pub fn embed(encoder: &Encoder, histories: &[UserHistory]) -> groupwise::Result<UserIndex> {
    let emb = encoder.encode_histories(histories, false)?;
    let ids: Vec<u64> = histories.iter().map(|h| h.user).collect();
    crate::neighbors::index_rows(&ids, &emb.embeddings, encoder.dim())
}

pub fn build_space(
    encoder: &Encoder,
    histories: &[UserHistory],
) -> Result<Space, Box<dyn std::error::Error>> {
    let index = embed(encoder, histories)?;
    let graph = KnnGraph::build(&index, 10, &SearchOptions::default())?;
    let activity = histories
        .iter()
        .map(|h| (h.user, h.items.len() as f64))
        .collect();
    Ok(Space {
        index,
        graph,
        activity,
    })
}

/// One family of segments evaluated in one embedding space.
pub struct Family {
    pub name: String,
    pub results: Vec<Vec<SegmentResult>>,
}

pub fn evaluate_family(
    name: &str,
    space: &Space,
    segments: &[(String, Vec<u64>)],
    eval: &EvalConfig,
    config: &LookalikeConfig,
) -> Result<Family, Box<dyn std::error::Error>> {
    let pb = progress::bar(segments.len() as u64, name);
    let mut results = Vec::new();
    for (seg, members) in segments {
        results.push(evaluate_segment(
            &space.index,
            Some(&space.graph),
            seg,
            members,
            &methods(),
            Some(&space.activity),
            config,
            eval,
        )?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Family {
        name: name.to_string(),
        results,
    })
}

fn lookalike(a: &LookalikeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let model = match &a.model {
        Some(m) => m.clone(),
        None => paths::model("ml100k-seq.onnx")?,
    };
    let encoder = Encoder::load(&model, &EncoderOptions::default())?;
    let eval = EvalConfig {
        hide_fraction: a.hide,
        splits: a.splits,
        seed: a.seed,
        ..Default::default()
    };
    // Held-out seeds of small segments are below the production floor of 100.
    let config = LookalikeConfig {
        min_seeds: 10,
        ..Default::default()
    };
    let families = if a.movielens {
        movielens_families(a, &encoder, &eval, &config)?
    } else {
        let (Some(inter), Some(labels)) = (&a.interactions, &a.labels) else {
            return Err("pass --movielens, or --interactions and --labels".into());
        };
        let log = Interactions::load(inter, &a.columns.spec()?)?;
        let space = build_space(&encoder, &log.histories())?;
        let labels = Labels::load(labels, &a.columns.user_col, &a.label_col, None)?;
        let segments: Vec<(String, Vec<u64>)> = labels
            .segments
            .into_iter()
            .filter(|(_, m)| m.len() >= a.min_members)
            .collect();
        vec![evaluate_family(
            "segments", &space, &segments, &eval, &config,
        )?]
    };
    let report = render(&families, &eval);
    print!("{report}");
    if let Some(out) = &a.out {
        paths::write(out, &report)?;
    }
    Ok(())
}

/// Age bands used for MovieLens users.
fn age_band(age: &str) -> Option<&'static str> {
    let a: u32 = age.parse().ok()?;
    Some(match a {
        0..=24 => "age <25",
        25..=34 => "age 25-34",
        35..=44 => "age 35-44",
        _ => "age 45+",
    })
}

pub fn movielens_families(
    a: &LookalikeArgs,
    encoder: &Encoder,
    eval: &EvalConfig,
    config: &LookalikeConfig,
) -> Result<Vec<Family>, Box<dyn std::error::Error>> {
    let dir = paths::movielens_dir(a.data_dir.as_deref())?;
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let meta = ItemMetadata::load(dir.join("ml-100k.item"), &ItemMetadataSpec::movielens())?;
    let histories = log.histories();
    let full = build_space(encoder, &histories)?;
    let user_file = dir.join("ml-100k.user");
    let keep = |l: Labels| -> Vec<(String, Vec<u64>)> {
        l.segments
            .into_iter()
            .filter(|(_, m)| m.len() >= a.min_members)
            .collect()
    };
    let occupations = keep(Labels::load(&user_file, "user_id", "occupation", None)?);
    let genders = keep(Labels::load(&user_file, "user_id", "gender", None)?)
        .into_iter()
        .map(|(g, m)| (format!("gender {g}"), m))
        .collect::<Vec<_>>();
    let ages_raw = Labels::load(&user_file, "user_id", "age", None)?;
    let mut bands: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (age, members) in ages_raw.segments {
        if let Some(b) = age_band(&age) {
            bands.entry(b).or_default().extend(members);
        }
    }
    let ages: Vec<(String, Vec<u64>)> =
        bands.into_iter().map(|(b, m)| (b.to_string(), m)).collect();

    // Behavioural segments: genre fans in the last third of each history,
    // embeddings from the first two thirds only (no leakage).
    let fans = later_category_fans(&histories, &meta, 2.0 / 3.0, 1.5, 3, a.min_members);
    let fans: Vec<(String, Vec<u64>)> = fans
        .into_iter()
        .map(|(g, m)| (format!("{g} fans (later)"), m))
        .collect();
    let early = build_space(encoder, &earlier_part(&histories, 2.0 / 3.0))?;

    Ok(vec![
        evaluate_family("occupation", &full, &occupations, eval, config)?,
        evaluate_family("gender", &full, &genders, eval, config)?,
        evaluate_family("age band", &full, &ages, eval, config)?,
        evaluate_family("behavioural", &early, &fans, eval, config)?,
    ])
}

/// The Markdown report: a summary per family (mean AUC and lift@1x per
/// method, and how often each method is the best), then every segment.
pub fn render(families: &[Family], eval: &EvalConfig) -> String {
    let names: Vec<&str> = methods().iter().map(|m| m.name()).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Seed-held-out evaluation: {:.0} % of each segment hidden, {} splits, K = {:?} x hidden.\n",
        eval.hide_fraction * 100.0,
        eval.splits,
        eval.multiples
    );
    let _ = writeln!(s, "### Summary (mean over segments)\n");
    let _ = writeln!(s, "| family | segments | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(names.len()));
    for f in families {
        let n = f.results.len().max(1) as f64;
        let cells: Vec<String> = (0..names.len())
            .map(|m| {
                let auc = f.results.iter().map(|r| r[m].auc).sum::<f64>() / n;
                let lift = f.results.iter().map(|r| r[m].lift[0]).sum::<f64>() / n;
                let wins = f
                    .results
                    .iter()
                    .filter(|r| {
                        let best = r.iter().map(|x| x.auc).fold(f64::MIN, f64::max);
                        (r[m].auc - best).abs() < 1e-12
                    })
                    .count();
                format!("AUC {auc:.3}, lift {lift:.2}, best {wins}")
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            f.name,
            f.results.len(),
            cells.join(" | ")
        );
    }
    for f in families {
        let _ = writeln!(s, "\n### {}\n", f.name);
        let _ = writeln!(s, "| segment | members | hidden | method | AUC | P@1x | R@1x | lift@1x | lift@2x | lift@5x |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for seg in &f.results {
            for r in seg {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.3} ± {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} |",
                    r.segment,
                    r.members,
                    r.hidden,
                    r.method,
                    r.auc,
                    r.auc_sd,
                    r.precision[0],
                    r.recall[0],
                    r.lift[0],
                    r.lift.get(1).copied().unwrap_or(0.0),
                    r.lift.get(2).copied().unwrap_or(0.0)
                );
            }
        }
    }
    s
}
