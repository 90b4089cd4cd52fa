//! `groupwise lookalike`: seeds file in, ranked users out.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use groupwise::data::ids::stable_id;
use groupwise::graph::KnnGraph;
use groupwise::io::EmbeddingTable;
use groupwise::lookalike::{expand, Level, LookalikeConfig, LookalikeRequest, Scorer, Seeds, Size};
use groupwise::SearchOptions;

use crate::neighbors::load_index;

/// Arguments of `groupwise lookalike`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Embeddings file written by `groupwise encode` (`.npy` + `.ids.txt`).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Seed user ids, one per line (as in the ids file).
    #[arg(long)]
    pub seeds: PathBuf,
    /// Users never to return, one per line (e.g. existing customers).
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    /// Output size: a count (`5000`), a share of the population (`3%`), or a
    /// level (`narrow` = 1 %, `balanced` = 5 %, `broad` = 10 %).
    #[arg(long, default_value = "balanced")]
    pub size: String,
    /// Scorer: centroid, knn, classifier, diffusion or fusion.
    #[arg(long, default_value = "classifier")]
    pub scorer: String,
    /// Minimum number of seeds found in the index.
    #[arg(long, default_value_t = 100)]
    pub min_seeds: usize,
    /// Add each user's nearest seeds to the output.
    #[arg(long)]
    pub explain: bool,
    /// Random seed (negative sampling).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output TSV (rank, user, score[, nearest seeds]); standard output when
    /// absent. Missing folders are created.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses `5000`, `3%`, `0.03`, `narrow`, `balanced`, `broad`.
pub fn parse_size(s: &str) -> Result<Size, String> {
    match s {
        "narrow" => return Ok(Size::Level(Level::Narrow)),
        "balanced" => return Ok(Size::Level(Level::Balanced)),
        "broad" => return Ok(Size::Level(Level::Broad)),
        _ => {}
    }
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("bad size {s:?}"))?;
        return Ok(Size::Fraction(v / 100.0));
    }
    if let Ok(n) = s.parse::<usize>() {
        return Ok(Size::Count(n));
    }
    s.parse::<f64>().map(Size::Fraction).map_err(|_| {
        format!("bad size {s:?}: use a count, a percentage, a fraction or narrow/balanced/broad")
    })
}

fn read_ids(path: &std::path::Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let scorer =
        Scorer::parse(&a.scorer).ok_or_else(|| format!("unknown scorer {:?}", a.scorer))?;
    let size = parse_size(&a.size)?;
    // A bad --out is reported before the work, not after it.
    if let Some(p) = &a.out {
        crate::paths::prepare_output("--out", p)?;
    }
    let table = EmbeddingTable::load(&a.embeddings)?;
    let index = load_index(&table)?;
    let names: HashMap<u64, &str> = table
        .ids
        .iter()
        .map(|s| (stable_id(s), s.as_str()))
        .collect();
    let seeds: Vec<u64> = read_ids(&a.seeds)?.iter().map(|s| stable_id(s)).collect();
    let exclude: Option<HashSet<u64>> = a
        .exclude
        .as_deref()
        .map(read_ids)
        .transpose()?
        .map(|v| v.iter().map(|s| stable_id(s)).collect());
    let graph = match scorer {
        Scorer::Diffusion | Scorer::Fusion => {
            Some(KnnGraph::build(&index, 10, &SearchOptions::default())?)
        }
        _ => None,
    };
    let mut req = LookalikeRequest::new(Seeds::Users(&seeds), size);
    req.scorer = scorer;
    req.explain = a.explain;
    req.exclude = exclude.as_ref();
    let config = LookalikeConfig {
        min_seeds: a.min_seeds,
        seed: a.seed,
        ..Default::default()
    };
    let e = expand(&index, graph.as_ref(), &req, &config)?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "rank\tuser\tscore{}",
        if a.explain { "\tnearest_seeds" } else { "" }
    );
    for u in &e.users {
        let name = names.get(&u.id).copied().unwrap_or("?");
        let _ = write!(text, "{}\t{}\t{:.6}", u.rank, name, u.score);
        if a.explain {
            let why: Vec<String> = u
                .nearest_seeds
                .iter()
                .map(|m| {
                    format!(
                        "{}:{:.3}",
                        names.get(&m.seed).copied().unwrap_or("?"),
                        m.similarity
                    )
                })
                .collect();
            let _ = write!(text, "\t{}", why.join(","));
        }
        let _ = writeln!(text);
    }
    match &a.out {
        Some(p) => crate::paths::write_output("--out", p, text)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    eprintln!(
        "{} users from {} seeds ({} seed ids not found) among {} candidates, scorer {}",
        e.users.len(),
        e.seeds_used,
        e.unknown_seeds.len(),
        e.candidates,
        scorer.name()
    );
    Ok(())
}
