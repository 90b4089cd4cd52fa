//! A slate simulator with known ground truth built from real ratings (the
//! Deezer carousel set-up): users grouped in segments arrive in rounds, each
//! gets a slate from a policy, clicks follow a position-based or cascade model
//! over true click probabilities, and regret is measured against the best
//! slate for that user.
//!
//! **Ground truth** ([`GroundTruth::from_ratings`]): the `items` most-rated
//! items; a user "likes" an item they rated ≥ 4; a rank-`rank` truncated SVD
//! of the users × items like matrix smooths it into scores `r̂` (users who
//! rated few items get their taste's neighbours' likes); the true click
//! probability is `0.01 + 0.5 · clamp(r̂, 0, 1)`. It is fixed per user and
//! item, so users inside a segment differ: segments help, individuals matter.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{BanditConfig, ClickModel, Feedback, Hierarchy, Policy, Request, SlateBandit};
use crate::data::UserHistory;
use crate::error::{Error, Result};

/// True click probabilities of users for items.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// User ids (rows).
    pub users: Vec<u64>,
    /// Item ids (columns): the candidates of every slate.
    pub items: Vec<u64>,
    /// `users × items` click probabilities, row-major.
    pub attractiveness: Vec<f32>,
}

impl GroundTruth {
    /// Fits the ground truth on rating histories (weights = ratings); see the
    /// module docs. Deterministic.
    pub fn from_ratings(histories: &[UserHistory], items: usize, rank: usize) -> Result<Self> {
        if histories.is_empty() || items == 0 || rank == 0 {
            return Err(Error::invalid(
                "ground truth",
                "needs histories, items >= 1 and rank >= 1",
            ));
        }
        let mut count: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for h in histories {
            for &i in &h.items {
                *count.entry(i).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<(u64, usize)> = count.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let chosen: Vec<u64> = ranked.iter().take(items).map(|x| x.0).collect();
        let col: std::collections::HashMap<u64, usize> =
            chosen.iter().enumerate().map(|(j, &i)| (i, j)).collect();
        let (n, m) = (histories.len(), chosen.len());
        let mut liked = vec![0.0f64; n * m];
        for (u, h) in histories.iter().enumerate() {
            for (k, &i) in h.items.iter().enumerate() {
                let rating = h.weights.get(k).copied().unwrap_or(0.0);
                if let Some(&j) = col.get(&i) {
                    if rating >= 4.0 {
                        liked[u * m + j] = 1.0;
                    }
                }
            }
        }
        let basis = top_right_singular_vectors(&liked, n, m, rank.min(m));
        let mut attractiveness = Vec::with_capacity(n * m);
        for u in 0..n {
            let row = &liked[u * m..(u + 1) * m];
            // Projection of the row on the top item subspace.
            let coef: Vec<f64> = basis
                .iter()
                .map(|v| row.iter().zip(v).map(|(a, b)| a * b).sum())
                .collect();
            for j in 0..m {
                let r: f64 = basis.iter().zip(&coef).map(|(v, c)| v[j] * c).sum();
                attractiveness.push((0.01 + 0.5 * r.clamp(0.0, 1.0)) as f32);
            }
        }
        Ok(GroundTruth {
            users: histories.iter().map(|h| h.user).collect(),
            items: chosen,
            attractiveness,
        })
    }

    /// Click probability of user row `u` for item column `j`.
    pub fn p(&self, u: usize, j: usize) -> f64 {
        f64::from(self.attractiveness[u * self.items.len() + j])
    }
}

/// The `k` leading right singular vectors of the `n × m` matrix `x`, by
/// subspace iteration on `xᵀx` (deterministic start, Gram–Schmidt).
fn top_right_singular_vectors(x: &[f64], n: usize, m: usize, k: usize) -> Vec<Vec<f64>> {
    let mut gram = vec![0.0f64; m * m];
    for u in 0..n {
        let row = &x[u * m..(u + 1) * m];
        for (a, &ra) in row.iter().enumerate() {
            if ra != 0.0 {
                for (b, &rb) in row.iter().enumerate() {
                    gram[a * m + b] += ra * rb;
                }
            }
        }
    }
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            (0..m)
                .map(|j| ((j * 7 + c * 13) % 17) as f64 / 17.0 - 0.45)
                .collect()
        })
        .collect();
    for _ in 0..60 {
        let mut z: Vec<Vec<f64>> = q
            .iter()
            .map(|v| {
                (0..m)
                    .map(|a| (0..m).map(|b| gram[a * m + b] * v[b]).sum())
                    .collect()
            })
            .collect();
        for c in 0..z.len() {
            for p in 0..c {
                let d: f64 = z[c].iter().zip(&z[p]).map(|(a, b)| a * b).sum();
                let (head, tail) = z.split_at_mut(c);
                for (t, h) in tail[0].iter_mut().zip(&head[p]) {
                    *t -= d * h;
                }
            }
            let norm = z[c].iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-300);
            z[c].iter_mut().for_each(|a| *a /= norm);
        }
        q = z;
    }
    q
}

