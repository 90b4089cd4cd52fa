//! Lookalike expansion: given a seed segment (users a merchandiser or a host
//! defined: buyers of a designer, a CRM list, ...), rank everyone else by how
//! much they behave like the seeds, and return the top of that ranking.
//!
//! # Scorers, and when each wins
//!
//! | scorer | what it scores | cost over `n` users, `m` seeds | wins when |
//! |---|---|---|---|
//! | [`Scorer::Centroid`] | cosine to the mean seed vector | `n·d` | the seed segment is one tight taste and speed matters most; it is the weakest on real segments |
//! | [`Scorer::KnnDensity`] | mean similarity to the `k` nearest seeds | `n·m'·d` (`m'` ≤ `knn_max_seeds`) | the seeds are several tastes at once (multi-modal), where a centroid or any linear model points between them |
//! | [`Scorer::Classifier`] (default) | logistic regression, seeds vs a random population sample | `(m + negatives)·d²` to fit, `n·d` to score | what separates seeds from everyone else is a direction (demographics, genre taste): best on 24 of 30 MovieLens segments (EVALUATION.md); the approach of production lookalike systems and UNICON's classifier head |
//! | [`Scorer::Diffusion`] | personalised PageRank from the seeds over the kNN graph | `iterations · edges` | multi-modal seeds and segments that follow the graph's local structure; needs a [`KnnGraph`] |
//! | [`Scorer::Fusion`] | mean-rank fusion of kNN density, classifier (and diffusion with a graph) | sum of its parts | a hedge: 0.03-0.08 AUC below the classifier on real segments, but still 0.80 precise on multi-modal seeds where the classifier drops to 0.36 |
//!
//! The default is the classifier because the evaluation says so: fusion was
//! built to be the default and did not win (see EVALUATION.md).
//!
//! # Guarantees
//!
//! * **Nested**: the ranking is a total order (score, then user id) that does
//!   not depend on the requested size, so a larger expansion contains every
//!   user of a smaller one with the same seeds, scorer and config.
//! * **Seeds never come back**, nor users in the request's exclusion set.
//! * **Errors, not silence**: too few usable seeds (default minimum 100, the
//!   ad platforms' floor), unknown seed ids (counted and listed), wrong
//!   dimensions, an empty population.
//! * **Deterministic** for a given [`LookalikeConfig::seed`].

pub mod eval;
mod logistic;
mod scorers;

use std::collections::HashSet;

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::index::{exact_top_k, Filter, Population, UserIndex};
use crate::limits::{
    self, MAX_DIFFUSION_ITERATIONS, MAX_L2, MAX_MIN_SEEDS, MAX_NEIGHBOURS, MAX_SAMPLE,
};
use crate::vector::normalized;

/// The seed segment.
#[derive(Debug, Clone, Copy)]
pub enum Seeds<'a> {
    /// Users in the index. Ids not in the index are reported, not fatal,
    /// unless too few seeds remain.
    Users(&'a [u64]),
    /// Embeddings from outside the index (row-major), e.g. customers of another
    /// market encoded with the same encoder. They are never candidates.
    Vectors(&'a [f32]),
}

/// Expansion levels, as fractions of the population (the big ad platforms
/// offer 1–10 % of a country's users in similar steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The 1 % of the population most like the seeds.
    Narrow,
    /// 5 %.
    Balanced,
    /// 10 %.
    Broad,
}

impl Level {
    /// The fraction of the population this level returns.
    pub fn fraction(self) -> f64 {
        match self {
            Level::Narrow => 0.01,
            Level::Balanced => 0.05,
            Level::Broad => 0.10,
        }
    }
}

/// How many users to return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// Exactly this many (fewer if there are fewer candidates).
    Count(usize),
    /// This share of the population (live users), rounded up, in (0, 1].
    Fraction(f64),
    /// A named level.
    Level(Level),
}

/// How candidates are scored (see the module docs for when each wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scorer {
    /// Cosine similarity to the mean seed vector.
    Centroid,
    /// Mean similarity to the `knn_k` most similar seeds.
    KnnDensity,
    /// Log-odds of a seeds-vs-population logistic regression (the default).
    #[default]
    Classifier,
    /// Personalised PageRank from the seeds over a kNN graph.
    Diffusion,
    /// Mean-rank fusion of kNN density and the classifier (and diffusion
    /// when a graph is given).
    Fusion,
}

impl Scorer {
    /// Every scorer, in documentation order.
    pub const ALL: [Scorer; 5] = [
        Scorer::Centroid,
        Scorer::KnnDensity,
        Scorer::Classifier,
        Scorer::Diffusion,
        Scorer::Fusion,
    ];

