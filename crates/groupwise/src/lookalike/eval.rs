//! Seed-held-out evaluation of lookalike scorers, the protocol of the
//! lookalike literature: for a known segment, hide a share of its members,
//! seed with the rest, rank every non-seed user, and measure how high the
//! hidden members land.
//!
//! Reported per method (each scorer, and two baselines: seeded random scores,
//! and user activity — "just target the most active users"):
//! AUC (probability that a hidden member outranks a non-member; ties count
//! half), and precision, recall and lift at K for K = 1x, 2x, 5x the number
//! of hidden members. Lift@K = precision@K / base rate. Means over several
//! random splits, with the spread of AUC.
//!
//! With activity counts, each method also gets its AUC *within activity
//! quartiles* ([`ActivityBins`]): users are split into four bins by
//! activity, the AUC is computed inside each bin, and the bins are averaged
//! weighted by their hidden members. A scorer that only learned
//! "active users are members" scores high raw AUC and about 0.5 here; what
//! is left is what it found beyond activity.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{score_candidates, LookalikeConfig, LookalikeRequest, Scorer, Scores, Seeds, Size};
use crate::error::{Error, Result};
use crate::graph::KnnGraph;
use crate::index::UserIndex;

/// Something that ranks candidates: a scorer or a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A lookalike scorer.
    Scorer(Scorer),
    /// Seeded uniform random scores (expected AUC 0.5, lift 1).
    Random,
    /// The user's activity (number of interactions): a popularity baseline.
    Activity,
}

impl Method {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Scorer(s) => s.name(),
            Method::Random => "random",
            Method::Activity => "activity",
        }
    }
}

/// Parameters of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Share of each segment hidden from the seeds (default 0.5).
    pub hide_fraction: f64,
    /// Random splits per segment (default 3).
    pub splits: usize,
    /// K as multiples of the hidden count (default 1, 2, 5).
    pub multiples: Vec<f64>,
    /// Seed of the splits and of the random baseline.
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            hide_fraction: 0.5,
            splits: 3,
            multiples: vec![1.0, 2.0, 5.0],
            seed: 7,
        }
    }
}

/// Results of one method on one segment (means over splits).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentResult {
    /// Segment name.
    pub segment: String,
    /// Members found in the index.
    pub members: usize,
    /// Members hidden per split.
    pub hidden: usize,
    /// Method name.
    pub method: &'static str,
    /// Mean AUC.
    pub auc: f64,
    /// Standard deviation of AUC across splits.
    pub auc_sd: f64,
    /// Mean AUC within activity quartiles ([`ActivityBins::auc`] with
    /// [`ACTIVITY_BINS`] bins), over the splits where it is defined; `None`
    /// without activity counts.
    pub quartile_auc: Option<f64>,
    /// Precision at each K multiple.
    pub precision: Vec<f64>,
    /// Recall at each K multiple.
    pub recall: Vec<f64>,
    /// Lift at each K multiple.
    pub lift: Vec<f64>,
}

/// Metrics of one ranking against a set of positives.
#[derive(Debug, Clone, PartialEq)]
pub struct RankMetrics {
    /// AUC.
    pub auc: f64,
    /// Precision at each K.
    pub precision: Vec<f64>,
    /// Recall at each K.
    pub recall: Vec<f64>,
    /// Lift at each K.
    pub lift: Vec<f64>,
}

/// AUC of `scores` against the flags `positive` (same length): the
/// probability that a positive outranks a negative, ties counting half, by
/// the rank sum (Mann-Whitney U) with average ranks for ties. `None` without
/// a positive or without a negative.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n = scores.len().min(positive.len());
    let pos_total = positive[..n].iter().filter(|&&p| p).count();
    let neg_total = n - pos_total;
    if pos_total == 0 || neg_total == 0 {
        return None;
    }
    let mut by_score: Vec<usize> = (0..n).collect();
    by_score.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[by_score[j + 1]] == scores[by_score[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &r in &by_score[i..=j] {
            if positive[r] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    let p = pos_total as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg_total as f64))
}

/// Number of activity bins of [`SegmentResult::quartile_auc`]: quartiles.
pub const ACTIVITY_BINS: usize = 4;

