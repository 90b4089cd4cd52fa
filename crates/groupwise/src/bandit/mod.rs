//! Slate Thompson sampling for segments, with a group → user hierarchy and
//! blending with the host's own per-user scores.
//!
//! A host asks [`SlateBandit::decide`] for a slate of its candidates for a user
//! in a segment, shows it, and reports the clicks with [`SlateBandit::feedback`].
//!
//! **Posteriors.** Each item's click probability (attractiveness) is a
//! Beta-Bernoulli posterior at three levels:
//!
//! 1. **pooled** over all segments, starting from the base prior
//!    (`prior_alpha`, `prior_beta`) — or, when items have categories, from the
//!    category's pooled mean at `category_strength` pseudo-counts, so new items
//!    borrow from their category;
//! 2. **segment**: the pooled level's prior at its full strength plus the
//!    *other* segments' counts scaled down to at most `pooling_strength`
//!    observations ([`Pooling::Evidence`]; [`Pooling::Mean`] instead puts
//!    their pooled mean at `pooling_strength` pseudo-counts), plus the
//!    segment's own counts, so a new segment or item is not flat
//!    (empirical-Bayes partial pooling) and a pessimistic base prior keeps
//!    its strength in every segment;
//! 3. **user**: the segment's posterior *without the user's own counts*
//!    (mean `m`, strength `S`) is the user's prior, plus the user's counts.
//!    A user with no data of their own gets exactly the segment's posterior.
//!    As their evidence grows, the prior's strength gives way: each click
//!    takes `1 / m` pseudo-counts off it and each non-click `1 / (1 − m)`,
//!    down to `min(user_strength, S)`, so their own clicks take over.
//!
//!    That rate is the fastest that keeps **exposure monotone**: a click
//!    never lowers the item's α nor raises its β, a non-click never raises α
//!    nor lowers β, so the user's posterior of the item moves in the
//!    likelihood-ratio order, in the direction of the evidence. Every policy
//!    then shows the item to that user at least as often after a click and
//!    at most as often after a non-click (the other items' posteriors for
//!    the user do not change). A bandit never rewards a non-click. (The
//!    guarantee is about the item's own evidence; with item categories, a
//!    non-click also lowers the prior of the item's category mates.)
//!
//! [`Hierarchy`] selects all three levels (default), segment only, or user
//! only (per-user Thompson sampling on the base prior).
//!
//! **Clicks** update all levels through the configured [`ClickModel`]
//! (position-based or cascade). **Decay**: with `half_life`, counts fade
//! exponentially with the host's clock.
//!
//! **Host scores** (`Request::host_scores`, click probabilities in [0, 1]):
//! with [`Blend::Evidence`] (default) a slot's value is
//! `w · draw + (1 − w) · host`, with `w = w_min + (w_max − w_min) · n / (n + n_half)`
//! where `n` is the user's own evidence (effective examinations recorded for
//! them): the engine's posterior counts for more as it learns the user.
//! [`Blend::Fixed`] fixes `w`; [`Blend::PriorMean`] instead uses each host
//! score as the prior mean of the pooled level (at a given strength), so the
//! host's ranking is where exploration starts.
//!
//! **Concurrency.** `SlateBandit` is `Send + Sync`. A decision takes read
//! locks on the shards it needs (the item shards, one user shard) and no lock
//! is global; feedback takes write locks on single shards briefly. Every accepted feedback event is applied exactly once;
//! unknown decision ids, repeated feedback, slots outside the slate or the
//! visible slots and slots clicked twice are errors, counted in [`Stats`],
//! and change nothing. A refused feedback does not use up its decision: the
//! host can send it again with correct arguments. So the clicks counted
//! never exceed the impressions.
//!
//! **Decision ids** are unique across restarts and replicas without any
//! coordination (Snowflake-style): an id is `(sequence << 10) | replica_id`,
//! where [`BanditConfig::replica_id`] is in `0..=`[`MAX_REPLICA_ID`] and the
//! sequence increases strictly with each decision and never falls below the
//! wall clock in quarter-microseconds since the Unix epoch. A process
//! restarted from an old snapshot (even the same snapshot twice) therefore
//! issues ids above every id issued before it, as long as the clock has not
//! gone back and the restart took longer than the sequence had run ahead of
//! the clock (it runs ahead only while decisions come faster than four per
//! microsecond); feedback meant for a decision lost with the process is
//! refused as unknown instead of being credited to another slate. Ids are
//! opaque 64-bit values (above 2^53: keep them as integers, not doubles);
//! they increase within a process but are not consecutive. The sequence part
//! lasts until the year 2112.
//!
//! **Determinism.** The random choices of a decision depend on
//! [`BanditConfig::seed`] and the decision's ordinal (the number of decisions
//! this bandit's state has made before it, kept in snapshots as
//! [`Stats::decisions`]), never on its id: a simulation replays exactly for a
//! given seed, and a bandit restored from a state makes the slates the
//! original would have made.
//!
//! **Limits.** A request has at most [`MAX_CANDIDATES`] candidates and a
//! slate at most [`MAX_SLATE_SIZE`] slots (the cost of in-slate Thompson
//! sampling grows with their product); at least one candidate must remain
//! after exclusions and duplicates, so every decision has a non-empty slate.
//!
//! **Bounded state.** Per-user state is capped at `max_users` users (least
//! recently updated evicted) with at most `max_user_items` items each (least
//! examined evicted); pending decisions at `max_pending` (oldest evicted).

pub mod beta;
pub mod click;
pub mod host;
mod select;
pub mod sim;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

pub use beta::{Beta, Counts};
pub use click::{estimate_examination, ClickModel, Impression};
pub use select::Policy;
pub use state::{BanditState, Delta};

use crate::error::{Error, Result};
use crate::limits::{self, MAX_STATE_ENTRIES, MAX_STRENGTH, MAX_USER_ITEMS};
use crate::segments::SegmentId;
use host::HostModel;
use select::{choose, logit, Arm, Mix};

/// The most slots a slate may have ([`Request::slate_size`]); larger
/// requests are refused with an error naming `slate_size`.
pub const MAX_SLATE_SIZE: usize = 100;

/// The most candidates one request may carry ([`Request::candidates`],
/// duplicates included); larger requests are refused with an error naming
/// `candidates`.
pub const MAX_CANDIDATES: usize = 100_000;

/// The largest [`BanditConfig::replica_id`]: decision ids carry the replica
/// id in their low 10 bits.
pub const MAX_REPLICA_ID: u64 = (1 << REPLICA_BITS) - 1;

