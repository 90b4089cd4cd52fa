//! Choosing a slate from scored candidates: in-slate Thompson sampling,
//! standard Thompson sampling, greedy, and uniform random.
//!
//! Each candidate has a Beta posterior for its click probability and,
//! optionally, the host's score; its value is `w · x + (1 − w) · host`, where
//! `x` is a posterior draw (Thompson) or the posterior mean (greedy).
//!
//! **Pruning.** Drawing every candidate for every slot costs slots ×
//! candidates draws. Instead candidates are visited in decreasing order of an
//! upper bound on their value (the Wilson bound of [`Beta::upper`]); a slot's
//! search stops at the first candidate whose bound is below the best value
//! drawn so far. A skipped candidate could only have won if its draw had
//! exceeded its bound — at most 3.6·10⁻⁴ per candidate for click-rate
//! posteriors (see [`Beta::upper`]; heavy-tailed posteriors are never
//! skipped) — *and* beaten the best draw, which is far rarer for all but the
//! candidates just below it. The tests compare the slot distribution with
//! the exhaustive policy's (total variation within the test's own sampling
//! noise, 0.012). With concentrated posteriors only a handful of candidates
//! are drawn per slot.
//!
//! **Ties.** Whenever two candidates have the same value for a slot (greedy
//! on equal posterior means, or equal host scores that decide a slot), the
//! slot goes to the one ranked first by a random order drawn afresh for
//! every decision from its seeded generator — never to the one listed first.
//! So tied candidates share the slots evenly (a greedy policy does not
//! sweep the catalogue in the host's order), and the same seed and ordinal
//! still give the same slate.

use rand::seq::index::sample;
use rand::Rng;

use super::beta::{Beta, BetaSampler};

/// How a slate is chosen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Policy {
    /// A fresh posterior draw per slot; each slot takes the best item not yet
    /// placed (FINN.no's in-slate Thompson sampling). The default.
    #[default]
    InSlateThompson,
    /// One draw per candidate; the top `k` fill the slate.
    Thompson,
    /// Posterior means; the top `k` fill the slate. Equal means are ordered
    /// at random (seeded, per decision), not by candidate order.
    Greedy,
    /// Uniformly random items (for logging and evaluation).
    Random,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 4] = [
        Policy::InSlateThompson,
        Policy::Thompson,
        Policy::Greedy,
        Policy::Random,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::InSlateThompson => "in-slate TS",
            Policy::Thompson => "standard TS",
            Policy::Greedy => "greedy",
            Policy::Random => "random",
        }
    }
}

/// A candidate as the selection sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arm {
    pub posterior: Beta,
    /// The host term of its value (see [`Mix`]; 0 without host scores).
    pub host: f64,
}

/// How a candidate's value combines a posterior draw (or mean) `x` with its
/// host term. Both forms increase with `x`, so the pruning bound of a value
/// is the value of the posterior's bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mix {
    /// `w · x + (1 − w) · host`.
    Linear(f64),
    /// `b · logit(x) + host`, `b > 0`: `host` is the learned blend's
    /// `c · z` (see [`super::host`]).
    Logit(f64),
}

impl Mix {
    #[inline]
    fn value(self, x: f64, host: f64) -> f64 {
        match self {
            Mix::Linear(w) => w * x + (1.0 - w) * host,
            Mix::Logit(b) => b * logit(x) + host,
        }
    }
}

/// `ln(x / (1 − x))`, with `x` kept inside [10⁻¹², 1 − 10⁻¹²] so values are
/// finite.
#[inline]
pub(crate) fn logit(x: f64) -> f64 {
    let x = x.clamp(1e-12, 1.0 - 1e-12);
    (x / (1.0 - x)).ln()
}

