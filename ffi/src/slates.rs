//! Slates (decide, feedback) and replica deltas through the C ABI.

use groupwise_core::bandit::{Delta, Feedback, Policy, Request};

use crate::engine::gw_engine;
use crate::error::{gw_result, FfiError};
use crate::guard::{guard, report_size, slice, Out, OutSlice};
use crate::handle::{self, Handle};

/// Slate policy: in-slate Thompson sampling (a fresh draw per slot; default).
pub const GW_POLICY_IN_SLATE_TS: u32 = 0;
/// Slate policy: standard Thompson sampling (one draw, top K).
pub const GW_POLICY_TS: u32 = 1;
/// Slate policy: greedy by posterior mean. Ties (equal values, e.g. items
/// nobody has seen) are broken in a random order drawn for each decision
/// from the engine's seed, never by candidate order; so are ties between
/// equal host scores under every policy.
pub const GW_POLICY_GREEDY: u32 = 2;
/// Slate policy: uniformly random (for logging and evaluation).
pub const GW_POLICY_RANDOM: u32 = 3;

/// The most slots a slate may have (`slate_size`); more is
/// `GW_ERR_INVALID_ARGUMENT`.
pub const GW_MAX_SLATE_SIZE: usize = 100;

/// The most candidates one request may carry (`n_candidates`, duplicates
/// included); more is `GW_ERR_INVALID_ARGUMENT`.
pub const GW_MAX_CANDIDATES: usize = 100_000;

/// The largest `replica_id` of an engine's configuration: decision ids carry
/// it in their low 10 bits (see `gw_engine_decide`).
pub const GW_MAX_REPLICA_ID: u64 = 1023;

/// `visible` value of `gw_engine_feedback` meaning "every slot was shown"
/// (`SIZE_MAX`; the header defines it as `GW_ALL_VISIBLE` through
/// cbindgen.toml, since cbindgen does not export `usize::MAX`).
const GW_ALL_VISIBLE: usize = usize::MAX;