/// Bits of a decision id that hold the replica id.
const REPLICA_BITS: u32 = 10;

/// The largest sequence number a decision id can hold.
const MAX_SEQUENCE: u64 = u64::MAX >> REPLICA_BITS;

/// The lowest sequence number the next decision may take: the wall clock in
/// quarter-microseconds since the Unix epoch (0 if the clock is before it).
fn clock_floor() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .saturating_mul(4)
}

/// Which levels of the hierarchy a posterior uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Hierarchy {
    /// Pooled → segment → user (default).
    #[default]
    Full,
    /// Pooled → segment; users' own clicks are not used.
    SegmentOnly,
    /// The user's own clicks on the base prior only (per-user TS).
    UserOnly,
}

/// How a segment's prior borrows from the other segments (see
/// [`BanditConfig::pooling_strength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Pooling {
    /// The base prior (or the category's) at its full strength, plus the
    /// other segments' counts scaled down to at most `pooling_strength`
    /// observations (default): a pessimistic Beta(1, 99) stays 100
    /// pseudo-counts strong in every segment, so an item must earn its
    /// exposure there too.
    #[default]
    Evidence,
    /// The other segments' pooled posterior mean at `pooling_strength`
    /// pseudo-counts (the behaviour before this setting existed): the base
    /// prior reaches a segment only through that mean, so its strength is
    /// lost.
    Mean,
}

/// How host scores combine with the engine's posterior.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Blend {
    /// Learns from the feedback how much the host's scores predict clicks
    /// beyond the posterior, and on what scale (the default; see
    /// [`host`] for the model): a value is `b · logit(draw) + c · z`, with
    /// `z` the score standardised within the request and `b`, `c` fitted
    /// online. Scores may be on any scale (any finite values).
    Learned {
        /// Prior standard deviation of the weight `c`, in logit units per
        /// standard deviation of the scores (in (0, 100]; default 1).
        prior_sd: f64,
        /// Observations after which an old observation's weight in the fit
        /// halves (in [1, 10^12]; default 20,000).
        memory: f64,
    },
    /// `w = w_min + (w_max − w_min) · n / (n + n_half)` on the posterior draw,
    /// `1 − w` on the host score; `n` = the user's recorded evidence.
    Evidence {
        /// Weight of the posterior for a user the engine knows nothing
        /// about (in [0, 1]).
        w_min: f64,
        /// Weight approached as the user's evidence grows (in [0, 1]).
        w_max: f64,
        /// Evidence at which `w` is half-way between the two (in
        /// (0, [`MAX_STRENGTH`]]).
        n_half: f64,
    },
    /// A fixed weight of the posterior (in [0, 1]; 1: ignore host scores).
    Fixed(f64),
    /// Host scores are the prior means of the pooled level, at this strength
    /// (pseudo-counts); values are the posterior draws alone.
    PriorMean {
        /// Pseudo-counts of the host's prior (in (0, [`MAX_STRENGTH`]]).
        strength: f64,
    },
}

impl Default for Blend {
    fn default() -> Self {
        Blend::Learned {
            prior_sd: 1.0,
            memory: 20_000.0,
        }
    }
}

/// Parameters of a [`SlateBandit`]. Strengths and priors are pseudo-counts
/// of at most [`MAX_STRENGTH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BanditConfig {
    /// Base prior α (default 1: with β = 1, flat; > 0).
    pub prior_alpha: f64,
    /// Base prior β (default 49: a pessimistic Beta(1, 49), mean 0.02; 1
    /// gives a flat prior, 99 Deezer's Beta(1, 99); > 0). The default was
    /// chosen in `groupwise eval slates` (EVALUATION.md): on the MovieLens
    /// carousel (mean click probability 0.1) Beta(1, 49) had the least
    /// regret under cascade and PBM clicks; a catalogue with far lower
    /// click rates wants a larger β (an item must earn its exposure).
    pub prior_beta: f64,
    /// The most the other segments' evidence weighs in a segment's prior, in
    /// observations (default 10; ≥ 0; 0 disables pooling: segments start
    /// from the base prior); see [`Pooling`].
    pub pooling_strength: f64,
    /// Pseudo-counts of the category's mean in an item's pooled prior
    /// (default 10; ≥ 0; used for items with a category, see
    /// [`SlateBandit::set_item_categories`]).
    pub category_strength: f64,
    /// Pseudo-counts of the segment's mean that a user's prior keeps however
    /// much evidence the user has (default 20; ≥ 0). A user's prior starts
    /// as the segment's posterior and gives way to the user's counts down to
    /// this strength (see the module docs).
    pub user_strength: f64,
    /// Levels used (default all three).
    pub hierarchy: Hierarchy,
    /// How clicks become counts (default PBM with examination 1 / (1 + slot)).
    pub click_model: ClickModel,
    /// Half-life of counts in seconds of the host's clock (default none;
    /// finite and > 0).
    pub half_life: Option<f64>,
    /// Users with their own state (default 100,000; least recently updated
    /// evicted; 1..=[`MAX_STATE_ENTRIES`]).
    pub max_users: usize,
    /// Items per user state (default 200; least examined evicted;
    /// 1..=[`MAX_USER_ITEMS`]).
    pub max_user_items: usize,
    /// Decisions awaiting feedback (default 1,000,000; oldest evicted;
    /// 1..=[`MAX_STATE_ENTRIES`]).
    pub max_pending: usize,
    /// Host-score blending (default [`Blend::Learned`]).
    pub blend: Blend,
    /// Skip candidates that cannot win a slot (default true; see the
    /// selection notes — exact up to a measured ~10⁻⁶ error per candidate).
    pub prune: bool,
    /// Seed of every random choice (each decision's generator is derived from
    /// it and the decision's ordinal, not its id; see the module docs).
    pub seed: u64,
    /// Keep a journal of count changes for [`SlateBandit::export_delta`]
    /// (default false; replicas that merge each other's learning turn it on).
    #[serde(default)]
    pub record_deltas: bool,
    /// This replica's id in delta exchange (default 0): deltas carrying it
    /// are this replica's own and are never merged back. It is also the low
    /// 10 bits of every decision id, so it must be in
    /// `0..=`[`MAX_REPLICA_ID`] (checked by [`SlateBandit::new`]); replicas
    /// with distinct ids never issue the same decision id.
    #[serde(default)]
    pub replica_id: u64,
    /// How a segment's prior borrows from the other segments (default
    /// [`Pooling::Evidence`]).
    #[serde(default)]
    pub pooling: Pooling,
}