/// How simulated users click.
#[derive(Debug, Clone, PartialEq)]
pub enum SimClicks {
    /// Slot `p` is examined with probability `examination[p]` (0 past the end).
    Pbm {
        /// θ per slot.
        examination: Vec<f64>,
    },
    /// Users scan the first `visible` slots top-down and stop at a click.
    Cascade {
        /// Slots on screen.
        visible: usize,
    },
}

/// The host's own per-user scores passed with every request (fixed per user
/// and item for a run, drawn from the run's seed).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum HostScores {
    /// No host scores (default).
    #[default]
    None,
    /// The true click probabilities.
    Exact,
    /// The true click probabilities plus Gaussian noise of this standard
    /// deviation, clamped to [0, 1].
    Noisy(f64),
    /// Each user's true probabilities, permuted across the items: the right
    /// distribution, no information.
    Shuffled,
    /// Uniform in [0, 1]: no information, the wrong scale.
    Uniform,
}

impl HostScores {
    /// Short name (`none`, `exact`, `noisy 0.1`, `shuffled`, `uniform`).
    pub fn name(&self) -> String {
        match self {
            HostScores::None => "none".into(),
            HostScores::Exact => "exact".into(),
            HostScores::Noisy(sd) => format!("noisy {sd}"),
            HostScores::Shuffled => "shuffled".into(),
            HostScores::Uniform => "uniform".into(),
        }
    }

    /// `users × items` scores (row-major) for `truth`, or `None`.
    fn draw(&self, truth: &GroundTruth, seed: u64) -> Option<Vec<f32>> {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x0005_C0DE_5C0E_5EED);
        let m = truth.items.len();
        match *self {
            HostScores::None => None,
            HostScores::Exact => Some(truth.attractiveness.clone()),
            HostScores::Noisy(sd) => Some(
                truth
                    .attractiveness
                    .iter()
                    .map(|&p| {
                        let e: f64 = rng.sample(rand_distr::StandardNormal);
                        (f64::from(p) + sd * e).clamp(0.0, 1.0) as f32
                    })
                    .collect(),
            ),
            HostScores::Shuffled => {
                let mut all = truth.attractiveness.clone();
                for row in all.chunks_mut(m.max(1)) {
                    row.shuffle(&mut rng);
                }
                Some(all)
            }
            HostScores::Uniform => Some(
                (0..truth.attractiveness.len())
                    .map(|_| rng.random::<f32>())
                    .collect(),
            ),
        }
    }
}

/// Parameters of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Slots per slate (default 12).
    pub slots: usize,
    /// Rounds (default 100).
    pub rounds: usize,
    /// Chance that a user arrives in a round (default 0.2).
    pub arrival: f64,
    /// Click behaviour (default: cascade over 3 visible slots, Deezer's set-up).
    pub clicks: SimClicks,
    /// Seed of arrivals, clicks and the bandit.
    pub seed: u64,
    /// Feedback of a round arrives after all its decisions (as with a host
    /// that batches its logs), instead of after each slate (default false).
    pub batched: bool,
    /// The host scores sent with each request (default none).
    pub host: HostScores,
    /// The click model the bandit is configured with (default `None`: the
    /// true one; `Some` measures the cost of a wrong one).
    pub assumed_clicks: Option<ClickModel>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            slots: 12,
            rounds: 100,
            arrival: 0.2,
            clicks: SimClicks::Cascade { visible: 3 },
            seed: 1,
            batched: false,
            host: HostScores::None,
            assumed_clicks: None,
        }
    }
}