/// Picks `k` of `arms` (indices, slot order) with the value each slot used.
/// `mix` combines the posterior with the host term.
pub(crate) fn choose<R: Rng + ?Sized>(
    policy: Policy,
    arms: &[Arm],
    k: usize,
    mix: Mix,
    prune: bool,
    rng: &mut R,
) -> Vec<(usize, f64)> {
    let k = k.min(arms.len());
    let value = |i: usize, x: f64| mix.value(x, arms[i].host);
    // The random order that breaks ties (drawn for every policy, so the
    // generator's stream does not depend on whether ties occur).
    let ties = Ties(rng.random());
    match policy {
        Policy::Greedy => {
            let mut scored: Vec<(usize, f64)> = (0..arms.len())
                .map(|i| (i, value(i, arms[i].posterior.mean())))
                .collect();
            top_k(&mut scored, k, ties);
            scored
        }
        Policy::Random => sample(rng, arms.len(), k)
            .into_iter()
            .map(|i| (i, value(i, arms[i].posterior.mean())))
            .collect(),
        Policy::Thompson => {
            let mut order = Order::new(arms, mix, prune);
            // The best k so far, best first (k is small: insertion is cheap).
            let mut top: Vec<(usize, f64)> = Vec::with_capacity(k + 1);
            let mut at = 0;
            while let Some((bound, i)) = order.get(at) {
                at += 1;
                let full = top.len() == k;
                let floor = top.last().map_or((usize::MAX, f64::NEG_INFINITY), |t| *t);
                if prune && full && bound < floor.1 {
                    break;
                }
                let v = value(i, arms[i].posterior.sample(rng));
                if full && !ties.better((i, v), floor) {
                    continue;
                }
                let pos = top.partition_point(|&t| ties.better(t, (i, v)));
                top.insert(pos, (i, v));
                top.truncate(k);
            }
            top
        }
        Policy::InSlateThompson => {
            let mut order = Order::new(arms, mix, prune);
            let mut samplers: Vec<Option<BetaSampler>> = vec![None; arms.len()];
            let mut placed = vec![false; arms.len()];
            let mut slate = Vec::with_capacity(k);
            for _ in 0..k {
                let mut best: Option<(usize, f64)> = None;
                let mut at = 0;
                while let Some((bound, i)) = order.get(at) {
                    at += 1;
                    if placed[i] {
                        continue;
                    }
                    if prune && best.is_some_and(|b| bound < b.1) {
                        break;
                    }
                    let sampler =
                        samplers[i].get_or_insert_with(|| BetaSampler::new(arms[i].posterior));
                    let v = value(i, sampler.sample(rng));
                    if best.is_none_or(|b| ties.better((i, v), b)) {
                        best = Some((i, v));
                    }
                }
                let Some(b) = best else { break };
                placed[b.0] = true;
                slate.push(b);
            }
            slate
        }
    }
}

/// Candidates by decreasing upper bound of their value, sorted lazily: a
/// block is selected and sorted only when a search reaches it (most searches
/// stop early), so a slate rarely pays for a full sort.
struct Order {
    items: Vec<(f64, usize)>,
    /// `items[..sorted]` is in final order.
    sorted: usize,
}

impl Order {
    fn new(arms: &[Arm], mix: Mix, prune: bool) -> Self {
        let items = arms
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let b = if prune { a.posterior.upper() } else { 1.0 };
                (mix.value(b, a.host), i)
            })
            .collect();
        Order {
            items,
            // Without pruning the order is irrelevant: everything is drawn.
            sorted: if prune { 0 } else { arms.len() },
        }
    }

    /// The `at`-th candidate in order, if any.
    #[inline]
    fn get(&mut self, at: usize) -> Option<(f64, usize)> {
        if at >= self.items.len() {
            return None;
        }
        if at >= self.sorted {
            let cmp = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            let rest = &mut self.items[self.sorted..];
            // Blocks double; once a block would be a quarter of what is left,
            // one sort of the rest is cheaper than more partitioning passes.
            let mut block = self.sorted.max(64).min(rest.len());
            if block * 4 >= rest.len() {
                block = rest.len();
            } else {
                rest.select_nth_unstable_by(block - 1, cmp);
            }
            rest[..block].sort_unstable_by(cmp);
            self.sorted += block;
        }
        Some(self.items[at])
    }
}