impl Default for BanditConfig {
    fn default() -> Self {
        BanditConfig {
            prior_alpha: 1.0,
            prior_beta: 49.0,
            pooling_strength: 10.0,
            category_strength: 10.0,
            user_strength: 20.0,
            hierarchy: Hierarchy::Full,
            click_model: ClickModel::default(),
            half_life: None,
            max_users: 100_000,
            max_user_items: 200,
            max_pending: 1_000_000,
            blend: Blend::default(),
            prune: true,
            seed: 42,
            record_deltas: false,
            replica_id: 0,
            pooling: Pooling::Evidence,
        }
    }
}

impl BanditConfig {
    /// Checks every setting against its documented range (see the field
    /// docs and [`crate::limits`]); errors name the key as in an engine
    /// config (`bandit.prior_beta`).
    pub(crate) fn validate(&self) -> Result<()> {
        let strength =
            |key: &str, x: f64, open: bool| limits::real(key, x, 0.0, open, MAX_STRENGTH);
        check_replica_id("bandit.replica_id", self.replica_id)?;
        strength("bandit.prior_alpha", self.prior_alpha, true)?;
        strength("bandit.prior_beta", self.prior_beta, true)?;
        strength("bandit.pooling_strength", self.pooling_strength, false)?;
        strength("bandit.category_strength", self.category_strength, false)?;
        strength("bandit.user_strength", self.user_strength, false)?;
        if let Some(h) = self.half_life {
            limits::real("bandit.half_life", h, 0.0, true, f64::MAX)?;
        }
        limits::count("bandit.max_users", self.max_users, 1..=MAX_STATE_ENTRIES)?;
        limits::count(
            "bandit.max_user_items",
            self.max_user_items,
            1..=MAX_USER_ITEMS,
        )?;
        limits::count(
            "bandit.max_pending",
            self.max_pending,
            1..=MAX_STATE_ENTRIES,
        )?;
        match self.blend {
            Blend::Evidence {
                w_min,
                w_max,
                n_half,
            } => {
                limits::probability("bandit.blend.Evidence.w_min", w_min)?;
                limits::probability("bandit.blend.Evidence.w_max", w_max)?;
                strength("bandit.blend.Evidence.n_half", n_half, true)?;
            }
            Blend::Fixed(w) => limits::probability("bandit.blend.Fixed", w)?,
            Blend::Learned { prior_sd, memory } => {
                limits::real("bandit.blend.Learned.prior_sd", prior_sd, 0.0, true, 100.0)?;
                limits::real("bandit.blend.Learned.memory", memory, 1.0, false, 1e12)?;
            }
            Blend::PriorMean { strength: s } => {
                strength("bandit.blend.PriorMean.strength", s, true)?
            }
        }
        self.click_model.validate()
    }
}

/// A request for a slate.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The user (for the user level and blending); `None` for anonymous traffic.
    pub user: Option<u64>,
    /// The user's segment; `None` uses the pooled level alone.
    pub segment: Option<SegmentId>,
    /// The host's candidate items (duplicates are ignored; at most
    /// [`MAX_CANDIDATES`], and at least one must remain after exclusions).
    pub candidates: &'a [u64],
    /// Items not to show in this request.
    pub exclude: &'a [u64],
    /// Slots to fill, `1..=`[`MAX_SLATE_SIZE`] (fewer if fewer candidates
    /// remain).
    pub slate_size: usize,
    /// The host's per-user score of each candidate, aligned with
    /// `candidates` (NaN or infinity is [`Error::NonFinite`]). With
    /// [`Blend::Learned`] (the default) any finite values, on any scale;
    /// with the other blends click probabilities in [0, 1].
    pub host_scores: Option<&'a [f32]>,
    /// How to choose.
    pub policy: Policy,
    /// Host clock in seconds (for decay); `None` means no decay is applied.
    pub now: Option<f64>,
}

impl<'a> Request<'a> {
    /// In-slate TS of `slate_size` from `candidates` for `user` in `segment`.
    pub fn new(
        user: Option<u64>,
        segment: Option<SegmentId>,
        candidates: &'a [u64],
        slate_size: usize,
    ) -> Self {
        Request {
            user,
            segment,
            candidates,
            exclude: &[],
            slate_size,
            host_scores: None,
            policy: Policy::InSlateThompson,
            now: None,
        }
    }
}

/// A chosen slate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Pass to [`SlateBandit::feedback`]. Unique across restarts and
    /// replicas (see the module docs); opaque, not consecutive.
    pub id: u64,
    /// Items in slot order (at least one).
    pub items: Vec<u64>,
    /// The value each slot used (blended draw, or mean for greedy/random;
    /// with [`Blend::Learned`] and host scores, the blended click
    /// probability `σ(logit(draw) + a + c · z)`).
    pub scores: Vec<f64>,
}

/// Clicks on a shown slate.
#[derive(Debug, Clone, Copy)]
pub struct Feedback<'a> {
    /// The decision.
    pub decision: u64,
    /// Clicked slots (0-based), each at most once and among the visible
    /// slots.
    pub clicks: &'a [usize],
    /// Slots that were on screen, the first ones of the slate (`None`, or
    /// more than the slate has: all).
    pub visible: Option<usize>,
    /// Host clock in seconds (for decay).
    pub now: Option<f64>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Decisions made (by this state's lineage: restored from snapshots).
    pub decisions: u64,
    /// Feedback events applied.
    pub feedback_applied: u64,
    /// Feedback for unknown, already used or evicted decisions.
    pub rejected_unknown_decision: u64,
    /// Feedback refused for its clicks: a slot outside the slate or the
    /// visible slots, or a slot clicked twice.
    pub rejected_bad_position: u64,
    /// Pending decisions evicted before feedback came.
    pub evicted_decisions: u64,
    /// Users whose state was evicted.
    pub evicted_users: u64,
    /// Clicks recorded (all levels see the same clicks; never more than
    /// `impressions`).
    pub clicks: u64,
    /// Slate slots recorded as shown.
    pub impressions: u64,
    /// Deltas from other replicas merged (see [`SlateBandit::merge_delta`]).
    pub merged_deltas: u64,
    /// Feedback events those deltas carried.
    pub merged_feedback: u64,
}

const SHARDS: usize = 32;

fn shard_of(key: u64) -> usize {
    // Fibonacci hashing spreads sequential ids across shards.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % SHARDS
}

#[derive(Debug, Default)]
struct UserState {
    items: HashMap<u64, Counts>,
    evidence: Counts,
    tick: u64,
}