impl SimConfig {
    /// The click model the bandit should assume (the true one).
    pub fn click_model(&self) -> ClickModel {
        match &self.clicks {
            SimClicks::Pbm { examination } => ClickModel::Pbm {
                examination: examination.clone(),
            },
            SimClicks::Cascade { .. } => ClickModel::Cascade,
        }
    }

    fn visible(&self) -> usize {
        match &self.clicks {
            SimClicks::Pbm { examination } => examination.len().min(self.slots),
            SimClicks::Cascade { visible } => (*visible).min(self.slots),
        }
    }

    /// Expected clicks of a slate (columns of `truth`) for user row `u`.
    fn expected_clicks(&self, truth: &GroundTruth, u: usize, slate: &[usize]) -> f64 {
        match &self.clicks {
            SimClicks::Pbm { examination } => slate
                .iter()
                .zip(examination)
                .map(|(&j, t)| t * truth.p(u, j))
                .sum(),
            SimClicks::Cascade { visible } => {
                1.0 - slate
                    .iter()
                    .take(*visible)
                    .map(|&j| 1.0 - truth.p(u, j))
                    .product::<f64>()
            }
        }
    }

    /// The best slate's expected clicks: the most attractive items, in order.
    fn best_clicks(&self, truth: &GroundTruth, u: usize) -> f64 {
        let mut cols: Vec<usize> = (0..truth.items.len()).collect();
        cols.sort_by(|&a, &b| truth.p(u, b).total_cmp(&truth.p(u, a)));
        cols.truncate(self.visible());
        self.expected_clicks(truth, u, &cols)
    }
}

/// A policy under test: how it chooses and which posteriors it keeps.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Display name.
    pub name: String,
    /// Slate policy.
    pub policy: Policy,
    /// Bandit configuration (its click model is replaced by the true one).
    pub config: BanditConfig,
}

impl Variant {
    fn new(name: &str, policy: Policy, config: BanditConfig) -> Self {
        Variant {
            name: name.into(),
            policy,
            config,
        }
    }

    /// The policies compared by `groupwise eval slates`: random, greedy,
    /// standard and in-slate TS on segment posteriors (pooled, flat prior),
    /// segment-only TS with flat and pessimistic priors and no pooling,
    /// per-user-only TS, the hierarchical group → user blend (flat and
    /// pessimistic base prior), and the defaults.
    pub fn standard() -> Vec<Variant> {
        let flat = BanditConfig {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            ..Default::default()
        };
        let segment = BanditConfig {
            hierarchy: Hierarchy::SegmentOnly,
            ..flat.clone()
        };
        let unpooled = |alpha: f64, beta: f64| BanditConfig {
            prior_alpha: alpha,
            prior_beta: beta,
            pooling_strength: 0.0,
            ..segment.clone()
        };
        vec![
            Variant::new("random", Policy::Random, segment.clone()),
            Variant::new("greedy (segment, pooled)", Policy::Greedy, segment.clone()),
            Variant::new(
                "standard TS (segment, pooled)",
                Policy::Thompson,
                segment.clone(),
            ),
            Variant::new(
                "in-slate TS (segment, pooled)",
                Policy::InSlateThompson,
                segment.clone(),
            ),
            Variant::new(
                "segment TS, flat Beta(1,1)",
                Policy::InSlateThompson,
                unpooled(1.0, 1.0),
            ),
            Variant::new(
                "segment TS, pessimistic Beta(1,99)",
                Policy::InSlateThompson,
                unpooled(1.0, 99.0),
            ),
            Variant::new(
                "per-user TS only",
                Policy::InSlateThompson,
                BanditConfig {
                    hierarchy: Hierarchy::UserOnly,
                    ..flat.clone()
                },
            ),
            Variant::new("hierarchical group → user", Policy::InSlateThompson, flat),
            Variant::new(
                "hierarchical, pessimistic Beta(1,99)",
                Policy::InSlateThompson,
                BanditConfig {
                    prior_alpha: 1.0,
                    prior_beta: 99.0,
                    ..Default::default()
                },
            ),
            Variant::new(
                "defaults (in-slate TS, hierarchical, Beta(1,49))",
                Policy::InSlateThompson,
                BanditConfig::default(),
            ),
        ]
    }
}