fn policy_of(code: u32) -> Result<Policy, FfiError> {
    Ok(match code {
        GW_POLICY_IN_SLATE_TS => Policy::InSlateThompson,
        GW_POLICY_TS => Policy::Thompson,
        GW_POLICY_GREEDY => Policy::Greedy,
        GW_POLICY_RANDOM => Policy::Random,
        other => {
            return Err(FfiError::invalid(
                "policy",
                format!("{other} is not a GW_POLICY_* value"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use groupwise_core::bandit::{MAX_CANDIDATES, MAX_REPLICA_ID, MAX_SLATE_SIZE};

    #[test]
    fn the_header_limits_are_the_core_limits() {
        assert_eq!(super::GW_MAX_SLATE_SIZE, MAX_SLATE_SIZE);
        assert_eq!(super::GW_MAX_CANDIDATES, MAX_CANDIDATES);
        assert_eq!(super::GW_MAX_REPLICA_ID, MAX_REPLICA_ID);
    }
}

/// A request for a slate (see `gw_engine_decide`). Zero-initialise it and
/// set what you need: `{0}` plus candidates and a slate size is in-slate
/// Thompson sampling for anonymous traffic on the pooled posteriors.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct gw_slate_request {
    /// The user (when `has_user`): its own evidence, its segment and the
    /// host-score weight.
    pub user: u64,
    /// Whether `user` is set.
    pub has_user: bool,
    /// The segment (when `has_segment`), one the engine serves; otherwise
    /// the user's segment.
    pub segment: u32,
    /// Whether `segment` is set.
    pub has_segment: bool,
    /// The host's candidate items (duplicates are ignored).
    pub candidates: *const u64,
    /// Number of candidates, at most `GW_MAX_CANDIDATES`; at least one must
    /// remain after `exclude`.
    pub n_candidates: usize,
    /// Items not to show (may be NULL with 0).
    pub exclude: *const u64,
    /// Number of excluded items.
    pub n_exclude: usize,
    /// The host's per-candidate scores, aligned with `candidates` (NULL
    /// with 0 for none; else exactly `n_candidates`; NaN or infinity is
    /// `GW_ERR_NON_FINITE`). With the default learned blend any finite
    /// values on any scale: the engine learns from the clicks how much they
    /// predict (the README's "Host scores"); with the `Evidence`, `Fixed`
    /// and `PriorMean` blends, probabilities in [0, 1].
    pub host_scores: *const f32,
    /// Number of host scores.
    pub n_host_scores: usize,
    /// Slots to fill, 1 to `GW_MAX_SLATE_SIZE`.
    pub slate_size: usize,
    /// A `GW_POLICY_*`.
    pub policy: u32,
    /// Host clock in seconds (when `has_now`), for decay.
    pub now: f64,
    /// Whether `now` is set.
    pub has_now: bool,
}

/// Chooses a slate: writes the items in slot order and the value each slot
/// used (parallel arrays) and the decision id for `gw_engine_feedback`.
/// The buffers need room for min(`slate_size`, `n_candidates`) items; with
/// less, `GW_ERR_BUFFER_TOO_SMALL` reports that bound in `*out_len` and no
/// decision is made. On success `*out_len` is the slate's length, at least 1
/// (fewer than `slate_size` when exclusions and duplicates leave fewer
/// candidates).
///
/// Refused, with no decision recorded: no candidate left after `exclude`
/// and duplicates, more than `GW_MAX_CANDIDATES` candidates, or a
/// `slate_size` of 0 or above `GW_MAX_SLATE_SIZE` (`GW_ERR_INVALID_ARGUMENT`
/// naming `candidates` or `slate_size`); a NaN or infinite host score
/// (`GW_ERR_NON_FINITE`); a segment the engine does not serve, or any
/// segment before `gw_engine_build_segments` (`GW_ERR_UNKNOWN_SEGMENT`).
///
/// Decision ids are unique across restarts and replicas: an id is
/// `(sequence << 10) | replica_id` (replica 0 without a `replica_id` in the
/// config), and the sequence increases with every decision and never falls
/// below the wall clock in quarter-microseconds since 1970. An engine loaded
/// from a snapshot, even the same snapshot twice, never reissues an id made
/// before (unless the clock went back), so feedback meant for a slate lost
/// in a crash is `GW_ERR_UNKNOWN_DECISION`, not credited to a new slate. Ids
/// are opaque 64-bit values above 2^53 (keep them as `uint64_t`, not
/// `double`); they increase but are not consecutive. The random draws follow
/// the engine's seed and the number of decisions before this one, not the
/// id: a loaded engine makes the slates the saved one would have made.
///
/// # Safety
/// `engine` is NULL or live; `request` is NULL or a valid request whose
/// pointers hold their lengths; the outputs hold `capacity` elements or are
/// NULL with 0; `out_len` and `out_decision` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_decide(
    engine: *const gw_engine,
    request: *const gw_slate_request,
    out_items: *mut u64,
    out_scores: *mut f64,
    capacity: usize,
    out_len: *mut usize,
    out_decision: *mut u64,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a readable request.
        let r = unsafe { crate::guard::non_null(request, "request")?.as_ref() };
        // SAFETY: the request's pointers hold their lengths (or are NULL with 0).
        let candidates = unsafe { slice(r.candidates, r.n_candidates, "candidates") }?;
        // SAFETY: as above.
        let exclude = unsafe { slice(r.exclude, r.n_exclude, "exclude") }?;
        // SAFETY: as above.
        let host = unsafe { slice(r.host_scores, r.n_host_scores, "host_scores") }?;
        // SAFETY: the caller passes NULL or `capacity` writable elements.
        let items = unsafe { OutSlice::new(out_items, capacity, "out_items") }?;
        // SAFETY: as above.
        let scores = unsafe { OutSlice::new(out_scores, capacity, "out_scores") }?;
        // SAFETY: the caller passes NULL or writable pointers.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        // SAFETY: as above.
        let out_decision = unsafe { Out::new(out_decision, "out_decision") }?;
        // The slate is at most min(slate_size, candidates) long: the room is
        // checked before deciding, so a too-small buffer does not spend a
        // decision (the size query reports that bound). A slate_size above
        // the cap is refused by the decision itself, not sized.
        let most = r.slate_size.min(candidates.len()).min(GW_MAX_SLATE_SIZE);
        if most > capacity {
            return report_size(out_len, most, capacity, "out_items");
        }
        let request = Request {
            user: r.has_user.then_some(r.user),
            segment: r.has_segment.then_some(r.segment),
            candidates,
            exclude,
            slate_size: r.slate_size,
            host_scores: (!host.is_empty() || r.n_host_scores > 0).then_some(host),
            policy: policy_of(r.policy)?,
            now: r.has_now.then_some(r.now),
        };
        let d = engine.decide(&request)?;
        report_size(out_len, d.items.len(), capacity, "out_items")?;
        items.write(&d.items)?;
        scores.write(&d.scores)?;
        out_decision.write(d.id);
        Ok(())
    })
}

/// Records the clicks on a decided slate, once per decision: `clicked`
/// slots (0-based, each at most once) of the `visible` first slots shown
/// (`GW_ALL_VISIBLE`, or more than the slate has: all). `now` (may be NULL)
/// is the host clock in seconds, for decay. Unknown, evicted or repeated
/// decisions are `GW_ERR_UNKNOWN_DECISION`; a slot outside the slate or
/// beyond the visible ones, or clicked twice, is `GW_ERR_INVALID_ARGUMENT`
/// naming `clicks`. A refused feedback changes nothing but the rejection
/// counters and does not use up the decision: call again with correct
/// arguments. So `clicks` never exceeds `impressions` in the stats.
///
/// # Safety
/// `engine` is NULL or live; `clicked` holds `n_clicked` slots (or is NULL
/// with 0); `now` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_feedback(
    engine: *const gw_engine,
    decision: u64,
    clicked: *const usize,
    n_clicked: usize,
    visible: usize,
    now: *const f64,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes `n_clicked` readable slots or NULL with 0.
        let clicks = unsafe { slice(clicked, n_clicked, "clicked") }?;
        // SAFETY: the caller passes NULL or a readable double.
        let now = (!now.is_null()).then(|| unsafe { *now });
        engine.feedback(&Feedback {
            decision,
            clicks,
            visible: (visible != GW_ALL_VISIBLE).then_some(visible),
            now,
        })?;
        Ok(())
    })
}