impl UserState {
    /// The counts of `item`, made room for (the least examined item is
    /// evicted when the user already holds `max_items`).
    fn item_mut(&mut self, item: u64, max_items: usize) -> &mut Counts {
        if !self.items.contains_key(&item) && self.items.len() >= max_items {
            if let Some((&victim, _)) = self
                .items
                .iter()
                .min_by(|a, b| a.1.total().total_cmp(&b.1.total()).then(a.0.cmp(b.0)))
            {
                self.items.remove(&victim);
            }
        }
        self.items.entry(item).or_default()
    }
}

impl UserJournal {
    fn item_mut(&mut self, item: u64) -> &mut Counts {
        let i = match self.items.iter().position(|e| e.0 == item) {
            Some(i) => i,
            None => {
                self.items.push((item, Counts::default()));
                self.items.len() - 1
            }
        };
        &mut self.items[i].1
    }
}

#[derive(Debug, Default)]
struct UserShard {
    users: HashMap<u64, UserState>,
    /// Last update tick → user, for least-recently-updated eviction.
    order: BTreeMap<u64, u64>,
    tick: u64,
    /// Changes since the last [`SlateBandit::export_delta`] (when journaling;
    /// not evicted with the user, so replicas still learn from evicted users).
    journal: HashMap<u64, UserJournal>,
}

/// A user's count changes since the last delta.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct UserJournal {
    evidence: Counts,
    items: Vec<(u64, Counts)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    user: Option<u64>,
    segment: Option<SegmentId>,
    items: Vec<u64>,
    /// Per slot, what the learned blend fits on: the logit of the item's
    /// posterior mean and its standardised host score (only with
    /// [`Blend::Learned`] and host scores).
    #[serde(default)]
    host: Option<Vec<(f32, f32)>>,
}

#[derive(Debug, Default)]
struct PendingShard {
    open: HashMap<u64, Pending>,
    order: VecDeque<u64>,
}

/// Lock-free counters.
#[derive(Debug, Default)]
struct Counters {
    decisions: AtomicU64,
    applied: AtomicU64,
    unknown: AtomicU64,
    bad_position: AtomicU64,
    evicted_decisions: AtomicU64,
    evicted_users: AtomicU64,
    clicks: AtomicU64,
    impressions: AtomicU64,
    merged_deltas: AtomicU64,
    merged_feedback: AtomicU64,
}

/// An item's counts: over all segments, and per segment (sorted by segment
/// id). One entry per item, so a decision finds every level of a candidate
/// with one lookup.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct ItemCounts {
    pooled: Counts,
    segments: Vec<(SegmentId, Counts)>,
    /// Changes since the last [`SlateBandit::export_delta`] (when journaling;
    /// its own `journal` is always `None`).
    journal: Option<Box<ItemCounts>>,
}

impl ItemCounts {
    fn segment(&self, segment: SegmentId) -> Option<&Counts> {
        self.segments
            .binary_search_by_key(&segment, |e| e.0)
            .ok()
            .map(|i| &self.segments[i].1)
    }

    /// Adds an observation to the pooled level and, if given, a segment.
    fn add(&mut self, segment: Option<SegmentId>, succ: f64, fail: f64, now: f64, h: Option<f64>) {
        self.pooled.add(succ, fail, now, h);
        if let Some(s) = segment {
            self.segment_mut(s).add(succ, fail, now, h);
        }
    }

    /// Re-attributes segment counts after a rebuild (see
    /// [`SlateBandit::migrate_segments`]): segments in `from` are split by
    /// `shares`; others stay.
    fn migrate(
        &mut self,
        from: &HashMap<SegmentId, usize>,
        shares: &HashMap<SegmentId, Vec<(SegmentId, f64)>>,
    ) {
        let old = std::mem::take(&mut self.segments);
        let mut moved: Vec<(SegmentId, Counts)> = Vec::new();
        for (s, c) in old {
            if !from.contains_key(&s) {
                moved.push((s, c));
                continue;
            }
            for &(new, share) in shares.get(&s).map(Vec::as_slice).unwrap_or(&[]) {
                moved.push((
                    new,
                    Counts {
                        successes: c.successes * share,
                        failures: c.failures * share,
                        time: c.time,
                    },
                ));
            }
        }
        for (s, c) in moved {
            let e = self.segment_mut(s);
            e.successes = (e.successes + c.successes).min(limits::MAX_COUNT);
            e.failures = (e.failures + c.failures).min(limits::MAX_COUNT);
            e.time = e.time.max(c.time);
        }
    }

    fn segment_mut(&mut self, segment: SegmentId) -> &mut Counts {
        let i = match self.segments.binary_search_by_key(&segment, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                self.segments.insert(i, (segment, Counts::default()));
                i
            }
        };
        &mut self.segments[i].1
    }
}

/// The slate bandit: posteriors, pending decisions and per-user state.
pub struct SlateBandit {
    config: BanditConfig,
    /// Per-item counts (pooled and per segment), sharded by item.
    items: Vec<RwLock<HashMap<u64, ItemCounts>>>,
    /// Category counts over all segments.
    categories: RwLock<HashMap<u32, Counts>>,
    /// Category count changes since the last delta (when journaling).
    category_journal: Mutex<HashMap<u32, Counts>>,
    item_category: RwLock<HashMap<u64, u32>>,
    users: Vec<RwLock<UserShard>>,
    pending: Vec<Mutex<PendingShard>>,
    /// The sequence part of the last decision id issued.
    last_sequence: AtomicU64,
    counters: Counters,
    replication: state::Replication,
    /// The learned blend's fit (updated in feedback).
    host_model: Mutex<HostModel>,
    /// The weights decisions use, `a`, `b` (at least [`host::MIN_B`]) and
    /// the shrunk `c` ([`HostModel::host_weight`]), as `f64` bits, read
    /// without a lock.
    host_params: [AtomicU64; 3],
}

impl std::fmt::Debug for SlateBandit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlateBandit")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The posterior levels read for one decision.
struct Levels<'a> {
    items: Vec<&'a HashMap<u64, ItemCounts>>,
    categories: &'a HashMap<u32, Counts>,
    item_category: &'a HashMap<u64, u32>,
    user: Option<&'a UserState>,
}

/// The prior standard deviation of the learned blend's weight (1 for the
/// other blends, whose model is kept but unused).
fn config_prior_sd(config: &BanditConfig) -> f64 {
    match config.blend {
        Blend::Learned { prior_sd, .. } => prior_sd,
        _ => 1.0,
    }
}