/// What one simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The variant.
    pub name: String,
    /// Cumulative expected regret after each round (sum over slates).
    pub regret: Vec<f64>,
    /// Click-through rate (clicks per slate) in each round.
    pub ctr: Vec<f64>,
}

/// Runs one variant through the simulation. `segment_of[u]` is the segment of
/// user row `u` of `truth`.
pub fn simulate(
    truth: &GroundTruth,
    segment_of: &[u32],
    variant: &Variant,
    sim: &SimConfig,
) -> Result<Curve> {
    if segment_of.len() != truth.users.len() {
        return Err(Error::invalid(
            "segment_of",
            "one segment per user of the ground truth",
        ));
    }
    let bandit = SlateBandit::new(BanditConfig {
        click_model: sim
            .assumed_clicks
            .clone()
            .unwrap_or_else(|| sim.click_model()),
        seed: sim.seed,
        max_users: truth.users.len().max(1) * 2,
        ..variant.config.clone()
    })?;
    let mut rng = SmallRng::seed_from_u64(sim.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
    let col_of: std::collections::HashMap<u64, usize> = truth
        .items
        .iter()
        .enumerate()
        .map(|(j, &i)| (i, j))
        .collect();
    let best: Vec<f64> = (0..truth.users.len())
        .map(|u| sim.best_clicks(truth, u))
        .collect();
    let visible = sim.visible();
    let mut curve = Curve {
        name: variant.name.clone(),
        regret: Vec::with_capacity(sim.rounds),
        ctr: Vec::with_capacity(sim.rounds),
    };
    let mut total = 0.0;
    let mut order: Vec<usize> = (0..truth.users.len()).collect();
    let host = sim.host.draw(truth, sim.seed);
    let m = truth.items.len();
    let mut batch: Vec<(u64, Vec<usize>)> = Vec::new();
    let send = |decision: u64, clicked: &[usize]| {
        bandit.feedback(&Feedback {
            decision,
            clicks: clicked,
            visible: Some(visible),
            now: None,
        })
    };
    for _ in 0..sim.rounds {
        order.shuffle(&mut rng);
        let (mut slates, mut clicks) = (0usize, 0usize);
        for &u in &order {
            if rng.random::<f64>() >= sim.arrival {
                continue;
            }
            let mut request = Request::new(
                Some(truth.users[u]),
                Some(segment_of[u]),
                &truth.items,
                sim.slots,
            );
            request.policy = variant.policy;
            request.host_scores = host.as_deref().map(|h| &h[u * m..(u + 1) * m]);
            let decision = bandit.decide(&request)?;
            let cols: Vec<usize> = decision.items.iter().map(|i| col_of[i]).collect();
            total += best[u] - sim.expected_clicks(truth, u, &cols);
            let clicked = simulate_clicks(sim, truth, u, &cols, &mut rng);
            clicks += clicked.len();
            slates += 1;
            if sim.batched {
                batch.push((decision.id, clicked));
            } else {
                send(decision.id, &clicked)?;
            }
        }
        for (decision, clicked) in batch.drain(..) {
            send(decision, &clicked)?;
        }
        curve.regret.push(total);
        curve.ctr.push(if slates == 0 {
            0.0
        } else {
            clicks as f64 / slates as f64
        });
    }
    Ok(curve)
}

fn simulate_clicks(
    sim: &SimConfig,
    truth: &GroundTruth,
    u: usize,
    cols: &[usize],
    rng: &mut SmallRng,
) -> Vec<usize> {
    match &sim.clicks {
        SimClicks::Pbm { examination } => cols
            .iter()
            .enumerate()
            .filter(|&(p, &j)| {
                let theta = examination.get(p).copied().unwrap_or(0.0);
                rng.random::<f64>() < theta * truth.p(u, j)
            })
            .map(|(p, _)| p)
            .collect(),
        SimClicks::Cascade { visible } => cols
            .iter()
            .take(*visible)
            .position(|&j| rng.random::<f64>() < truth.p(u, j))
            .into_iter()
            .collect(),
    }
}