/// Users split into bins by activity, for AUC within bins
/// ([`ActivityBins::auc`]).
///
/// The bins are cut at the activity quantiles of the whole population (every
/// user in the activity map), so they are the same for every split and every
/// method: bin `b` starts at the activity found at rank `b·n/bins` of the
/// sorted activities. Users with equal activity always share a bin, so ties
/// can make bins unequal, or fewer.
#[derive(Debug, Clone)]
pub struct ActivityBins<'a> {
    activity: &'a HashMap<u64, f64>,
    starts: Vec<f64>,
}

impl<'a> ActivityBins<'a> {
    /// `bins` bins (at least 1) over the users of `activity` (user → number
    /// of interactions).
    pub fn new(activity: &'a HashMap<u64, f64>, bins: usize) -> Self {
        let mut sorted: Vec<f64> = activity.values().copied().collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let n = sorted.len();
        let starts = if n == 0 {
            Vec::new()
        } else {
            (1..bins.max(1)).map(|b| sorted[b * n / bins]).collect()
        };
        ActivityBins { activity, starts }
    }

    /// The bin of a user (users missing from the activity map count 0).
    pub fn bin(&self, user: u64) -> usize {
        let a = self.activity.get(&user).copied().unwrap_or(0.0);
        self.starts.iter().filter(|&&t| t <= a).count()
    }

    /// AUC within bins: the candidates of `scores` are grouped by bin, the
    /// AUC ([`auc`]) is computed inside each bin, and the bins' AUCs are
    /// averaged **weighted by their positives**. That is the probability that
    /// a positive outranks a negative *of its own bin*, ties counting half:
    /// every positive weighs the same, and a scorer that ranks by activity
    /// alone gets about 0.5 (exactly, when activity is constant within bins).
    /// Bins without a positive or without a negative are left out; `None`
    /// when no bin has both.
    pub fn auc(&self, scores: &Scores, positive: &dyn Fn(u64) -> bool) -> Option<f64> {
        let mut members: Vec<(Vec<f64>, Vec<bool>)> =
            vec![(Vec::new(), Vec::new()); self.starts.len() + 1];
        for (&id, &score) in scores.ids.iter().zip(&scores.scores) {
            let (s, p) = &mut members[self.bin(id)];
            s.push(score);
            p.push(positive(id));
        }
        let (mut sum, mut weight) = (0.0f64, 0.0f64);
        for (s, p) in &members {
            if let Some(a) = auc(s, p) {
                let w = p.iter().filter(|&&x| x).count() as f64;
                sum += w * a;
                weight += w;
            }
        }
        (weight > 0.0).then(|| sum / weight)
    }
}

/// AUC and precision/recall/lift at each `k` of a scored candidate list.
pub fn rank_metrics(scores: &Scores, positive: &dyn Fn(u64) -> bool, ks: &[usize]) -> RankMetrics {
    let n = scores.ids.len();
    let flags: Vec<bool> = scores.ids.iter().map(|&id| positive(id)).collect();
    let pos_total = flags.iter().filter(|&&p| p).count();
    let auc = auc(&scores.scores, &flags).unwrap_or(0.5);
    let order = scores.order();
    let base = pos_total as f64 / n.max(1) as f64;
    let mut precision = Vec::with_capacity(ks.len());
    let mut recall = Vec::with_capacity(ks.len());
    let mut lift = Vec::with_capacity(ks.len());
    for &k in ks {
        let k = k.clamp(1, n.max(1));
        let hits = order
            .iter()
            .take(k)
            .filter(|&&i| positive(scores.ids[i]))
            .count() as f64;
        let p = hits / k as f64;
        precision.push(p);
        recall.push(if pos_total == 0 {
            0.0
        } else {
            hits / pos_total as f64
        });
        lift.push(if base > 0.0 { p / base } else { 0.0 });
    }
    RankMetrics {
        auc,
        precision,
        recall,
        lift,
    }
}