/// Bytes owned by the library (a replica delta). Read with
/// `gw_bytes_data`, release with exactly one `gw_bytes_free`.
///
/// Thread-safety: immutable; may be read from several threads at once;
/// `gw_bytes_free` must not run concurrently with a read.
#[allow(non_camel_case_types)]
pub struct gw_bytes {
    _private: [u8; 0],
}

// SAFETY: zero-sized, never constructed by Rust; pointers come from
// `handle::into_raw::<gw_bytes>` of a `Vec<u8>`.
unsafe impl Handle for gw_bytes {
    type Target = Vec<u8>;
}

/// Points `*out_data` at the bytes and writes their length; valid until
/// `gw_bytes_free`.
///
/// # Safety
/// `bytes` is NULL or live; the outputs are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_bytes_data(
    bytes: *const gw_bytes,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let b = unsafe { handle::borrow(bytes, "bytes") }?;
        // SAFETY: the caller passes NULL or writable pointers.
        let data = unsafe { Out::new(out_data, "out_data") }?;
        // SAFETY: as above.
        let len = unsafe { Out::new(out_len, "out_len") }?;
        data.write(b.as_ptr());
        len.write(b.len());
        Ok(())
    })
}

/// Releases bytes from the library. NULL is a no-op.
///
/// # Safety
/// `bytes` is NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gw_bytes_free(bytes: *mut gw_bytes) {
    crate::guard::guard_value((), || {
        // SAFETY: the caller passes NULL or a live handle it gives up.
        unsafe { handle::free(bytes) }
    })
}

/// Exports the bandit's count changes since the previous export as the
/// next numbered delta of this replica (needs `replica_id` in the config),
/// framed and checksummed, in `*out_delta` (free with `gw_bytes_free`).
/// Publish the bytes on any transport; other replicas pass them to
/// `gw_engine_merge_delta`.
///
/// # Safety
/// `engine` is NULL or live; `out_delta` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_export_delta(
    engine: *const gw_engine,
    out_delta: *mut *mut gw_bytes,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out_delta, "out_delta") }?;
        let bytes = engine.export_delta()?.to_bytes()?;
        out.write(handle::into_raw::<gw_bytes>(bytes));
        Ok(())
    })
}

/// Merges another replica's delta (`len` bytes from `gw_engine_export_delta`
/// on that replica). `out_merged` (may be NULL) receives false for a
/// duplicate or this replica's own delta (nothing changes). Damaged bytes
/// are `GW_ERR_CORRUPT_SNAPSHOT`.
///
/// # Safety
/// `engine` is NULL or live; `delta` holds `len` bytes (or is NULL with 0);
/// `out_merged` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_merge_delta(
    engine: *const gw_engine,
    delta: *const u8,
    len: usize,
    out_merged: *mut bool,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes `len` readable bytes or NULL with 0.
        let bytes = unsafe { slice(delta, len, "delta") }?;
        // SAFETY: the caller passes NULL or a writable bool.
        let out = unsafe { crate::engine::optional(out_merged, "out_merged") }?;
        let merged = engine.merge_delta(&Delta::from_bytes(bytes)?)?;
        if let Some(out) = out {
            out.write(merged);
        }
        Ok(())
    })
}

