//! Click models: which slots of a shown slate were examined, and so how a
//! slate's clicks update the items' Beta counts.
//!
//! * **Position-based (PBM)**: P(click at slot p) = θ_p · a_item, with θ the
//!   examination probability of each slot (configured, or estimated from logs
//!   by [`estimate_examination`]). A click is one success; a slate slot
//!   without a click is θ_p of a failure (an unseen slot says little about the
//!   item). Slots beyond the visible ones count θ = 0 (and cannot be clicked).
//! * **Cascade**: the user scans from the top and stops at the (last) click:
//!   slots down to the last click were examined (the clicked ones are
//!   successes, the others failures); slots after it were not. Without a
//!   click, the visible slots were examined and are failures.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::limits::{self, MAX_SLOTS};

/// How clicks on a slate become counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum ClickModel {
    /// Position-based model with the examination probability of each slot
    /// (slots past the end of the list: 0).
    Pbm {
        /// θ per slot, each in [0, 1]; 1..=[`MAX_SLOTS`] slots.
        examination: Vec<f64>,
    },
    /// Cascade model.
    Cascade,
}

impl Default for ClickModel {
    /// PBM with examination 1 / (1 + slot) (a common carousel prior), for 20 slots.
    fn default() -> Self {
        ClickModel::Pbm {
            examination: (0..20).map(|p| 1.0 / (1.0 + p as f64)).collect(),
        }
    }
}

impl ClickModel {
    /// Checks the examination probabilities: 1..=[`MAX_SLOTS`] of them, each
    /// in [0, 1]. Errors name the key as in an engine config
    /// (`bandit.click_model.Pbm.examination`).
    pub fn validate(&self) -> Result<()> {
        if let ClickModel::Pbm { examination } = self {
            let key = "bandit.click_model.Pbm.examination";
            if !(1..=MAX_SLOTS).contains(&examination.len()) {
                return Err(Error::config(
                    key,
                    format!(
                        "must list 1..={MAX_SLOTS} probabilities, got {}",
                        examination.len()
                    ),
                ));
            }
            for (slot, &t) in examination.iter().enumerate() {
                limits::probability(&format!("{key}[{slot}]"), t)?;
            }
        }
        Ok(())
    }

    /// `(successes, failures)` to add for each slot of a slate of `len` slots
    /// with clicks on the slots in `clicks` (0-based), the first `visible` of
    /// them shown (more than `len`: all).
    ///
    /// A clicked slot outside the slate or beyond the visible ones, or a slot
    /// clicked twice, is an error naming `clicks`: a slot is clicked at most
    /// once and only if it was seen, so a slate's clicks never outnumber its
    /// visible slots.
    pub fn updates(&self, len: usize, clicks: &[usize], visible: usize) -> Result<Vec<(f64, f64)>> {
        let visible = visible.min(len);
        let mut clicked = vec![false; len];
        for &c in clicks {
            if c >= len {
                return Err(Error::invalid(
                    "clicks",
                    format!("slot {c} is outside the slate of {len} slots"),
                ));
            }
            if c >= visible {
                return Err(Error::invalid(
                    "clicks",
                    format!(
                        "slot {c} was clicked but only the first {visible} of the {len} slots \
                         were visible"
                    ),
                ));
            }
            if std::mem::replace(&mut clicked[c], true) {
                return Err(Error::invalid(
                    "clicks",
                    format!("slot {c} is clicked more than once (a slot counts one click)"),
                ));
            }
        }
        Ok(match self {
            ClickModel::Pbm { examination } => (0..len)
                .map(|p| {
                    if clicked[p] {
                        (1.0, 0.0)
                    } else if p < visible {
                        (0.0, examination.get(p).copied().unwrap_or(0.0))
                    } else {
                        (0.0, 0.0)
                    }
                })
                .collect(),
            ClickModel::Cascade => {
                let examined = match clicks.iter().max() {
                    Some(&last) => last + 1,
                    None => visible,
                };
                (0..len)
                    .map(|p| match (p < examined, clicked[p]) {
                        (_, true) => (1.0, 0.0),
                        (true, false) => (0.0, 1.0),
                        (false, false) => (0.0, 0.0),
                    })
                    .collect()
            }
        })
    }
}

/// One logged impression: an item shown at a slot, clicked or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impression {
    /// The item.
    pub item: u64,
    /// Its slot (0-based).
    pub position: usize,
    /// Whether it was clicked.
    pub clicked: bool,
}