/// Evaluates `methods` on one segment. `activity` (user → number of
/// interactions) is needed for [`Method::Activity`]; with it, every method
/// also gets its AUC within activity quartiles
/// ([`SegmentResult::quartile_auc`]). The lookalike config's `min_seeds`
/// applies to the seed half of each split.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_segment(
    index: &UserIndex,
    graph: Option<&KnnGraph>,
    segment: &str,
    members: &[u64],
    methods: &[Method],
    activity: Option<&HashMap<u64, f64>>,
    lookalike: &LookalikeConfig,
    config: &EvalConfig,
) -> Result<Vec<SegmentResult>> {
    if !(config.hide_fraction > 0.0 && config.hide_fraction < 1.0) || config.splits == 0 {
        return Err(Error::invalid(
            "eval",
            "hide_fraction must be in (0, 1) and splits >= 1",
        ));
    }
    let mut present: Vec<u64> = members
        .iter()
        .copied()
        .filter(|&u| index.contains(u))
        .collect();
    present.sort_unstable();
    present.dedup();
    let hidden_n = ((present.len() as f64) * config.hide_fraction).round() as usize;
    if hidden_n == 0 || hidden_n >= present.len() {
        return Err(Error::TooFewSeeds {
            usable: present.len(),
            minimum: 2,
            unknown: members.len() - present.len(),
        });
    }
    let ks: Vec<usize> = config
        .multiples
        .iter()
        .map(|m| ((m * hidden_n as f64).round() as usize).max(1))
        .collect();
    let mut acc: Vec<Vec<RankMetrics>> = vec![Vec::new(); methods.len()];
    let mut binned: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    let bins = activity.map(|a| ActivityBins::new(a, ACTIVITY_BINS));
    for split in 0..config.splits {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_add(split as u64 * 0x9e37_79b9));
        let mut shuffled = present.clone();
        shuffled.shuffle(&mut rng);
        let (hidden, seeds) = shuffled.split_at(hidden_n);
        let hidden: std::collections::HashSet<u64> = hidden.iter().copied().collect();
        for (m, method) in methods.iter().enumerate() {
            let scores = match method {
                Method::Scorer(scorer) => {
                    let mut req = LookalikeRequest::new(Seeds::Users(seeds), Size::Count(0));
                    req.scorer = *scorer;
                    score_candidates(index, graph, &req, lookalike)?
                }
                Method::Random | Method::Activity => {
                    // Baselines rank the same candidates without scoring them.
                    let req = LookalikeRequest::new(Seeds::Users(seeds), Size::Count(0));
                    let ids = super::candidate_ids(index, &req, seeds);
                    let scores = if *method == Method::Random {
                        ids.iter().map(|_| rng.random::<f64>()).collect()
                    } else {
                        let act = activity.ok_or_else(|| {
                            Error::invalid(
                                "activity",
                                "the activity baseline needs activity counts",
                            )
                        })?;
                        ids.iter()
                            .map(|id| act.get(id).copied().unwrap_or(0.0))
                            .collect()
                    };
                    Scores {
                        ids,
                        scores,
                        seeds_used: seeds.len(),
                        unknown_seeds: Vec::new(),
                    }
                }
            };
            let is_hidden = |id: u64| hidden.contains(&id);
            acc[m].push(rank_metrics(&scores, &is_hidden, &ks));
            if let Some(a) = bins.as_ref().and_then(|b| b.auc(&scores, &is_hidden)) {
                binned[m].push(a);
            }
        }
    }
    Ok(methods
        .iter()
        .zip(acc)
        .zip(binned)
        .map(|((method, runs), binned)| {
            let n = runs.len() as f64;
            let mean = |f: &dyn Fn(&RankMetrics) -> f64| runs.iter().map(f).sum::<f64>() / n;
            let auc = mean(&|r| r.auc);
            let auc_sd = (runs.iter().map(|r| (r.auc - auc).powi(2)).sum::<f64>() / n).sqrt();
            let per_k = |f: &dyn Fn(&RankMetrics, usize) -> f64| -> Vec<f64> {
                (0..ks.len())
                    .map(|i| runs.iter().map(|r| f(r, i)).sum::<f64>() / n)
                    .collect()
            };
            SegmentResult {
                segment: segment.to_string(),
                members: present.len(),
                hidden: hidden_n,
                method: method.name(),
                auc,
                auc_sd,
                quartile_auc: (!binned.is_empty())
                    .then(|| binned.iter().sum::<f64>() / binned.len() as f64),
                precision: per_k(&|r, i| r.precision[i]),
                recall: per_k(&|r, i| r.recall[i]),
                lift: per_k(&|r, i| r.lift[i]),
            }
        })
        .collect())
}

