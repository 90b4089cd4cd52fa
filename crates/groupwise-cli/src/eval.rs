//! `groupwise eval lookalike`: the seed-held-out evaluation of every scorer
//! against the random and activity baselines, on any interactions file (or
//! embeddings file) plus a user → segment labels file, or on the MovieLens
//! 100K preset (occupations, gender, age bands, and behavioural segments
//! defined on later ratings). Next to each raw AUC the report gives the AUC
//! within activity quartiles, which an activity-only ranking cannot inflate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use groupwise::data::{
    Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec, Labels, UserHistory,
};
use groupwise::graph::KnnGraph;
use groupwise::io::EmbeddingTable;
use groupwise::lookalike::eval::{
    earlier_part, evaluate_segment, later_category_fans, EvalConfig, Method, SegmentResult,
    ACTIVITY_BINS,
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
    #[arg(long, conflicts_with_all = ["interactions", "labels", "embeddings"])]
    pub movielens: bool,
    /// MovieLens 100K folder (default: .groupwise/data/ml-100k).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Interactions file (CSV/TSV with a header): its users are encoded with
    /// the model, and their activity (number of interactions) drives the
    /// activity baseline and the AUC within activity quartiles.
    #[arg(long, requires = "labels")]
    pub interactions: Option<PathBuf>,
    /// Or: evaluate these embeddings (`.npy` + `.ids.txt`, e.g. from
    /// `groupwise encode`) instead of encoding with a model; add
    /// --interactions for the activity baseline and the quartile AUC.
    #[arg(long, requires = "labels", conflicts_with_all = ["model", "weight_col"])]
    pub embeddings: Option<PathBuf>,
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
    /// Segments with fewer members in the index are skipped (each is named on
    /// standard error).
    #[arg(long, default_value_t = 40)]
    pub min_members: usize,
    /// Minimum number of seeds of a split (the production default of 100 is
    /// above the seed half of most evaluation segments).
    #[arg(long, default_value_t = 10, value_parser = crate::args::at_least_one)]
    pub min_seeds: usize,
    /// Share of each segment hidden from the seeds (strictly between 0 and 1).
    #[arg(long, default_value_t = 0.5, value_parser = crate::args::open_unit)]
    pub hide: f64,
    /// Random splits per segment.
    #[arg(long, default_value_t = 3, value_parser = crate::args::at_least_one)]
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

/// Methods compared: every scorer, then the random baseline, then (when
/// activity counts are known) the activity baseline.
pub fn methods(with_activity: bool) -> Vec<Method> {
    Scorer::ALL
        .into_iter()
        .map(Method::Scorer)
        .chain([Method::Random])
        .chain(with_activity.then_some(Method::Activity))
        .collect()
}

/// The index and kNN graph the scorers need, and each user's activity.
pub struct Space {
    pub index: UserIndex,
    pub graph: KnnGraph,
    /// User → number of interactions (every user of the index), when known.
    pub activity: Option<HashMap<u64, f64>>,
}

impl Space {
    /// The kNN graph of `index`; `activity` counts (users of the index
    /// missing from it have 0 interactions).
    fn new(
        index: UserIndex,
        activity: Option<HashMap<u64, f64>>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let graph = KnnGraph::build(&index, 10, &SearchOptions::default())?;
        let activity = activity.map(|mut a| {
            for id in index.ids() {
                a.entry(id).or_insert(0.0);
            }
            a.retain(|id, _| index.contains(*id));
            a
        });
        Ok(Space {
            index,
            graph,
            activity,
        })
    }
}

/// User → number of interactions.
fn activity_of(histories: &[UserHistory]) -> HashMap<u64, f64> {
    histories
        .iter()
        .map(|h| (h.user, h.items.len() as f64))
        .collect()
}

/// Histories encoded (with their weights when `weighted`, as `groupwise
/// encode` does), indexed, and their kNN graph.
pub fn build_space(
    encoder: &Encoder,
    histories: &[UserHistory],
    weighted: bool,
) -> Result<Space, Box<dyn std::error::Error>> {
    let index = crate::embed::index_histories(encoder, histories, weighted)?;
    Space::new(index, Some(activity_of(histories)))
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
    let methods = methods(space.activity.is_some());
    let pb = progress::bar(segments.len() as u64, name);
    let mut results = Vec::new();
    for (seg, members) in segments {
        results.push(evaluate_segment(
            &space.index,
            Some(&space.graph),
            seg,
            members,
            &methods,
            space.activity.as_ref(),
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

/// The segments with at least `min_members` members in `space`'s index;
/// each one skipped is named on standard error with its size.
pub fn keep_segments(
    family: &str,
    segments: impl IntoIterator<Item = (String, Vec<u64>)>,
    space: &Space,
    min_members: usize,
) -> Vec<(String, Vec<u64>)> {
    let mut kept = Vec::new();
    for (name, members) in segments {
        let present = members.iter().filter(|&&u| space.index.contains(u)).count();
        if present >= min_members {
            kept.push((name, members));
        } else {
            eprintln!(
                "{family}: skipped segment {name:?}: {present} members in the index{} \
                 (below --min-members {min_members})",
                if present == members.len() {
                    String::new()
                } else {
                    format!(" ({} in the labels)", members.len())
                }
            );
        }
    }
    kept
}

fn lookalike(a: &LookalikeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // A bad output path is reported before the work, not after it.
    if let Some(out) = &a.out {
        paths::prepare_output("--out", out)?;
    }
    let eval = EvalConfig {
        hide_fraction: a.hide,
        splits: a.splits,
        seed: a.seed,
        ..Default::default()
    };
    let config = LookalikeConfig {
        min_seeds: a.min_seeds,
        ..Default::default()
    };
    let families = if a.movielens {
        let encoder = Encoder::load(model_path(a)?, &EncoderOptions::default())?;
        movielens_families(a, &encoder, &eval, &config)?
    } else {
        let Some(labels) = &a.labels else {
            return Err("pass --movielens, or --labels with --interactions or --embeddings".into());
        };
        let space = custom_space(a)?;
        let labels = Labels::load(labels, &a.columns.user_col, &a.label_col, None)?;
        let segments = keep_segments("segments", labels.segments, &space, a.min_members);
        if segments.is_empty() {
            return Err(format!(
                "no segment has --min-members {} members in the index; nothing to evaluate",
                a.min_members
            )
            .into());
        }
        vec![evaluate_family(
            "segments", &space, &segments, &eval, &config,
        )?]
    };
    let report = render(&families, &eval);
    print!("{report}");
    if let Some(out) = &a.out {
        paths::write_output("--out", out, &report)?;
    }
    Ok(())
}

fn model_path(a: &LookalikeArgs) -> Result<PathBuf, String> {
    match &a.model {
        Some(m) => Ok(m.clone()),
        None => paths::model("ml100k-seq.onnx"),
    }
}

/// The space of a labels-file evaluation: `--embeddings` as given, or
/// `--interactions` encoded with the model exactly as `groupwise encode`
/// encodes them (same function, same `--weight-col` handling).
pub fn custom_space(a: &LookalikeArgs) -> Result<Space, Box<dyn std::error::Error>> {
    let log = match &a.interactions {
        Some(p) => Some(a.columns.load("--interactions", p)?),
        None => None,
    };
    let histories = log.as_ref().map(Interactions::histories);
    if let Some(e) = &a.embeddings {
        let table = EmbeddingTable::load(e)?;
        let index = crate::neighbors::load_index(&table)?;
        return Space::new(index, histories.as_deref().map(activity_of));
    }
    let Some(histories) = histories else {
        return Err("pass --interactions (to encode with the model) or --embeddings".into());
    };
    let encoder = Encoder::load(model_path(a)?, &EncoderOptions::default())?;
    build_space(&encoder, &histories, a.columns.weighted())
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
    // The preset encodes without the ratings as weights (as `groupwise
    // encode` does without --weight-col).
    let full = build_space(encoder, &histories, false)?;
    let user_file = dir.join("ml-100k.user");
    let keep = |family: &str, segments: Vec<(String, Vec<u64>)>| {
        keep_segments(family, segments, &full, a.min_members)
    };
    let occupations = keep(
        "occupation",
        Labels::load(&user_file, "user_id", "occupation", None)?
            .segments
            .into_iter()
            .collect(),
    );
    let genders = keep(
        "gender",
        Labels::load(&user_file, "user_id", "gender", None)?
            .segments
            .into_iter()
            .map(|(g, m)| (format!("gender {g}"), m))
            .collect(),
    );
    let ages_raw = Labels::load(&user_file, "user_id", "age", None)?;
    let mut bands: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (age, members) in ages_raw.segments {
        if let Some(b) = age_band(&age) {
            bands.entry(b).or_default().extend(members);
        }
    }
    let ages = keep(
        "age band",
        bands.into_iter().map(|(b, m)| (b.to_string(), m)).collect(),
    );

    // Behavioural segments: genre fans in the last third of each history,
    // embeddings from the first two thirds only (no leakage).
    let early = build_space(encoder, &earlier_part(&histories, 2.0 / 3.0), false)?;
    let fans = keep_segments(
        "behavioural",
        later_category_fans(&histories, &meta, 2.0 / 3.0, 1.5, 3, 1)
            .into_iter()
            .map(|(g, m)| (format!("{g} fans (later)"), m)),
        &early,
        a.min_members,
    );

    Ok(vec![
        evaluate_family("occupation", &full, &occupations, eval, config)?,
        evaluate_family("gender", &full, &genders, eval, config)?,
        evaluate_family("age band", &full, &ages, eval, config)?,
        evaluate_family("behavioural", &early, &fans, eval, config)?,
    ])
}

/// The Markdown report: a summary per family (mean AUC, mean AUC within
/// activity quartiles, lift@1x per method, and how often each method is the
/// best), then every segment.
pub fn render(families: &[Family], eval: &EvalConfig) -> String {
    // Every family is evaluated with the same methods, in the same order.
    let names: Vec<&str> = families
        .iter()
        .flat_map(|f| f.results.first())
        .next()
        .map(|r| r.iter().map(|x| x.method).collect())
        .unwrap_or_default();
    let quartiles = families
        .iter()
        .flat_map(|f| &f.results)
        .flatten()
        .any(|r| r.quartile_auc.is_some());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Seed-held-out evaluation: {:.0} % of each segment hidden, {} splits, K = {:?} x hidden.\n",
        eval.hide_fraction * 100.0,
        eval.splits,
        eval.multiples
    );
    if quartiles {
        let _ = writeln!(
            s,
            "Quartile AUC: the AUC within activity quartiles (users split into {ACTIVITY_BINS} bins \
             by number of interactions, the AUC computed inside each bin, then averaged weighted \
             by the hidden members in each bin). Ranking by activity alone scores about 0.5 on \
             it; what a scorer keeps above 0.5 it found beyond activity.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "No activity counts (pass --interactions): no activity baseline and no AUC within \
             activity quartiles.\n"
        );
    }
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
                let q: Vec<f64> = f.results.iter().filter_map(|r| r[m].quartile_auc).collect();
                let q = if q.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", quartile AUC {:.3}",
                        q.iter().sum::<f64>() / q.len() as f64
                    )
                };
                format!("AUC {auc:.3}{q}, lift {lift:.2}, best {wins}")
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
    let q_head = if quartiles { " quartile AUC |" } else { "" };
    let q_rule = if quartiles { "---|" } else { "" };
    for f in families {
        let _ = writeln!(s, "\n### {}\n", f.name);
        let _ = writeln!(
            s,
            "| segment | members | hidden | method | AUC |{q_head} P@1x | R@1x | lift@1x | lift@2x | lift@5x |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|{q_rule}---|---|---|---|---|");
        for seg in &f.results {
            for r in seg {
                let q = if quartiles {
                    r.quartile_auc
                        .map_or_else(|| " - |".to_string(), |q| format!(" {q:.3} |"))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.3} ± {:.3} |{q} {:.3} | {:.3} | {:.2} | {:.2} | {:.2} |",
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use groupwise::data::ids::stable_id;

    #[derive(Parser)]
    struct EvalCli {
        #[command(flatten)]
        args: LookalikeArgs,
    }

    #[derive(Parser)]
    struct EncodeCli {
        #[command(flatten)]
        args: crate::encode::Args,
    }

    /// `eval lookalike --interactions --weight-col` and `encode --weight-col`
    /// give every user the same embedding (the eval path once encoded without
    /// the weights: the same user had two embeddings).
    #[test]
    fn eval_lookalike_encodes_users_exactly_as_encode_does(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("log.csv");
        // Eight users, each rating items of the reference vocabulary with
        // weights from 1 to 5 that change which items dominate.
        let mut text = String::from("uid,sku,stars\n");
        for u in 0..8u32 {
            for k in 0..6u32 {
                let item = 1 + (u * 37 + k * 11) % 400;
                let stars = 1 + (u + k * 3) % 5;
                text.push_str(&format!("user-{u},{item},{stars}\n"));
            }
        }
        std::fs::write(&log, text)?;
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, "uid,segment\nuser-0,a\n")?;
        let out = dir.path().join("emb.npy");
        let path = |p: &std::path::Path| p.to_str().map(str::to_string).ok_or("utf-8");
        let argv = |command: &str, file: &str, weighted: bool| -> Vec<String> {
            let mut v: Vec<String> = [command, "--interactions", file, "--user-col", "uid"]
                .into_iter()
                .chain(["--item-col", "sku"])
                .map(String::from)
                .collect();
            if weighted {
                v.extend(["--weight-col".to_string(), "stars".to_string()]);
            }
            v
        };

        let mut encode = argv("encode", &path(&log)?, true);
        encode.extend(["--out".to_string(), path(&out)?]);
        crate::encode::run(&EncodeCli::try_parse_from(&encode)?.args)?;
        let table = EmbeddingTable::load(&out)?;

        let space_of = |weighted: bool| -> Result<Space, Box<dyn std::error::Error>> {
            let mut eval = argv("eval", &path(&log)?, weighted);
            eval.extend(["--labels".to_string(), path(&labels)?]);
            custom_space(&EvalCli::try_parse_from(&eval)?.args)
        };
        let space = space_of(true)?;
        // Without the weights the embeddings differ: the check below would
        // catch a path that drops them.
        let unweighted = space_of(false)?;
        assert_eq!(table.ids.len(), 8);
        let mut largest_weight_effect = 0.0f32;
        for (id, row) in table.ids.iter().zip(table.data.chunks(table.dim)) {
            let v = space.index.vector(stable_id(id)).ok_or("user indexed")?;
            let w = unweighted
                .index
                .vector(stable_id(id))
                .ok_or("user indexed")?;
            for ((a, b), c) in row.iter().zip(&v).zip(&w) {
                assert!((a - b).abs() < 1e-6, "{id}: encode {a}, eval {b}");
                largest_weight_effect = largest_weight_effect.max((a - c).abs());
            }
        }
        assert!(largest_weight_effect > 1e-3, "{largest_weight_effect}");
        Ok(())
    }
}