/// A random order of the candidates of one decision, for breaking ties: a
/// bijective mix (SplitMix64's finaliser) of the candidate's index and a
/// salt drawn for the decision, so distinct candidates never tie again and
/// every order of tied candidates is about equally likely.
#[derive(Debug, Clone, Copy)]
struct Ties(u64);

impl Ties {
    /// The rank of candidate `i` in the random order.
    #[inline]
    fn rank(self, i: usize) -> u64 {
        let mut z = self.0 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Whether `(index, value)` `a` beats `b`: a higher value, or an equal
    /// one and an earlier place in the random order.
    #[inline]
    fn better(self, a: (usize, f64), b: (usize, f64)) -> bool {
        a.1 > b.1 || (a.1 == b.1 && self.rank(a.0) < self.rank(b.0))
    }

    /// `Ordering` of two scored candidates, best first.
    #[inline]
    fn cmp(self, a: &(usize, f64), b: &(usize, f64)) -> std::cmp::Ordering {
        b.1.total_cmp(&a.1)
            .then_with(|| self.rank(a.0).cmp(&self.rank(b.0)))
    }
}

/// Keeps the `k` highest values, best first (ties in the random order).
fn top_k(scored: &mut Vec<(usize, f64)>, k: usize, ties: Ties) {
    let cmp = |a: &(usize, f64), b: &(usize, f64)| ties.cmp(a, b);
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, cmp);
        scored.truncate(k);
    } else if k == 0 {
        scored.clear();
    }
    scored.sort_unstable_by(cmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn arms(params: &[(f64, f64)]) -> Vec<Arm> {
        params
            .iter()
            .map(|&(a, b)| Arm {
                posterior: Beta::new(a, b),
                host: 0.0,
            })
            .collect()
    }

    #[test]
    fn every_policy_fills_the_slate_without_repeats() {
        let a = arms(&[(1.0, 1.0); 50]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for policy in Policy::ALL {
            for prune in [true, false] {
                let s = choose(policy, &a, 10, Mix::Linear(1.0), prune, &mut rng);
                let mut items: Vec<usize> = s.iter().map(|x| x.0).collect();
                assert_eq!(items.len(), 10);
                items.sort_unstable();
                items.dedup();
                assert_eq!(items.len(), 10, "{policy:?} repeated an item");
            }
        }
        // Fewer candidates than slots: all of them, once.
        let s = choose(
            Policy::InSlateThompson,
            &a[..3],
            10,
            Mix::Linear(1.0),
            true,
            &mut rng,
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn concentrated_posteriors_make_thompson_equal_greedy() {
        // Means 0.1 .. 0.9 with a million observations each.
        let a = arms(
            &(1..10)
                .map(|i| (i as f64 * 1e5, (10 - i) as f64 * 1e5))
                .collect::<Vec<_>>(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let greedy: Vec<usize> = choose(Policy::Greedy, &a, 5, Mix::Linear(1.0), true, &mut rng)
            .iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(greedy, vec![8, 7, 6, 5, 4]);
        for policy in [Policy::InSlateThompson, Policy::Thompson] {
            for _ in 0..100 {
                let s: Vec<usize> = choose(policy, &a, 5, Mix::Linear(1.0), true, &mut rng)
                    .iter()
                    .map(|x| x.0)
                    .collect();
                assert_eq!(s, greedy, "{policy:?}");
            }
        }
    }

    #[test]
    fn host_scores_decide_when_the_posterior_weight_is_zero() {
        let mut a = arms(&[(1.0, 1.0); 6]);
        for (i, arm) in a.iter_mut().enumerate() {
            arm.host = i as f64 / 10.0;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for policy in [Policy::InSlateThompson, Policy::Thompson, Policy::Greedy] {
            let s: Vec<usize> = choose(policy, &a, 3, Mix::Linear(0.0), true, &mut rng)
                .iter()
                .map(|x| x.0)
                .collect();
            assert_eq!(s, vec![5, 4, 3], "{policy:?}");
        }
    }

    /// Chi-square statistic of observed counts against equal expected counts.
    fn chi_square(counts: &[usize]) -> f64 {
        let total: usize = counts.iter().sum();
        let e = total as f64 / counts.len() as f64;
        counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
    }

    #[test]
    fn flat_posteriors_spread_slot_choices_evenly() {
        // 20 identical posteriors (flat, and a prunable one): every item is
        // equally likely in every slot, whatever its position in the list.
        for params in [(1.0, 1.0), (2.0, 30.0)] {
            let a = arms(&[params; 20]);
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut first = vec![0usize; 20];
            let mut third = vec![0usize; 20];
            for _ in 0..20_000 {
                let s = choose(
                    Policy::InSlateThompson,
                    &a,
                    3,
                    Mix::Linear(1.0),
                    true,
                    &mut rng,
                );
                first[s[0].0] += 1;
                third[s[2].0] += 1;
            }
            // 19 degrees of freedom: the 99.9 % point is 43.8.
            assert!(chi_square(&first) < 43.8, "{params:?}: {first:?}");
            assert!(chi_square(&third) < 43.8, "{params:?}: {third:?}");
        }
    }

    #[test]
    fn ties_are_broken_at_random_by_every_policy() {
        // Greedy on 20 equal posteriors, and every policy on equal host
        // scores with the posterior weight 0: each item equally likely in
        // the first slot, whatever its position in the list.
        let equal = arms(&[(3.0, 27.0); 20]);
        let mut hosts = arms(&[(1.0, 1.0); 20]);
        hosts.iter_mut().for_each(|a| a.host = 0.25);
        let cases = [
            (Policy::Greedy, &equal, 1.0),
            (Policy::Greedy, &hosts, 0.0),
            (Policy::Thompson, &hosts, 0.0),
            (Policy::InSlateThompson, &hosts, 0.0),
        ];
        for (policy, a, w) in cases {
            for prune in [true, false] {
                let mut rng = rand::rngs::StdRng::seed_from_u64(11);
                let mut first = vec![0usize; 20];
                for _ in 0..20_000 {
                    let s = choose(policy, a, 3, Mix::Linear(w), prune, &mut rng);
                    assert_eq!(s.len(), 3);
                    first[s[0].0] += 1;
                }
                // 19 degrees of freedom: the 99.9 % point is 43.8.
                assert!(chi_square(&first) < 43.8, "{policy:?} {prune}: {first:?}");
            }
            // The same seed gives the same slate.
            let once = |seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                choose(policy, a, 3, Mix::Linear(w), true, &mut rng)
            };
            assert_eq!(once(5), once(5));
        }
    }

    #[test]
    fn pruning_leaves_the_slot_distribution_unchanged() {
        // Mixed posteriors: a few strong items, many weak or uncertain ones.
        let mut params = vec![(30.0, 70.0), (25.0, 75.0), (2.0, 8.0), (1.0, 1.0)];
        params.extend((0..60).map(|i| (1.0 + i as f64 % 3.0, 40.0 + i as f64)));
        let a = arms(&params);
        let runs = 40_000;
        let mut freq = [vec![0usize; a.len()], vec![0usize; a.len()]];
        for (f, prune) in freq.iter_mut().zip([false, true]) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(8);
            for _ in 0..runs {
                for (slot, (i, _)) in choose(
                    Policy::InSlateThompson,
                    &a,
                    5,
                    Mix::Linear(1.0),
                    prune,
                    &mut rng,
                )
                .into_iter()
                .enumerate()
                {
                    if slot == 0 {
                        f[i] += 1;
                    }
                }
            }
        }
        // Total variation distance between the first-slot distributions, within
        // sampling noise (the two runs draw different random numbers).
        let tv: f64 = freq[0]
            .iter()
            .zip(&freq[1])
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .sum::<f64>()
            / (2.0 * runs as f64);
        assert!(tv < 0.012, "total variation {tv}");
    }
}
