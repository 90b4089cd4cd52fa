//! The learned host-score blend ([`Blend::Learned`](super::Blend::Learned)):
//! how much the host's scores predict clicks beyond what the bandit already
//! knows, and on what scale, learned from the feedback the bandit gets.
//!
//! **Model.** For a slot showing item `i` to a user, with `m` the mean of the
//! item's posterior for that user when the slate was decided and `h` the
//! host's score,
//!
//! ```text
//! logit P(click | examined) = a + b · logit(m) + c · z,   z = (h − mean(h)) / sd(h)
//! ```
//!
//! where the mean and standard deviation of the host scores are taken over
//! the request's candidates. Standardising within the request makes the
//! blend blind to the scores' offset and scale (scores need not be
//! probabilities: ranks, logits or a model's raw output all work). With the
//! posterior's logit as the other covariate, `c` measures what the host
//! knows *beyond* the posterior and `b` what the posterior knows beyond the
//! host: `c = 0` when the scores carry no information (or none the
//! posterior lacks); `c` large and `b` small when the scores predict clicks
//! better than the posterior does. `a` absorbs any overall miscalibration
//! of the posterior means.
//!
//! **Fitting.** Bayesian logistic regression on `(a, b, c)` with a Gaussian
//! prior (`a`: mean 0, sd 2; `b`: mean 1, sd 1, the posterior taken at its
//! word; `c`: mean 0, sd `prior_sd`, scores assumed useless until the
//! feedback says otherwise), updated online by one Newton step per
//! observation (the Laplace approximation), with the click model's counts as
//! weights: each slot's `(successes, failures)` from the feedback. Old
//! observations fade with a half-life of `memory` observations (the
//! precision decays toward the prior's), because what the host adds beyond
//! the posterior shrinks as the posterior learns. One model per bandit (all
//! segments), updated under a short lock in feedback; decisions read
//! `(a, b, c)` from atomics, so the decision path takes no lock for it.
//!
//! **Decision.** A candidate's value is `b · logit(x) + c' · z`, with `x`
//! the posterior draw (Thompson) or mean (greedy), `b` kept at least
//! [`MIN_B`] so the value increases with `x`, and `c'` the weight `c`
//! shrunk toward 0 by [`GATE`] of its posterior standard deviations
//! (`c' = sign(c) · max(0, |c| − GATE · sd(c))`): scores are used only once
//! the feedback shows, beyond noise, that they predict clicks. While
//! `c' = 0` the slate is exactly the one without host scores. The slot's
//! reported score is the blended click probability `σ(a + value)`.

use serde::{Deserialize, Serialize};

/// Largest magnitude of a standardised score (a lone outlier among equal
/// scores would otherwise get an unbounded z).
const MAX_Z: f64 = 5.0;

/// Largest magnitude of `a` and `c` (logit units): far beyond any useful
/// value, it keeps a runaway fit from saturating the values.
const MAX_PARAM: f64 = 20.0;

/// Prior standard deviation of `a`, the calibration offset (logit units).
const PRIOR_SD_OFFSET: f64 = 2.0;

/// Prior standard deviation of `b`, the posterior's weight (prior mean 1).
const PRIOR_SD_POSTERIOR: f64 = 1.0;

/// The smallest weight of the posterior in a decision's values: however
/// well the host predicts, the posterior's draw still orders the items the
/// host scores alike (and keeps exploring).
pub const MIN_B: f64 = 0.05;

/// Standard deviations of `c` by which the host's weight is shrunk toward 0
/// in decisions. Measured in `groupwise eval slates` (EVALUATION.md): the
/// raw fit's sampling noise, fed back through the slates it chooses, cost
/// up to 10 % regret with useless scores; shrinking by 2 standard
/// deviations removes that and keeps the gain of informative scores.
pub const GATE: f64 = 2.0;

/// The learned blend's state: the posterior of `(a, b, c)` as mean and
/// precision matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostModel {
    /// Calibration offset `a` (posterior mean).
    pub a: f64,
    /// Weight `b` of the posterior's logit (posterior mean).
    pub b: f64,
    /// Weight `c` of the standardised host score (posterior mean).
    pub c: f64,
    /// Precision matrix of `(a, b, c)`, row-major.
    precision: [[f64; 3]; 3],
    /// Observations seen (weights summed, not decayed).
    pub observations: f64,
}

impl HostModel {
    /// The prior (see the module docs).
    pub fn new(prior_sd: f64) -> Self {
        HostModel {
            a: 0.0,
            b: 1.0,
            c: 0.0,
            precision: prior_precision(prior_sd),
            observations: 0.0,
        }
    }