/// Behavioural segments defined on *later* behaviour, for evaluations free of
/// leakage: each history is split at `split` (e.g. 2/3) of its length; a user
/// is a fan of a category when, in the later part, that category's share of
/// their items is at least `ratio` times its share over everyone's later
/// parts, and covers at least `min_items` items. Returns, per category with
/// at least `min_members` fans, `(category name, fans)`; embed users from
/// [`earlier_part`] so the seeds' and candidates' embeddings never see the
/// behaviour that defines the segment.
pub fn later_category_fans(
    histories: &[crate::data::UserHistory],
    meta: &crate::data::ItemMetadata,
    split: f64,
    ratio: f64,
    min_items: usize,
    min_members: usize,
) -> Vec<(String, Vec<u64>)> {
    let cats = meta.category_names.len();
    let mut total = vec![0.0f64; cats];
    let mut per_user: Vec<(u64, Vec<f64>, f64)> = Vec::with_capacity(histories.len());
    for h in histories {
        let cut = split_point(h.items.len(), split);
        let mut counts = vec![0.0f64; cats];
        let mut n = 0.0;
        for &item in &h.items[cut..] {
            n += 1.0;
            for &c in meta.categories(item) {
                counts[c as usize] += 1.0;
                total[c as usize] += 1.0;
            }
        }
        per_user.push((h.user, counts, n));
    }
    let all_items: f64 = per_user.iter().map(|(_, _, n)| n).sum();
    let mut out = Vec::new();
    for c in 0..cats {
        let base = total[c] / all_items.max(1.0);
        let fans: Vec<u64> = per_user
            .iter()
            .filter(|(_, counts, n)| {
                *n > 0.0 && counts[c] >= min_items as f64 && counts[c] / n >= ratio * base
            })
            .map(|(u, ..)| *u)
            .collect();
        if fans.len() >= min_members {
            out.push((meta.category_names[c].clone(), fans));
        }
    }
    out
}

/// The first `split` share of each history (at least one item), the part the
/// embeddings of a later-behaviour evaluation are computed from.
pub fn earlier_part(
    histories: &[crate::data::UserHistory],
    split: f64,
) -> Vec<crate::data::UserHistory> {
    histories
        .iter()
        .map(|h| {
            let cut = split_point(h.items.len(), split).max(1).min(h.items.len());
            crate::data::UserHistory {
                user: h.user,
                items: h.items[..cut].to_vec(),
                weights: h.weights[..cut].to_vec(),
                times: h.times[..cut].to_vec(),
            }
        })
        .collect()
}