    /// Lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scorer::Centroid => "centroid",
            Scorer::KnnDensity => "knn",
            Scorer::Classifier => "classifier",
            Scorer::Diffusion => "diffusion",
            Scorer::Fusion => "fusion",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Scorer> {
        Scorer::ALL.into_iter().find(|sc| sc.name() == s)
    }
}

/// Parameters of lookalike expansion, with production defaults. The ranges
/// are checked by [`expand`] and [`score_candidates`] (and by the engine when
/// it opens); the bounds are in [`crate::limits`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookalikeConfig {
    /// Fewest usable seeds a request may have (default 100;
    /// 0..=[`MAX_MIN_SEEDS`], 0 meaning 1).
    pub min_seeds: usize,
    /// Seeds per candidate averaged by the kNN-density scorer (default 10;
    /// 1..=[`MAX_NEIGHBOURS`]).
    pub knn_k: usize,
    /// The kNN-density scorer uses a seeded sample of at most this many seeds
    /// (default 2,048; 1..=[`MAX_SAMPLE`]), which
    /// bounds its cost on very large seed lists.
    pub knn_max_seeds: usize,
    /// Classifier negatives per seed (default 5; 0..=1,000), sampled from
    /// the candidates...
    pub negatives_per_seed: usize,
    /// ... but at least this many (default 1,000; 0..=`max_negatives`) ...
    pub min_negatives: usize,
    /// ... and at most this many (default 20,000;
    /// 1..=[`MAX_SAMPLE`]).
    pub max_negatives: usize,
    /// L2 penalty of the classifier, in units of the total sample weight
    /// (default 1.0; in [0, [`MAX_L2`]]).
    pub l2: f64,
    /// Restart probability of personalised PageRank (default 0.15; in (0, 1]).
    pub restart: f64,
    /// Power iterations of personalised PageRank (default 30;
    /// 1..=[`MAX_DIFFUSION_ITERATIONS`]).
    pub iterations: usize,
    /// Nearest seeds listed in an explanation (default 3; 0..=
    /// [`MAX_NEIGHBOURS`], 0 meaning 1).
    pub explain_k: usize,
    /// Seed of every random choice (negative sampling, seed sampling; any value).
    pub seed: u64,
}

impl LookalikeConfig {
    /// Checks every setting against its documented range; errors name the
    /// key as in an engine config (`lookalike.knn_k`).
    pub(crate) fn validate(&self) -> Result<()> {
        limits::count("lookalike.min_seeds", self.min_seeds, 0..=MAX_MIN_SEEDS)?;
        limits::count("lookalike.knn_k", self.knn_k, 1..=MAX_NEIGHBOURS)?;
        limits::count(
            "lookalike.knn_max_seeds",
            self.knn_max_seeds,
            1..=MAX_SAMPLE,
        )?;
        limits::count(
            "lookalike.negatives_per_seed",
            self.negatives_per_seed,
            0..=1000,
        )?;
        limits::count(
            "lookalike.max_negatives",
            self.max_negatives,
            1..=MAX_SAMPLE,
        )?;
        limits::count(
            "lookalike.min_negatives",
            self.min_negatives,
            0..=self.max_negatives,
        )?;
        limits::real("lookalike.l2", self.l2, 0.0, false, MAX_L2)?;
        limits::real("lookalike.restart", self.restart, 0.0, true, 1.0)?;
        limits::count(
            "lookalike.iterations",
            self.iterations,
            1..=MAX_DIFFUSION_ITERATIONS,
        )?;
        limits::count("lookalike.explain_k", self.explain_k, 0..=MAX_NEIGHBOURS)?;
        Ok(())
    }
}

impl Default for LookalikeConfig {
    fn default() -> Self {
        LookalikeConfig {
            min_seeds: 100,
            knn_k: 10,
            knn_max_seeds: 2048,
            negatives_per_seed: 5,
            min_negatives: 1000,
            max_negatives: 20_000,
            l2: 1.0,
            restart: 0.15,
            iterations: 30,
            explain_k: 3,
            seed: 42,
        }
    }
}

/// One lookalike request.
#[derive(Debug, Clone, Copy)]
pub struct LookalikeRequest<'a> {
    /// The seed segment.
    pub seeds: Seeds<'a>,
    /// Users that must not be returned (e.g. existing customers). The
    /// classifier also uses those in the index as extra negatives.
    pub exclude: Option<&'a HashSet<u64>>,
    /// Only users passing this filter are candidates.
    pub candidates: Option<Filter<'a>>,
    /// How many users to return.
    pub size: Size,
    /// How to score.
    pub scorer: Scorer,
    /// Attach each returned user's nearest seeds.
    pub explain: bool,
}

impl<'a> LookalikeRequest<'a> {
    /// A request with the default scorer and no exclusions or filter.
    pub fn new(seeds: Seeds<'a>, size: Size) -> Self {
        LookalikeRequest {
            seeds,
            exclude: None,
            candidates: None,
            size,
            scorer: Scorer::default(),
            explain: false,
        }
    }
}