    /// The weight of the posterior's logit in a decision (`b`, at least
    /// [`MIN_B`]).
    pub fn posterior_weight(&self) -> f64 {
        self.b.max(MIN_B)
    }

    /// The weight of the host's standardised score in a decision: `c`
    /// shrunk toward 0 by [`GATE`] standard deviations.
    pub fn host_weight(&self) -> f64 {
        let margin = GATE * self.c_sd();
        if margin.is_finite() {
            self.c.signum() * (self.c.abs() - margin).max(0.0)
        } else {
            0.0
        }
    }

    /// Posterior standard deviation of `c`.
    pub fn c_sd(&self) -> f64 {
        match inverse(&self.precision) {
            Some(cov) if cov[2][2] > 0.0 => cov[2][2].sqrt(),
            _ => f64::INFINITY,
        }
    }

    /// True if every value is finite, the parameters within their bounds and
    /// the precision matrix symmetric positive definite (checked on
    /// snapshots).
    pub fn is_valid(&self) -> bool {
        let p = &self.precision;
        let finite = [self.a, self.b, self.c, self.observations]
            .iter()
            .chain(p.iter().flatten())
            .all(|x| x.is_finite());
        // Sylvester's criterion.
        let m2 = p[0][0] * p[1][1] - p[0][1] * p[1][0];
        finite
            && [self.a, self.b, self.c]
                .iter()
                .all(|x| x.abs() <= MAX_PARAM)
            && (0..3).all(|i| (0..3).all(|j| p[i][j] == p[j][i]))
            && p[0][0] > 0.0
            && m2 > 0.0
            && det(p) > 0.0
            && self.observations >= 0.0
    }

    /// One observation: a slot with posterior-mean logit `offset` and
    /// standardised score `z` got `successes` and `failures` (click-model
    /// weights). `prior_sd` and `memory` are the configuration's.
    pub fn update(
        &mut self,
        offset: f64,
        z: f64,
        successes: f64,
        failures: f64,
        prior_sd: f64,
        memory: f64,
    ) {
        let n = successes + failures;
        if !(n > 0.0 && offset.is_finite() && z.is_finite()) {
            return;
        }
        // Forget: the precision decays toward the prior's.
        let keep = 0.5f64.powf(n / memory);
        let prior = prior_precision(prior_sd);
        for (row, row0) in self.precision.iter_mut().zip(prior) {
            for (p, p0) in row.iter_mut().zip(row0) {
                *p = keep * *p + (1.0 - keep) * p0;
            }
        }
        let x = [1.0, offset, z];
        let p = sigmoid(self.a + self.b * offset + self.c * z);
        let w = n * p * (1.0 - p);
        for (i, row) in self.precision.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                // x_i · x_j first: the product commutes exactly, so the
                // matrix stays exactly symmetric.
                *cell += w * (x[i] * x[j]);
            }
        }
        // Newton step: θ += P⁻¹ g, g = (s − n p) · x.
        let r = successes - n * p;
        if let Some(cov) = inverse(&self.precision) {
            let step: Vec<f64> = cov
                .iter()
                .map(|row| row.iter().zip(x).map(|(c, xi)| c * xi * r).sum())
                .collect();
            self.a = (self.a + step[0]).clamp(-MAX_PARAM, MAX_PARAM);
            self.b = (self.b + step[1]).clamp(-MAX_PARAM, MAX_PARAM);
            self.c = (self.c + step[2]).clamp(-MAX_PARAM, MAX_PARAM);
        }
        self.observations += n;
    }
}

fn prior_precision(prior_sd: f64) -> [[f64; 3]; 3] {
    [
        [1.0 / (PRIOR_SD_OFFSET * PRIOR_SD_OFFSET), 0.0, 0.0],
        [0.0, 1.0 / (PRIOR_SD_POSTERIOR * PRIOR_SD_POSTERIOR), 0.0],
        [0.0, 0.0, 1.0 / (prior_sd * prior_sd)],
    ]
}

fn det(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The inverse of a 3 × 3 matrix (by its adjugate), if it is not singular.
fn inverse(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det(m);
    if !(d.abs() > 1e-300 && d.is_finite()) {
        return None;
    }
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            // Cofactor of m[j][i].
            let (r0, r1) = ((j + 1) % 3, (j + 2) % 3);
            let (c0, c1) = ((i + 1) % 3, (i + 2) % 3);
            *cell = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / d;
        }
    }
    Some(out)
}