/// One level of an item's posterior (see `gw_engine_posterior`): the prior
/// the level above hands down, the level's own counts, and the Beta they
/// make. All zero when the level takes no part (`used` false).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct gw_posterior_level {
    /// Whether the level takes part in the posterior.
    pub used: bool,
    /// The prior's α.
    pub prior_alpha: f64,
    /// The prior's β.
    pub prior_beta: f64,
    /// The level's own clicks (click-model weighted, decayed).
    pub successes: f64,
    /// The level's own examinations without a click (weighted, decayed).
    pub failures: f64,
    /// `prior_alpha + successes`.
    pub alpha: f64,
    /// `prior_beta + failures`.
    pub beta: f64,
}

/// What an item's posterior for a segment and a user is made of (see
/// `gw_engine_posterior`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct gw_posterior {
    /// Pooled over all segments: the base prior (or the item's category's)
    /// plus every segment's counts.
    pub pooled: gw_posterior_level,
    /// The segment: the base prior plus the other segments' counts scaled
    /// to at most `pooling_strength`, plus the segment's own counts.
    pub segment: gw_posterior_level,
    /// The user: the segment's posterior without the user's own counts
    /// (giving way to them at the rate that keeps exposure monotone), plus
    /// the user's counts. Not used for a user with no counts of the item.
    pub user: gw_posterior_level,
    /// α of the posterior decisions draw from (the lowest level used).
    pub alpha: f64,
    /// β of that posterior.
    pub beta: f64,
    /// Its mean, `alpha / (alpha + beta)`.
    pub mean: f64,
    /// The learned host blend's calibration offset `a`.
    pub host_a: f64,
    /// The weight `b` of the posterior's logit in decisions.
    pub host_b: f64,
    /// The weight `c'` of a standardised host score in decisions (the fit's
    /// `c` shrunk by two standard deviations; 0 while the scores have not
    /// shown that they predict clicks).
    pub host_c: f64,
    /// Observations the host blend has learned from.
    pub host_observations: f64,
    /// The blended click probability of the item for a candidate whose
    /// host score is the request's average (z = 0):
    /// `1 / (1 + exp(-(host_a + host_b * logit(mean))))`. For a score `z`
    /// standard deviations above the average, add `host_c * z` inside.
    pub blended: f64,
}

fn level_of(level: Option<groupwise_core::bandit::Level>) -> gw_posterior_level {
    level.map_or_else(gw_posterior_level::default, |l| gw_posterior_level {
        used: true,
        prior_alpha: l.prior.alpha,
        prior_beta: l.prior.beta,
        successes: l.counts.successes,
        failures: l.counts.failures,
        alpha: l.posterior.alpha,
        beta: l.posterior.beta,
    })
}

/// Reads back what the bandit believes about `item` for `user` (when
/// `has_user`) in `segment` (when `has_segment`; otherwise the user's
/// segment, as in `gw_engine_decide`): the Beta parameters each level of
/// the hierarchy contributes, the posterior decisions draw from, and the
/// learned host blend's weights and blended value (`gw_posterior`). `now`
/// (may be NULL) is the host clock in seconds, for decay. For debugging
/// and logging; it records nothing. A segment the engine does not serve is
/// `GW_ERR_UNKNOWN_SEGMENT`; `*out` is written only on success.
///
/// # Safety
/// `engine` is NULL or live; `now` is NULL or readable; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn gw_engine_posterior(
    engine: *const gw_engine,
    item: u64,
    segment: u32,
    has_segment: bool,
    user: u64,
    has_user: bool,
    now: *const f64,
    out: *mut gw_posterior,
) -> gw_result {
    guard(|| {
        // SAFETY: the caller passes NULL or a live handle.
        let engine = unsafe { handle::borrow(engine, "engine") }?;
        // SAFETY: the caller passes NULL or a readable double.
        let now = (!now.is_null()).then(|| unsafe { *now });
        // SAFETY: the caller passes NULL or a writable pointer.
        let out = unsafe { Out::new(out, "out") }?;
        let (r, host) = engine.explain(
            has_segment.then_some(segment),
            has_user.then_some(user),
            item,
            now,
        )?;
        let (alpha, beta) = (r.posterior.alpha, r.posterior.beta);
        let mean = r.posterior.mean();
        let m = mean.clamp(1e-12, 1.0 - 1e-12);
        let b = host.posterior_weight();
        out.write(gw_posterior {
            pooled: level_of(r.pooled),
            segment: level_of(r.segment),
            user: level_of(r.user),
            alpha,
            beta,
            mean,
            host_a: host.a,
            host_b: b,
            host_c: host.host_weight(),
            host_observations: host.observations,
            blended: 1.0 / (1.0 + (-(host.a + b * (m / (1.0 - m)).ln())).exp()),
        });
        Ok(())
    })
}