/// A seed that explains an expanded user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedMatch {
    /// The seed's user id ([`Seeds::Users`]) or row number ([`Seeds::Vectors`]).
    pub seed: u64,
    /// Cosine similarity between the seed and the expanded user.
    pub similarity: f32,
}

/// A user of the expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    /// User id.
    pub id: u64,
    /// The scorer's score (higher = more like the seeds; scale depends on the scorer).
    pub score: f64,
    /// 1-based rank.
    pub rank: usize,
    /// Nearest seeds, when the request asked for explanations.
    pub nearest_seeds: Vec<SeedMatch>,
}

/// The answer to a lookalike request.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// The expanded users, best first.
    pub users: Vec<Expanded>,
    /// Seeds that were used.
    pub seeds_used: usize,
    /// Seed ids that are not in the index (skipped).
    pub unknown_seeds: Vec<u64>,
    /// Users that were eligible (live, not seeds, not excluded, passing the filter).
    pub candidates: usize,
}

/// Every candidate's score (the full ranking before truncation).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Candidate user ids.
    pub ids: Vec<u64>,
    /// Their scores, aligned with `ids`.
    pub scores: Vec<f64>,
    /// Seeds that were used.
    pub seeds_used: usize,
    /// Seed ids that are not in the index.
    pub unknown_seeds: Vec<u64>,
}

impl Scores {
    /// Positions into `ids`, best first (score descending, then id ascending):
    /// the total order every expansion is cut from.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            cmp_desc(self.scores[a], self.ids[a], self.scores[b], self.ids[b])
        });
        order
    }

    /// The best `n` positions, in order (partial sort: cheaper than [`order`](Self::order)).
    pub fn top(&self, n: usize) -> Vec<usize> {
        let n = n.min(self.ids.len());
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        let cmp = |&a: &usize, &b: &usize| {
            cmp_desc(self.scores[a], self.ids[a], self.scores[b], self.ids[b])
        };
        if n > 0 && n < order.len() {
            order.select_nth_unstable_by(n - 1, cmp);
            order.truncate(n);
        }
        order.sort_unstable_by(cmp);
        order
    }
}

fn cmp_desc(sa: f64, ia: u64, sb: f64, ib: u64) -> std::cmp::Ordering {
    sb.total_cmp(&sa).then(ia.cmp(&ib))
}

/// Resolved seeds: their unit vectors (row-major) and, for index users, ids.
pub(crate) struct SeedSet {
    pub vectors: Vec<f32>,
    /// Index users among the seeds (empty for vector seeds).
    pub users: Vec<u64>,
    /// Label of each seed row in explanations.
    pub labels: Vec<u64>,
    pub unknown: Vec<u64>,
}

impl SeedSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

fn resolve_seeds(
    pop: &Population<'_>,
    seeds: &Seeds<'_>,
    config: &LookalikeConfig,
) -> Result<SeedSet> {
    let dim = pop.dim();
    let set = match *seeds {
        Seeds::Users(ids) => {
            let mut seen = HashSet::with_capacity(ids.len());
            let mut set = SeedSet {
                vectors: Vec::new(),
                users: Vec::new(),
                labels: Vec::new(),
                unknown: Vec::new(),
            };
            for &id in ids {
                if !seen.insert(id) {
                    continue;
                }
                match pop.slot_of(id) {
                    Some(slot) => {
                        set.vectors.extend_from_slice(pop.vector(slot));
                        set.users.push(id);
                        set.labels.push(id);
                    }
                    None => set.unknown.push(id),
                }
            }
            set
        }
        Seeds::Vectors(rows) => {
            if rows.len() % dim != 0 {
                return Err(Error::ShapeMismatch {
                    input: "seed vectors".into(),
                    expected: format!("[seeds, {dim}]"),
                    got: format!("{} values", rows.len()),
                });
            }
            let mut vectors = Vec::with_capacity(rows.len());
            for (i, r) in rows.chunks(dim).enumerate() {
                vectors.extend(normalized(&format!("seed vector {i}"), r, dim)?);
            }
            let n = rows.len() / dim;
            SeedSet {
                vectors,
                users: Vec::new(),
                labels: (0..n as u64).collect(),
                unknown: Vec::new(),
            }
        }
    };
    if set.len() < config.min_seeds.max(1) {
        return Err(Error::TooFewSeeds {
            usable: set.len(),
            minimum: config.min_seeds.max(1),
            unknown: set.unknown.len(),
        });
    }
    Ok(set)
}

/// Scores every candidate for a request (everything [`expand`] does before
/// cutting the ranking); the evaluation uses it to rank the whole population.
pub fn score_candidates(
    index: &UserIndex,
    graph: Option<&KnnGraph>,
    request: &LookalikeRequest<'_>,
    config: &LookalikeConfig,
) -> Result<Scores> {
    index.with_population(|pop| score_in(pop, graph, request, config).map(|(scores, _)| scores))
}