/// The logistic function.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The standardised scores `z` of the candidates `eligible` (indices into
/// `scores`), within the request: 0 for all when the scores are equal.
pub(crate) fn standardize(scores: &[f32], eligible: &[usize]) -> Vec<f64> {
    let n = eligible.len().max(1) as f64;
    let mean = eligible.iter().map(|&i| f64::from(scores[i])).sum::<f64>() / n;
    let var = eligible
        .iter()
        .map(|&i| (f64::from(scores[i]) - mean).powi(2))
        .sum::<f64>()
        / n;
    let sd = var.sqrt();
    eligible
        .iter()
        .map(|&i| {
            if sd > 0.0 && sd.is_finite() {
                ((f64::from(scores[i]) - mean) / sd).clamp(-MAX_Z, MAX_Z)
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Feeds `n` observations where the true click logit is
    /// `a + b · offset + c · z` and returns the fitted model.
    fn fit(true_a: f64, true_b: f64, true_c: f64, n: usize, memory: f64, seed: u64) -> HostModel {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut m = HostModel::new(1.0);
        for _ in 0..n {
            let offset: f64 = rng.random_range(-4.0..-1.0);
            let z: f64 = rng.sample(rand_distr::StandardNormal);
            let click = rng.random::<f64>() < sigmoid(true_a + true_b * offset + true_c * z);
            let (s, f) = if click { (1.0, 0.0) } else { (0.0, 1.0) };
            m.update(offset, z, s, f, 1.0, memory);
            assert!(m.is_valid(), "{m:?}");
        }
        m
    }

    #[test]
    fn recovers_known_offsets_and_weights() {
        // Known answers: the fit lands within 4 posterior standard
        // deviations (about 0.05 here) of the truth.
        for (a, b, c) in [
            (0.0, 1.0, 0.0),
            (0.5, 1.0, 1.0),
            (-0.3, 0.5, 0.4),
            (1.0, 1.5, -0.5),
            (0.0, 0.2, 1.5),
        ] {
            let m = fit(a, b, c, 100_000, 1e9, 1);
            assert!(
                (m.c - c).abs() < 4.0 * m.c_sd() + 0.01,
                "{a} {b} {c}: {m:?}"
            );
            assert!((m.b - b).abs() < 0.1, "{a} {b} {c}: {m:?}");
            assert!((m.a - a).abs() < 0.25, "{a} {b} {c}: {m:?}");
        }
        // The inverse is the inverse.
        let p = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let q = inverse(&p).expect("invertible");
        for (i, row) in p.iter().enumerate() {
            for j in 0..3 {
                let e: f64 = row.iter().zip(&q).map(|(a, qk)| a * qk[j]).sum();
                assert!((e - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn useless_scores_get_a_weight_near_zero_from_the_start() {
        // With no information in z, c stays within 4 posterior standard
        // deviations of 0 all along, and those shrink with the evidence
        // (about 0.06 after 2,000 observations, 0.009 after 100,000).
        for seed in 0..5 {
            for (n, sd) in [(2_000, 0.08), (100_000, 0.012)] {
                let m = fit(0.3, 1.0, 0.0, n, 1e9, seed);
                assert!(m.c_sd() < sd, "{n}: {m:?}");
                assert!(m.c.abs() < 4.0 * m.c_sd(), "{n}: {m:?}");
            }
        }
    }

    #[test]
    fn forgetting_follows_a_change_in_what_the_scores_are_worth() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut m = HostModel::new(1.0);
        for c in [1.5, 0.0] {
            for _ in 0..60_000 {
                let z: f64 = rng.sample(rand_distr::StandardNormal);
                let click = rng.random::<f64>() < sigmoid(-2.0 + c * z);
                m.update(
                    -2.0,
                    z,
                    f64::from(u8::from(click)),
                    f64::from(u8::from(!click)),
                    1.0,
                    5_000.0,
                );
            }
            assert!((m.c - c).abs() < 0.15, "{c}: {m:?}");
        }
    }

    #[test]
    fn scores_are_standardised_within_the_request() {
        let z = standardize(&[1.0, 2.0, 3.0, 100.0], &[0, 1, 2]);
        let want = [-1.224_744_9, 0.0, 1.224_744_9];
        for (a, b) in z.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{z:?}");
        }
        // Any offset and scale: the same z.
        let scaled = standardize(&[-50.0, 0.0, 50.0], &[0, 1, 2]);
        for (a, b) in scaled.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{scaled:?}");
        }
        assert_eq!(standardize(&[0.3, 0.3], &[0, 1]), vec![0.0, 0.0]);
    }
}