/// A replica id must fit the low [`REPLICA_BITS`] bits of a decision id.
pub(crate) fn check_replica_id(key: &str, id: u64) -> Result<()> {
    if id <= MAX_REPLICA_ID {
        return Ok(());
    }
    Err(Error::config(
        key,
        format!(
            "must be in 0..={MAX_REPLICA_ID}, got {id} (decision ids carry the replica id in \
             their low {REPLICA_BITS} bits)"
        ),
    ))
}

/// The user level (see the module docs): the segment's posterior without
/// the user's own counts (leave-one-out: mean `m`, strength `S`) becomes the
/// user's prior, at a strength that gives way to the user's evidence at the
/// fastest rate that keeps exposure monotone — each click takes `1 / m`
/// pseudo-counts off it, each non-click `1 / (1 − m)` — down to
/// `min(user_strength, S)`; then the user's counts are added.
///
/// Why this rate: a click then never lowers α nor raises β, and a non-click
/// never raises α nor lowers β, so the item's posterior for the user moves
/// in the likelihood-ratio order in the direction of the evidence, and every
/// policy's chance of showing the item moves with it. A user with no counts
/// gets exactly the segment's posterior.
fn user_prior(segment_post: Beta, user: &Counts, user_strength: f64) -> Beta {
    if user.total() == 0.0 {
        return segment_post;
    }
    // The segment's counts include the user's (when they were recorded in
    // this segment): take them out so they count once.
    let rest = Beta::new(
        segment_post.alpha - user.successes,
        segment_post.beta - user.failures,
    );
    let (m, strength) = (rest.mean(), rest.strength());
    let given = user.successes / m + user.failures / (1.0 - m);
    let kappa = (strength - given).max(user_strength.min(strength));
    Beta::with_mean(m, kappa)
}

/// What one level of the hierarchy contributes to a posterior: its prior
/// (handed down by the level above, see the module docs), its own counts,
/// and the posterior they make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The level's prior.
    pub prior: Beta,
    /// The level's own counts (decayed to the time asked).
    pub counts: Counts,
    /// `prior` plus `counts`.
    pub posterior: Beta,
}

impl Level {
    #[inline]
    fn new(prior: Beta, counts: Counts) -> Self {
        Level {
            prior,
            counts,
            posterior: prior.plus(&counts),
        }
    }
}

/// An item's posterior for a segment and a user, level by level (see
/// [`SlateBandit::explain`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readout {
    /// Pooled over all segments (`None` with [`Hierarchy::UserOnly`]).
    pub pooled: Option<Level>,
    /// The segment's level (`None` without a segment, or with
    /// [`Hierarchy::UserOnly`]).
    pub segment: Option<Level>,
    /// The user's level (`None` without a user, for a user with no counts
    /// of the item, or with [`Hierarchy::SegmentOnly`]: then the level
    /// above is the posterior).
    pub user: Option<Level>,
    /// The posterior decisions draw from: the lowest level's.
    pub posterior: Beta,
}