fn split_point(len: usize, split: f64) -> usize {
    ((len as f64) * split.clamp(0.0, 1.0)).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_known_rankings() {
        let scores = Scores {
            ids: vec![1, 2, 3, 4, 5, 6],
            scores: vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            seeds_used: 0,
            unknown_seeds: vec![],
        };
        // Positives ranked 1st and 3rd of 6: AUC = (4 + 3) / (2 * 4) = 0.875.
        let m = rank_metrics(&scores, &|id| id == 1 || id == 3, &[2, 6]);
        assert!((m.auc - 0.875).abs() < 1e-12);
        assert_eq!(m.precision, vec![0.5, 2.0 / 6.0]);
        assert_eq!(m.recall, vec![0.5, 1.0]);
        assert!((m.lift[0] - 1.5).abs() < 1e-12 && (m.lift[1] - 1.0).abs() < 1e-12);
        // All tied: AUC 0.5 exactly.
        let flat = Scores {
            scores: vec![1.0; 6],
            ..scores
        };
        assert!((rank_metrics(&flat, &|id| id < 3, &[1]).auc - 0.5).abs() < 1e-12);
    }

    /// 400 candidates in four activity levels (1, 2, 3, 4; 100 users each,
    /// ids `100 (level - 1) + i`); in level L the first 10 L users are
    /// positives, so activity predicts membership (100 positives, 300
    /// negatives) but says nothing inside a level.
    fn levels() -> (Vec<u64>, HashMap<u64, f64>, impl Fn(u64) -> bool) {
        let ids: Vec<u64> = (0..400).collect();
        let activity = ids.iter().map(|&id| (id, (id / 100 + 1) as f64)).collect();
        let positive = |id: u64| id % 100 < 10 * (id / 100 + 1);
        (ids, activity, positive)
    }

    #[test]
    fn a_scorer_equal_to_activity_scores_one_half_within_activity_quartiles() {
        let (ids, activity, positive) = levels();
        let scores = Scores {
            scores: ids.iter().map(|id| activity[id]).collect(),
            ids,
            seeds_used: 0,
            unknown_seeds: vec![],
        };
        // Raw AUC by hand: a positive at level L beats the negatives of the
        // levels below (0, 90, 170, 240) and ties the 100 - 10 L of its own:
        // (10·45 + 20·(90 + 40) + 30·(170 + 35) + 40·(240 + 30)) / (100·300) = 2/3.
        let raw = rank_metrics(&scores, &positive, &[1]).auc;
        assert!((raw - 2.0 / 3.0).abs() < 1e-12, "{raw}");
        // Inside each quartile every score is tied: exactly 0.5.
        let bins = ActivityBins::new(&activity, ACTIVITY_BINS);
        assert_eq!((bins.bin(0), bins.bin(150), bins.bin(399)), (0, 1, 3));
        assert_eq!(bins.auc(&scores, &positive), Some(0.5));
    }

    #[test]
    fn quartile_auc_weights_bins_by_their_positives() {
        let (ids, activity, positive) = levels();
        // Perfect inside the two lower levels (30 positives), reversed inside
        // the two upper ones (70 positives), and against activity overall.
        let scores = Scores {
            scores: ids
                .iter()
                .map(|&id| {
                    let hit = f64::from(u8::from(positive(id)));
                    let inside = if id < 200 { hit } else { -hit };
                    -10.0 * activity[&id] + inside
                })
                .collect(),
            ids,
            seeds_used: 0,
            unknown_seeds: vec![],
        };
        let q = ActivityBins::new(&activity, ACTIVITY_BINS)
            .auc(&scores, &positive)
            .expect("every bin has positives and negatives");
        // (30 · 1 + 70 · 0) / 100; equal weights would give 0.5.
        assert!((q - 0.3).abs() < 1e-12, "{q}");
        // When everyone ties there is one bin: the plain AUC.
        let flat: HashMap<u64, f64> = activity.keys().map(|&id| (id, 5.0)).collect();
        let plain = rank_metrics(&scores, &positive, &[1]).auc;
        let one_bin = ActivityBins::new(&flat, ACTIVITY_BINS)
            .auc(&scores, &positive)
            .expect("one bin with both");
        assert!((one_bin - plain).abs() < 1e-12);
        // No positive at all: undefined.
        assert_eq!(
            ActivityBins::new(&activity, ACTIVITY_BINS).auc(&scores, &|_| false),
            None
        );
    }

    #[test]
    fn the_activity_baseline_looks_good_raw_and_scores_one_half_within_quartiles(
    ) -> crate::Result<()> {
        // The same population in an index (random unit vectors, seeded);
        // members are the positives of `levels`.
        use rand::Rng;
        let (ids, activity, positive) = levels();
        let dim = 8;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let vectors: Vec<f32> = (0..ids.len() * dim)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let index = UserIndex::new(crate::index::IndexConfig::new(dim))?;
        index.upsert_batch(&ids, &vectors)?;
        let members: Vec<u64> = ids.iter().copied().filter(|&id| positive(id)).collect();
        let config = LookalikeConfig {
            min_seeds: 10,
            ..Default::default()
        };
        let res = evaluate_segment(
            &index,
            None,
            "levels",
            &members,
            &[Method::Activity, Method::Scorer(Scorer::Centroid)],
            Some(&activity),
            &config,
            &EvalConfig::default(),
        )?;
        assert!(res[0].auc > 0.6, "{:?}", res[0]);
        assert_eq!(res[0].quartile_auc, Some(0.5), "{:?}", res[0]);
        // Random vectors carry no signal: the centroid is near 0.5 both ways.
        let q = res[1].quartile_auc.expect("activity given");
        assert!((q - 0.5).abs() < 0.15, "{:?}", res[1]);
        // Without activity counts there is no quartile AUC.
        let res = evaluate_segment(
            &index,
            None,
            "levels",
            &members,
            &[Method::Scorer(Scorer::Centroid)],
            None,
            &config,
            &EvalConfig::default(),
        )?;
        assert_eq!(res[0].quartile_auc, None);
        Ok(())
    }
}