/// The candidates of a request: live users that are not seeds, not excluded,
/// and pass the filter, in slot order.
fn candidates_in(
    pop: &Population<'_>,
    seed_users: &[u64],
    request: &LookalikeRequest<'_>,
) -> Vec<usize> {
    let seed_set: HashSet<u64> = seed_users.iter().copied().collect();
    pop.live_slots()
        .filter(|&s| {
            let id = pop.id(s);
            !seed_set.contains(&id)
                && request.exclude.is_none_or(|e| !e.contains(&id))
                && request.candidates.is_none_or(|f| f.keeps(id))
        })
        .collect()
}

/// Scores every candidate on one consistent view of the population, and
/// returns the resolved seeds too (explanations reuse them).
fn score_in(
    pop: &Population<'_>,
    graph: Option<&KnnGraph>,
    request: &LookalikeRequest<'_>,
    config: &LookalikeConfig,
) -> Result<(Scores, SeedSet)> {
    config.validate()?;
    if request.scorer == Scorer::Diffusion && graph.is_none() {
        return Err(Error::invalid(
            "scorer",
            "diffusion needs a kNN graph (KnnGraph::build)",
        ));
    }
    let mut seeds = resolve_seeds(pop, &request.seeds, config)?;
    let candidates = candidates_in(pop, &seeds.users, request);
    if candidates.is_empty() {
        return Err(Error::EmptyPopulation);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let scores = scorers::score(pop, graph, &seeds, &candidates, request, config, &mut rng)?;
    let scores = Scores {
        ids: candidates.iter().map(|&s| pop.id(s)).collect(),
        scores,
        seeds_used: seeds.len(),
        unknown_seeds: std::mem::take(&mut seeds.unknown),
    };
    Ok((scores, seeds))
}

/// Ids of the candidates a request would score, in the order of
/// [`Scores::ids`] (the evaluation's baselines rank these without scoring).
pub(crate) fn candidate_ids(
    index: &UserIndex,
    request: &LookalikeRequest<'_>,
    seed_users: &[u64],
) -> Vec<u64> {
    index.with_population(|pop| {
        candidates_in(pop, seed_users, request)
            .into_iter()
            .map(|s| pop.id(s))
            .collect()
    })
}

/// Expands a seed segment: the top of the candidates' ranking, sized as asked.
pub fn expand(
    index: &UserIndex,
    graph: Option<&KnnGraph>,
    request: &LookalikeRequest<'_>,
    config: &LookalikeConfig,
) -> Result<Expansion> {
    let n = match request.size {
        Size::Count(0) => return Err(Error::invalid("size", "ask for at least 1 user")),
        Size::Count(n) => n,
        Size::Fraction(f) if f > 0.0 && f <= 1.0 => (f * index.len() as f64).ceil() as usize,
        Size::Fraction(f) => {
            return Err(Error::invalid(
                "size",
                format!("fraction {f} is not in (0, 1]"),
            ))
        }
        Size::Level(l) => (l.fraction() * index.len() as f64).ceil() as usize,
    };
    index.with_population(|pop| {
        let (scores, seeds) = score_in(pop, graph, request, config)?;
        let top = scores.top(n);
        let mut users: Vec<Expanded> = top
            .iter()
            .enumerate()
            .map(|(r, &i)| Expanded {
                id: scores.ids[i],
                score: scores.scores[i],
                rank: r + 1,
                nearest_seeds: Vec::new(),
            })
            .collect();
        if request.explain && !users.is_empty() {
            explain(pop, &mut users, &seeds, config)?;
        }
        Ok(Expansion {
            users,
            seeds_used: scores.seeds_used,
            unknown_seeds: scores.unknown_seeds,
            candidates: scores.ids.len(),
        })
    })
}

/// Attaches each user's nearest seeds (exact, over every seed).
fn explain(
    pop: &Population<'_>,
    users: &mut [Expanded],
    set: &SeedSet,
    config: &LookalikeConfig,
) -> Result<()> {
    let dim = pop.dim();
    let mut queries = Vec::with_capacity(users.len() * dim);
    for u in users.iter() {
        let slot = pop.slot_of(u.id).ok_or(Error::UnknownUser(u.id))?;
        queries.extend_from_slice(pop.vector(slot));
    }
    let near = exact_top_k(&set.vectors, dim, &queries, config.explain_k.max(1));
    for (u, list) in users.iter_mut().zip(near) {
        u.nearest_seeds = list
            .into_iter()
            .map(|(row, sim)| SeedMatch {
                seed: set.labels[row],
                similarity: sim,
            })
            .collect();
    }
    Ok(())
}