impl SlateBandit {
    /// A bandit with no data.
    pub fn new(config: BanditConfig) -> Result<Self> {
        config.validate()?;
        Ok(SlateBandit {
            items: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::default()))
                .collect(),
            categories: RwLock::new(HashMap::default()),
            category_journal: Mutex::new(HashMap::default()),
            item_category: RwLock::new(HashMap::default()),
            users: (0..SHARDS)
                .map(|_| RwLock::new(UserShard::default()))
                .collect(),
            pending: (0..SHARDS)
                .map(|_| Mutex::new(PendingShard::default()))
                .collect(),
            last_sequence: AtomicU64::new(0),
            counters: Counters::default(),
            replication: state::Replication::default(),
            host_model: Mutex::new(HostModel::new(config_prior_sd(&config))),
            host_params: [
                AtomicU64::new(0),
                AtomicU64::new(1f64.to_bits()),
                AtomicU64::new(0),
            ],
            config,
        })
    }

    /// The learned blend's fit (the prior when it has seen nothing).
    pub fn host_model(&self) -> HostModel {
        *self.host_model.lock()
    }

    /// Replaces the learned blend's fit (restoring a state).
    fn set_host_model(&self, model: HostModel) {
        *self.host_model.lock() = model;
        self.publish_host(&model);
    }

    fn publish_host(&self, model: &HostModel) {
        self.host_params[0].store(model.a.to_bits(), Ordering::Relaxed);
        self.host_params[1].store(model.posterior_weight().to_bits(), Ordering::Relaxed);
        self.host_params[2].store(model.host_weight().to_bits(), Ordering::Relaxed);
    }

    /// The configuration.
    pub fn config(&self) -> &BanditConfig {
        &self.config
    }

    /// Gives items a category (group) whose pooled mean is their prior.
    pub fn set_item_categories(&self, items: &[(u64, u32)]) {
        let mut map = self.item_category.write();
        map.extend(items.iter().copied());
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            decisions: get(&c.decisions),
            feedback_applied: get(&c.applied),
            rejected_unknown_decision: get(&c.unknown),
            rejected_bad_position: get(&c.bad_position),
            evicted_decisions: get(&c.evicted_decisions),
            evicted_users: get(&c.evicted_users),
            clicks: get(&c.clicks),
            impressions: get(&c.impressions),
            merged_deltas: get(&c.merged_deltas),
            merged_feedback: get(&c.merged_feedback),
        }
    }

    /// Chooses a slate of at least one item. Refused requests (see the
    /// fields of [`Request`]: an empty or oversized candidate list, every
    /// candidate excluded, a slate size outside `1..=MAX_SLATE_SIZE`, bad
    /// host scores or clock) are errors that record no decision.
    pub fn decide(&self, request: &Request<'_>) -> Result<Decision> {
        if request.slate_size == 0 || request.slate_size > MAX_SLATE_SIZE {
            return Err(Error::invalid(
                "slate_size",
                format!(
                    "{} is out of range: a slate has 1 to {MAX_SLATE_SIZE} slots",
                    request.slate_size
                ),
            ));
        }
        if request.candidates.len() > MAX_CANDIDATES {
            return Err(Error::invalid(
                "candidates",
                format!(
                    "{} candidates in one request; at most {MAX_CANDIDATES} are accepted \
                     (narrow them down before asking for a slate)",
                    request.candidates.len()
                ),
            ));
        }
        if let Some(h) = request.host_scores {
            if h.len() != request.candidates.len() {
                return Err(Error::ShapeMismatch {
                    input: "host_scores".into(),
                    expected: format!("{} values (one per candidate)", request.candidates.len()),
                    got: format!("{} values", h.len()),
                });
            }
            if let Some(position) = h.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    what: "host_scores".into(),
                    position,
                });
            }
            let learned = matches!(self.config.blend, Blend::Learned { .. });
            if let Some(p) = h.iter().position(|x| !learned && !(0.0..=1.0).contains(x)) {
                return Err(Error::invalid(
                    "host_scores",
                    format!(
                        "score {} at position {p} is not a probability in [0, 1]",
                        h[p]
                    ),
                ));
            }
        }
        if request.now.is_some_and(|t| !t.is_finite()) {
            return Err(Error::invalid("now", "must be finite"));
        }
        // Eligible candidates: first occurrence, not excluded.
        let excluded: HashSet<u64> = request.exclude.iter().copied().collect();
        let mut seen: HashSet<u64> =
            HashSet::with_capacity_and_hasher(request.candidates.len(), Default::default());
        let eligible: Vec<usize> = (0..request.candidates.len())
            .filter(|&i| {
                let item = request.candidates[i];
                !excluded.contains(&item) && seen.insert(item)
            })
            .collect();
        if eligible.is_empty() {
            return Err(Error::invalid(
                "candidates",
                if request.candidates.is_empty() {
                    "none given: a slate needs at least one candidate".to_string()
                } else {
                    format!(
                        "all {} candidates were excluded (or repeat excluded items); \
                         a slate needs at least one candidate left",
                        request.candidates.len()
                    )
                },
            ));
        }
        // Nothing fails from here on: the id and the ordinal are spent only
        // on decisions that are made.
        let id = self.next_decision_id()?;
        // The ordinal (1, 2, ... over the state's lineage), not the id, seeds
        // the draws; 1, 2, ... were also the ids of older versions, so their
        // simulations replay unchanged.
        let ordinal = self.counters.decisions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rng =
            SmallRng::seed_from_u64(self.config.seed ^ ordinal.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let now = request.now.unwrap_or(f64::NEG_INFINITY);
        // The learned blend: standardised scores and the current fit.
        let learned = match (self.config.blend, request.host_scores) {
            (Blend::Learned { .. }, Some(h)) => {
                let param = |i: usize| f64::from_bits(self.host_params[i].load(Ordering::Relaxed));
                Some((
                    host::standardize(h, &eligible),
                    param(0),
                    param(1),
                    param(2),
                ))
            }
            _ => None,
        };
        let (arms, mix) = self.with_levels(request.user, |levels| {
            let mix = match learned {
                Some((_, _, b, _)) => Mix::Logit(b),
                None => Mix::Linear(self.weight(levels, now, request.host_scores.is_some())),
            };
            let arms: Vec<Arm> = eligible
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    let host = request.host_scores.map(|h| f64::from(h[i]));
                    Arm {
                        posterior: self.posterior(
                            levels,
                            request.segment,
                            request.candidates[i],
                            now,
                            host,
                        ),
                        host: match (&learned, self.config.blend) {
                            (Some((z, _, _, c)), _) => c * z[k],
                            (None, Blend::PriorMean { .. } | Blend::Learned { .. }) => 0.0,
                            (None, _) => host.unwrap_or(0.0),
                        },
                    }
                })
                .collect();
            (arms, mix)
        });
        let chosen = choose(
            request.policy,
            &arms,
            request.slate_size,
            mix,
            self.config.prune,
            &mut rng,
        );
        let items: Vec<u64> = chosen
            .iter()
            .map(|&(a, _)| request.candidates[eligible[a]])
            .collect();
        let (scores, host) = match &learned {
            Some((z, a, _, _)) => (
                chosen.iter().map(|&(_, v)| host::sigmoid(v + a)).collect(),
                Some(
                    chosen
                        .iter()
                        .map(|&(k, _)| (logit(arms[k].posterior.mean()) as f32, z[k] as f32))
                        .collect(),
                ),
            ),
            None => (chosen.iter().map(|&(_, v)| v).collect(), None),
        };
        self.remember(
            id,
            Pending {
                user: request.user,
                segment: request.segment,
                items: items.clone(),
                host,
            },
        );
        Ok(Decision { id, items, scores })
    }

    /// A new decision id: the next sequence number, at least the clock's
    /// floor, with the replica id in the low bits (see the module docs).
    fn next_decision_id(&self) -> Result<u64> {
        let floor = clock_floor();
        let mut last = self.last_sequence.load(Ordering::Relaxed);
        loop {
            let next = last.saturating_add(1).max(floor);
            if next > MAX_SEQUENCE {
                return Err(Error::invalid(
                    "decision id",
                    "the decision id sequence is exhausted (the clock is past the year 2112)",
                ));
            }
            match self.last_sequence.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok((next << REPLICA_BITS) | self.config.replica_id),
                Err(current) => last = current,
            }
        }
    }

    /// Weight of the posterior against host scores.
    fn weight(&self, levels: &Levels<'_>, now: f64, has_host: bool) -> f64 {
        if !has_host {
            return 1.0;
        }
        match self.config.blend {
            Blend::Fixed(w) => w,
            Blend::PriorMean { .. } | Blend::Learned { .. } => 1.0,
            Blend::Evidence {
                w_min,
                w_max,
                n_half,
            } => {
                let n = levels
                    .user
                    .map_or(0.0, |u| u.evidence.at(now, self.config.half_life).total());
                w_min + (w_max - w_min) * n / (n + n_half)
            }
        }
    }

    /// The posterior of `item` for this request (see the module docs).
    #[inline]
    fn posterior(
        &self,
        levels: &Levels<'_>,
        segment: Option<SegmentId>,
        item: u64,
        now: f64,
        host: Option<f64>,
    ) -> Beta {
        self.readout(levels, segment, item, now, host).posterior
    }

    /// Every level of `item`'s posterior for this request (see the module
    /// docs); [`posterior`](Self::posterior) is its last line.
    #[inline]
    fn readout(
        &self,
        levels: &Levels<'_>,
        segment: Option<SegmentId>,
        item: u64,
        now: f64,
        host: Option<f64>,
    ) -> Readout {
        let c = &self.config;
        let h = c.half_life;
        let base = Beta::new(c.prior_alpha, c.prior_beta);
        let user_counts = levels
            .user
            .and_then(|u| u.items.get(&item))
            .map(|x| x.at(now, h));
        if c.hierarchy == Hierarchy::UserOnly {
            let counts = user_counts.unwrap_or_default();
            let user = Level::new(base, counts);
            return Readout {
                pooled: None,
                segment: None,
                posterior: user.posterior,
                user: Some(user),
            };
        }
        // Level 1: pooled, from the host's prior, the category's, or the base.
        let top = match (c.blend, host) {
            (Blend::PriorMean { strength }, Some(host)) => Beta::with_mean(host, strength),
            _ => match levels.item_category.get(&item) {
                Some(cat) if c.category_strength > 0.0 => {
                    let cat_counts = levels
                        .categories
                        .get(cat)
                        .map(|x| x.at(now, h))
                        .unwrap_or_default();
                    let cat_post = base.plus(&cat_counts);
                    Beta::with_mean(
                        cat_post.mean(),
                        c.category_strength.min(cat_post.strength()),
                    )
                }
                _ => base,
            },
        };
        let entry = levels.items[shard_of(item)].get(&item);
        let pooled_counts = entry.map(|e| e.pooled.at(now, h)).unwrap_or_default();
        let pooled = Level::new(top, pooled_counts);
        // Level 2: segment. Its prior is the pooled posterior of the *other*
        // segments (leave-one-out), so a segment's own clicks count once.
        let segment_level = segment.map(|s| {
            let counts = entry
                .and_then(|e| e.segment(s))
                .map(|x| x.at(now, h))
                .unwrap_or_default();
            let others = Counts {
                successes: (pooled_counts.successes - counts.successes).max(0.0),
                failures: (pooled_counts.failures - counts.failures).max(0.0),
                time: pooled_counts.time,
            };
            let prior = match c.pooling {
                Pooling::Evidence => {
                    // The others' evidence, scaled down to at most
                    // `pooling_strength` observations, on the full prior.
                    let n = others.total();
                    let r = if n > 0.0 {
                        (c.pooling_strength / n).min(1.0)
                    } else {
                        0.0
                    };
                    top.plus(&Counts {
                        successes: others.successes * r,
                        failures: others.failures * r,
                        time: others.time,
                    })
                }
                Pooling::Mean if c.pooling_strength > 0.0 => {
                    let pooled = top.plus(&others);
                    Beta::with_mean(pooled.mean(), c.pooling_strength.min(pooled.strength()))
                }
                Pooling::Mean => top,
            };
            Level::new(prior, counts)
        });
        let segment_post = segment_level.map_or(pooled.posterior, |l| l.posterior);
        let user = match user_counts {
            Some(counts) if c.hierarchy == Hierarchy::Full => {
                let prior = user_prior(segment_post, &counts, c.user_strength);
                Some(Level::new(prior, counts))
            }
            _ => None,
        };
        Readout {
            posterior: user.map_or(segment_post, |l| l.posterior),
            pooled: Some(pooled),
            segment: segment_level,
            user,
        }
    }

    fn remember(&self, id: u64, pending: Pending) {
        let per_shard = (self.config.max_pending / SHARDS).max(1);
        let mut shard = self.pending[shard_of(id)].lock();
        while shard.open.len() >= per_shard {
            match shard.order.pop_front() {
                Some(old) => {
                    if shard.open.remove(&old).is_some() {
                        self.counters
                            .evicted_decisions
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => break,
            }
        }
        shard.open.insert(id, pending);
        shard.order.push_back(id);
    }

    /// Records the clicks on a decided slate (once per decision).
    ///
    /// Refused, counted in [`Stats`] and changing nothing: an unknown,
    /// evicted or already used decision ([`Error::UnknownDecision`]); a
    /// clicked slot outside the slate or beyond the visible ones, or clicked
    /// twice (an [`Error::InvalidArgument`] naming `clicks`); a non-finite
    /// `now`. A refused feedback does not use up the decision: send it again
    /// with correct arguments.
    pub fn feedback(&self, feedback: &Feedback<'_>) -> Result<()> {
        if feedback.now.is_some_and(|t| !t.is_finite()) {
            return Err(Error::invalid("now", "must be finite"));
        }
        let (pending, visible, updates) = {
            let mut shard = self.pending[shard_of(feedback.decision)].lock();
            let Some(p) = shard.open.get(&feedback.decision) else {
                self.counters.unknown.fetch_add(1, Ordering::Relaxed);
                return Err(Error::UnknownDecision(feedback.decision));
            };
            let len = p.items.len();
            let visible = feedback.visible.map_or(len, |v| v.min(len));
            // Checked before the decision is taken out: a refusal keeps it open.
            let updates = match self
                .config
                .click_model
                .updates(len, feedback.clicks, visible)
            {
                Ok(u) => u,
                Err(e) => {
                    self.counters.bad_position.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let p = p.clone();
            shard.open.remove(&feedback.decision);
            (p, visible, updates)
        };
        let observations: Vec<(u64, f64, f64)> = pending
            .items
            .iter()
            .zip(&updates)
            .filter(|(_, (s, f))| s + f > 0.0)
            .map(|(&item, &(s, f))| (item, s, f))
            .collect();
        self.apply(
            pending.segment,
            pending.user,
            &observations,
            feedback.now.unwrap_or(f64::NEG_INFINITY),
        );
        if let (Some(features), Blend::Learned { prior_sd, memory }) =
            (&pending.host, self.config.blend)
        {
            let mut model = self.host_model.lock();
            for (&(offset, z), &(s, f)) in features.iter().zip(&updates) {
                model.update(f64::from(offset), f64::from(z), s, f, prior_sd, memory);
            }
            self.publish_host(&model);
        }
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
        if self.config.record_deltas {
            self.replication
                .journal_events
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .clicks
            .fetch_add(feedback.clicks.len() as u64, Ordering::Relaxed);
        // `updates` checked that the clicks are distinct visible slots, so
        // clicks never outnumber impressions.
        self.counters
            .impressions
            .fetch_add(visible as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Records observations that did not come from [`decide`](Self::decide)
    /// (e.g. logs of another policy): `(item, successes, failures)` per item,
    /// already weighted by the click model (each finite, ≥ 0 and at most
    /// [`MAX_COUNT`](crate::limits::MAX_COUNT)).
    pub fn record(
        &self,
        segment: Option<SegmentId>,
        user: Option<u64>,
        observations: &[(u64, f64, f64)],
        now: Option<f64>,
    ) -> Result<()> {
        if observations
            .iter()
            .any(|&(_, s, f)| !(limits::valid_count(s) && limits::valid_count(f)))
        {
            return Err(Error::invalid(
                "observations",
                "successes and failures must be finite, >= 0 and at most 2^53",
            ));
        }
        if now.is_some_and(|t| !t.is_finite()) {
            return Err(Error::invalid("now", "must be finite"));
        }
        self.apply(
            segment,
            user,
            observations,
            now.unwrap_or(f64::NEG_INFINITY),
        );
        Ok(())
    }

    fn apply(
        &self,
        segment: Option<SegmentId>,
        user: Option<u64>,
        observations: &[(u64, f64, f64)],
        now: f64,
    ) {
        let h = self.config.half_life;
        let journal = self.config.record_deltas;
        for &(item, succ, fail) in observations {
            let mut shard = self.items[shard_of(item)].write();
            let entry = shard.entry(item).or_default();
            entry.add(segment, succ, fail, now, h);
            if journal {
                entry
                    .journal
                    .get_or_insert_default()
                    .add(segment, succ, fail, now, h);
            }
        }
        {
            let item_category = self.item_category.read();
            if !item_category.is_empty() {
                let mut categories = self.categories.write();
                let mut category_journal = journal.then(|| self.category_journal.lock());
                for &(item, succ, fail) in observations {
                    if let Some(&c) = item_category.get(&item) {
                        categories.entry(c).or_default().add(succ, fail, now, h);
                        if let Some(j) = category_journal.as_mut() {
                            j.entry(c).or_default().add(succ, fail, now, h);
                        }
                    }
                }
            }
        }
        if let Some(u) = user {
            self.apply_user(u, observations, now, journal);
        }
    }

    fn apply_user(&self, user: u64, observations: &[(u64, f64, f64)], now: f64, journal: bool) {
        let h = self.config.half_life;
        let mut shard = self.users[shard_of(user)].write();
        let state = self.touch_user(&mut shard, user);
        for &(item, succ, fail) in observations {
            state.evidence.add(succ, fail, now, h);
            state
                .item_mut(item, self.config.max_user_items)
                .add(succ, fail, now, h);
        }
        if journal {
            let j = shard.journal.entry(user).or_default();
            for &(item, succ, fail) in observations {
                j.evidence.add(succ, fail, now, h);
                j.item_mut(item).add(succ, fail, now, h);
            }
        }
    }

    /// `user`'s state, created if new (evicting the least recently updated
    /// user of a full shard), marked as just updated.
    fn touch_user<'s>(&self, shard: &'s mut UserShard, user: u64) -> &'s mut UserState {
        let per_shard = (self.config.max_users / SHARDS).max(1);
        shard.tick += 1;
        let tick = shard.tick;
        if !shard.users.contains_key(&user) {
            while shard.users.len() >= per_shard {
                let Some((_, old)) = shard.order.pop_first() else {
                    break;
                };
                shard.users.remove(&old);
                self.counters.evicted_users.fetch_add(1, Ordering::Relaxed);
            }
        }
        let old_tick = std::mem::replace(&mut shard.users.entry(user).or_default().tick, tick);
        shard.order.remove(&old_tick);
        shard.order.insert(tick, user);
        shard.users.entry(user).or_default()
    }

    /// Counts of an item in a segment (for inspection and tests).
    pub fn segment_counts(&self, segment: SegmentId, item: u64) -> Counts {
        self.items[shard_of(item)]
            .read()
            .get(&item)
            .and_then(|e| e.segment(segment).copied())
            .unwrap_or_default()
    }

    /// Counts of an item over all segments.
    pub fn pooled_counts(&self, item: u64) -> Counts {
        self.items[shard_of(item)]
            .read()
            .get(&item)
            .map(|e| e.pooled)
            .unwrap_or_default()
    }

    /// A user's own counts of an item (`None` if the user has no state).
    pub fn user_counts(&self, user: u64, item: u64) -> Option<Counts> {
        let shard = self.users[shard_of(user)].read();
        shard
            .users
            .get(&user)
            .map(|u| u.items.get(&item).copied().unwrap_or_default())
    }

    /// The posterior a request would use for `item` (without host scores).
    pub fn posterior_of(&self, segment: Option<SegmentId>, user: Option<u64>, item: u64) -> Beta {
        self.with_levels(user, |levels| {
            self.posterior(levels, segment, item, f64::NEG_INFINITY, None)
        })
    }

    /// What `item`'s posterior for `user` in `segment` is made of: each
    /// level's prior, counts and posterior, and the posterior decisions draw
    /// from (without host scores; [`host_model`](Self::host_model) gives
    /// the learned blend's weights). `now` (host clock, seconds) decays the
    /// counts as a decision at that time would.
    pub fn explain(
        &self,
        segment: Option<SegmentId>,
        user: Option<u64>,
        item: u64,
        now: Option<f64>,
    ) -> Result<Readout> {
        if now.is_some_and(|t| !t.is_finite()) {
            return Err(Error::invalid("now", "must be finite"));
        }
        let now = now.unwrap_or(f64::NEG_INFINITY);
        Ok(self.with_levels(user, |levels| {
            self.readout(levels, segment, item, now, None)
        }))
    }

    /// Runs `f` with read access to the levels a request for `user` needs:
    /// the item shards, the categories and one user shard (never a global lock).
    fn with_levels<R>(&self, user: Option<u64>, f: impl FnOnce(&Levels<'_>) -> R) -> R {
        let item_guards: Vec<_> = self.items.iter().map(|s| s.read()).collect();
        let categories = self.categories.read();
        let item_category = self.item_category.read();
        let user_guard = user.map(|u| self.users[shard_of(u)].read());
        let levels = Levels {
            items: item_guards.iter().map(|g| &**g).collect(),
            categories: &categories,
            item_category: &item_category,
            user: match (&user_guard, user) {
                (Some(g), Some(u)) => g.users.get(&u),
                _ => None,
            },
        };
        f(&levels)
    }

    /// Moves segment counts to rebuilt segments: `overlaps` lists
    /// `(old segment, new segment, shared members)`; each old segment's counts
    /// are split among new segments in proportion to where its members went.
    /// Old segments' counts are replaced by the new ones.
    pub fn migrate_segments(&self, overlaps: &[(SegmentId, SegmentId, usize)]) {
        let mut from: HashMap<SegmentId, usize> = HashMap::default();
        for &(old, _, n) in overlaps {
            *from.entry(old).or_insert(0) += n;
        }
        // Where each old segment's members went, as shares.
        let mut shares: HashMap<SegmentId, Vec<(SegmentId, f64)>> = HashMap::default();
        for &(old, new, n) in overlaps {
            let total = from.get(&old).copied().unwrap_or(0);
            if n > 0 && total > 0 {
                shares
                    .entry(old)
                    .or_default()
                    .push((new, n as f64 / total as f64));
            }
        }
        for shard in &self.items {
            for entry in shard.write().values_mut() {
                entry.migrate(&from, &shares);
                if let Some(j) = entry.journal.as_mut() {
                    j.migrate(&from, &shares);
                }
            }
        }
    }
}