/// Estimates PBM examination probabilities per slot from logged impressions by
/// expectation-maximisation over examination and attractiveness (the standard
/// PBM EM, e.g. Chuklin, Markov & de Rijke, "Click Models for Web Search",
/// 2015), normalised so the first slot's is 1. Items in several slots make the
/// slots comparable; logs from a policy that places items at random (such as
/// the Open Bandit Dataset's random campaign) are ideal.
pub fn estimate_examination(
    impressions: &[Impression],
    slots: usize,
    iterations: usize,
) -> Result<Vec<f64>> {
    if slots == 0 || impressions.is_empty() {
        return Err(Error::invalid(
            "impressions",
            "need at least one slot and one impression",
        ));
    }
    if let Some(bad) = impressions.iter().find(|i| i.position >= slots) {
        return Err(Error::invalid(
            "impressions",
            format!("position {} is outside the {slots} slots", bad.position),
        ));
    }
    let mut item_index: HashMap<u64, usize> = HashMap::new();
    for imp in impressions {
        let next = item_index.len();
        item_index.entry(imp.item).or_insert(next);
    }
    let mut theta = vec![0.5f64; slots];
    let mut attract = vec![0.5f64; item_index.len()];
    for _ in 0..iterations.max(1) {
        let mut t_num = vec![0.0f64; slots];
        let mut t_den = vec![0.0f64; slots];
        let mut a_num = vec![0.0f64; attract.len()];
        let mut a_den = vec![0.0f64; attract.len()];
        for imp in impressions {
            let i = item_index[&imp.item];
            let (t, a) = (theta[imp.position], attract[i]);
            let (e, r) = if imp.clicked {
                (1.0, 1.0)
            } else {
                let none = (1.0 - t * a).max(1e-12);
                (t * (1.0 - a) / none, (1.0 - t) * a / none)
            };
            t_num[imp.position] += e;
            t_den[imp.position] += 1.0;
            a_num[i] += r;
            a_den[i] += 1.0;
        }
        for p in 0..slots {
            if t_den[p] > 0.0 {
                theta[p] = (t_num[p] / t_den[p]).clamp(1e-6, 1.0);
            }
        }
        for i in 0..attract.len() {
            attract[i] = (a_num[i] / a_den[i]).clamp(1e-6, 1.0 - 1e-6);
        }
    }
    let first = theta[0].max(1e-12);
    Ok(theta.iter().map(|t| (t / first).min(1.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn pbm_counts_clicks_fully_and_misses_by_examination() -> Result<()> {
        let m = ClickModel::Pbm {
            examination: vec![1.0, 0.5, 0.25],
        };
        // Slate of 4, click on slot 1, 3 visible.
        let u = m.updates(4, &[1], 3)?;
        assert_eq!(u, vec![(0.0, 1.0), (1.0, 0.0), (0.0, 0.25), (0.0, 0.0)]);
        assert!(m.updates(4, &[4], 3).is_err());
        Ok(())
    }

    #[test]
    fn cascade_stops_at_the_last_click_or_the_visible_slots() -> Result<()> {
        let m = ClickModel::Cascade;
        assert_eq!(
            m.updates(5, &[2], 3)?,
            vec![(0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.0, 0.0)]
        );
        assert_eq!(
            m.updates(5, &[], 3)?,
            vec![(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, 0.0), (0.0, 0.0)]
        );
        // Two clicks: examined down to the last one, though all 4 were visible.
        assert_eq!(
            m.updates(4, &[0, 2], 4)?,
            vec![(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0)]
        );
        Ok(())
    }

    /// The error `updates` gives, as text (it must name `clicks`).
    fn refusal(m: &ClickModel, len: usize, clicks: &[usize], visible: usize) -> String {
        match m.updates(len, clicks, visible) {
            Err(e @ Error::InvalidArgument { name: "clicks", .. }) => e.to_string(),
            other => {
                panic!("{clicks:?} of {len} ({visible} visible): expected an error, got {other:?}")
            }
        }
    }

    #[test]
    fn clicks_are_distinct_visible_slots_of_the_slate() -> Result<()> {
        for m in [ClickModel::default(), ClickModel::Cascade] {
            // A slot clicked twice (or a million times) counts once: refused.
            assert!(refusal(&m, 4, &[2, 2, 2, 2], 4).contains("slot 2 is clicked more than once"));
            assert!(refusal(&m, 4, &vec![0; 1_000_000], 4).contains("slot 0"));
            // Nothing visible: nothing can be clicked.
            assert!(refusal(&m, 4, &[0], 0).contains("only the first 0 of the 4"));
            // Beyond the visible slots, and beyond the slate.
            assert!(refusal(&m, 10, &[1, 7], 3).contains("slot 7 was clicked"));
            assert!(refusal(&m, 4, &[4], 3).contains("outside the slate of 4"));
            // `visible` larger than the slate means all of it.
            assert_eq!(m.updates(4, &[3], 100)?, m.updates(4, &[3], 4)?);
            // No click, nothing visible: nothing learned.
            assert!(m
                .updates(4, &[], 0)?
                .iter()
                .all(|&(s, f)| s == 0.0 && f == 0.0));
            // Property: over random valid clicks, the successes are the
            // clicks and never outnumber the visible slots.
            let mut rng = rand::rngs::StdRng::seed_from_u64(12);
            for _ in 0..2_000 {
                let len = rng.random_range(1..12);
                let visible = rng.random_range(0..15);
                let shown = visible.min(len);
                let mut clicks: Vec<usize> = (0..shown).filter(|_| rng.random_bool(0.3)).collect();
                if rng.random_bool(0.3) && !clicks.is_empty() {
                    // A repeated or a hidden slot: refused.
                    clicks.push(if rng.random_bool(0.5) {
                        clicks[0]
                    } else {
                        shown
                    });
                    assert!(m.updates(len, &clicks, visible).is_err(), "{clicks:?}");
                    continue;
                }
                let u = m.updates(len, &clicks, visible)?;
                let successes: f64 = u.iter().map(|x| x.0).sum();
                assert_eq!(successes, clicks.len() as f64);
                assert!(clicks.len() <= shown);
                assert!(u[shown..].iter().all(|&(s, f)| s == 0.0 && f == 0.0));
            }
        }
        Ok(())
    }

    #[test]
    fn em_recovers_examination_probabilities_from_random_placements() -> Result<()> {
        let theta = [1.0, 0.6, 0.3];
        let attract: Vec<f64> = (0..40).map(|i| 0.05 + 0.01 * i as f64).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let log: Vec<Impression> = (0..300_000)
            .map(|_| {
                let item = rng.random_range(0..40);
                let position = rng.random_range(0..3);
                let clicked = rng.random::<f64>() < theta[position] * attract[item];
                Impression {
                    item: item as u64,
                    position,
                    clicked,
                }
            })
            .collect();
        let est = estimate_examination(&log, 3, 100)?;
        for (e, t) in est.iter().zip(theta) {
            assert!((e - t).abs() < 0.03, "{est:?}");
        }
        Ok(())
    }
}
