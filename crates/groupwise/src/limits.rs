//! The documented bounds of every setting, and of what the engine reads from
//! files.
//!
//! Each setting has a range checked when a configuration is put to use
//! ([`Engine::new`](crate::Engine::new), [`Engine::load`](crate::Engine::load)
//! and the standalone constructors such as [`UserIndex::new`](crate::UserIndex::new),
//! [`Segments::build`](crate::Segments::build),
//! [`SlateBandit::new`](crate::bandit::SlateBandit::new) and
//! [`lookalike::expand`](crate::lookalike::expand)). A value outside its
//! range is [`Error::InvalidConfig`] naming the key as it is written in an
//! engine config (e.g. `index.ef_search`). The upper bounds are far above
//! what a host needs, and keep a typo from turning into an allocation or a
//! loop that takes the host down: the README's configuration table lists
//! every key with its default and range.

use std::ops::RangeInclusive;

use crate::error::{Error, Result};

/// Widest embedding: 65,536 values (256 KiB per user). The widest embedding
/// models in use are a few thousand wide; beyond this, a vector no longer
/// describes a user but a typo.
pub const MAX_DIM: usize = 65_536;

/// Widest HNSW candidate list (`index.ef_construction`, `index.ef_search`,
/// a graph method's `ef`): hnsw_rs allocates it up front for every insert and
/// search, and recall stops improving long before it.
pub const MAX_EF: usize = 4096;

/// Most neighbours per user in a kNN graph, a kNN vote or the kNN-density
/// scorer: each user's list is held in memory, and communities of a graph
/// this dense are no longer local.
pub const MAX_NEIGHBOURS: usize = 1024;

/// Most power iterations of personalised PageRank: it converges
/// geometrically (by `1 - restart` per step), so 1,000 is past any precision.
pub const MAX_DIFFUSION_ITERATIONS: usize = 1000;

/// Most passes of community detection (each stops early when nothing moves).
pub const MAX_COMMUNITY_PASSES: usize = 100;

/// Most Lloyd iterations of a k-means run.
pub const MAX_KMEANS_ITERATIONS: usize = 10_000;

/// Most k-means initialisations.
pub const MAX_KMEANS_INITS: usize = 100;

/// Most k-means clusters: far more segments than any host serves, each of
/// at least `segments.min_size` users.
pub const MAX_KMEANS_CLUSTERS: usize = 100_000;

/// Largest community resolution: far past the point where every user is its
/// own community.
pub const MAX_RESOLUTION: f64 = 1e4;

/// Largest prior or pooling strength (pseudo-counts): a prior this strong is
/// never moved by the clicks a bandit sees.
pub const MAX_STRENGTH: f64 = 1e9;

/// Largest count of clicks or examinations the bandit holds (2^53, where
/// `f64` stops counting in ones). Counts saturate there; snapshots and
/// deltas holding more are refused.
pub const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Most slots with an examination probability in a position-based click
/// model.
pub const MAX_SLOTS: usize = 4096;

/// Most users with their own bandit state, and most open decisions
/// (`bandit.max_users`, `bandit.max_pending`): each costs memory, and these
/// caps exist to bound it.
pub const MAX_STATE_ENTRIES: usize = 100_000_000;

/// Most items in one user's bandit state.
pub const MAX_USER_ITEMS: usize = 100_000;

/// Most classifier negatives, and most seeds the kNN-density scorer samples
/// (each is a row held in memory and scored against every candidate).
pub const MAX_SAMPLE: usize = 1_000_000;

/// Largest minimum of usable seeds for a lookalike request.
pub const MAX_MIN_SEEDS: usize = 10_000_000;

/// Largest classifier L2 penalty (in units of the total sample weight): the
/// model is flat long before it.
pub const MAX_L2: f64 = 1e6;

/// Most encoders an engine config lists (each holds a pool of sessions).
pub const MAX_ENCODERS: usize = 64;

/// Longest encoder name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Largest engine config file: 4 MiB, thousands of times a real config.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Largest snapshot or delta payload a frame may declare: 64 GiB, far past
/// what one host holds in memory (BENCHMARKS.md has the sizes of real
/// snapshots). A file declaring more is refused before anything is read.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 30;

/// A whole-number setting that must lie in `range`.
pub(crate) fn count(key: &str, value: usize, range: RangeInclusive<usize>) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    let (lo, hi) = range.into_inner();
    Err(Error::config(
        key,
        format!("must be in {lo}..={hi}, got {value}"),
    ))
}

/// A real setting that must be finite and lie between `low` (excluded when
/// `low_open`) and `high` (included).
pub(crate) fn real(key: &str, value: f64, low: f64, low_open: bool, high: f64) -> Result<()> {
    let above = if low_open { value > low } else { value >= low };
    if value.is_finite() && above && value <= high {
        return Ok(());
    }
    let open = if low_open { '(' } else { '[' };
    Err(Error::config(
        key,
        format!("must be a finite number in {open}{low}, {high}], got {value}"),
    ))
}

/// A probability: finite, in [0, 1].
pub(crate) fn probability(key: &str, value: f64) -> Result<()> {
    real(key, value, 0.0, false, 1.0)
}

/// A count of the bandit (clicks or examinations) read from outside: finite,
/// non-negative and at most [`MAX_COUNT`].
pub(crate) fn valid_count(x: f64) -> bool {
    x.is_finite() && (0.0..=MAX_COUNT).contains(&x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_the_range_and_the_value() {
        let e = count("index.ef_search", 4_000_000_000, 1..=MAX_EF).expect_err("out of range");
        assert_eq!(
            e.to_string(),
            "invalid config: `index.ef_search` must be in 1..=4096, got 4000000000"
        );
        let e = real("segments.min_overlap", -3.0, 0.0, true, 1.0).expect_err("out of range");
        assert_eq!(
            e.to_string(),
            "invalid config: `segments.min_overlap` must be a finite number in (0, 1], got -3"
        );
        assert!(real("x", f64::NAN, 0.0, false, 1.0).is_err());
        assert!(real("x", f64::INFINITY, 0.0, false, f64::MAX).is_err());
        assert!(real("x", 0.0, 0.0, false, 1.0).is_ok());
        assert!(real("x", 0.0, 0.0, true, 1.0).is_err());
        assert!(count("x", 0, 0..=0).is_ok());
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e308, MAX_COUNT * 2.0] {
            assert!(!valid_count(bad), "{bad}");
        }
        assert!(valid_count(0.0) && valid_count(MAX_COUNT));
    }
}
