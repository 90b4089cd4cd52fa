//! The overhead of a call through the C ABI against the same call in Rust,
//! measured in one run on one engine (target: under 5 %).
//!
//! It builds an engine through `gw_engine_new` (synthetic users: 20,000
//! unit vectors of dimension 64 around 50 cluster centres), upserts the
//! users, builds the segments, and warms the bandit (200 logged impressions
//! of every item in every segment, then 20,000 decisions with feedback).
//! Then, for each call below, it times the Rust call (`Engine::decide`,
//! `Engine::lookalike`, `Engine::stats`) and its C entry point
//! (`gw_engine_decide`, `gw_engine_lookalike`, `gw_engine_get_stats`) on the
//! same engine, in alternating blocks (A B, B A, A B, ...) so that load
//! from elsewhere on the machine hits both paths alike:
//!
//! * decide: a slate of 10 of 1,000 candidates, in-slate Thompson sampling,
//!   for a user (the C path fills a `gw_slate_request` and output buffers).
//!   Every block decides for the same users in the same order; each
//!   block's decisions get their feedback after the block, untimed, so
//!   both paths make as many decisions and the bandit's state stays alike;
//! * lookalike: 200 seeds expanded to 1,000 users, centroid and classifier
//!   scorers;
//! * stats: a call that does almost nothing, to show the fixed cost of a
//!   call through the boundary in nanoseconds.
//!
//! A block is as many calls as take about BLOCK_MS on the Rust path. The
//! overhead is the median over block pairs of C/Rust − 1, with its 95 %
//! confidence interval (order statistics) and interquartile range. It also
//! times the two parts of the C path's extra work alone: the
//! `catch_unwind` boundary around an empty body, and copying a 1,000-user
//! expansion into caller buffers.
//!
//! The C functions are called through function pointers, as a host calling
//! the shared library would (no inlining into the caller).
//!
//! ```text
//! cargo run --release -p groupwise-ffi --example overhead [-- BLOCK_PAIRS [BLOCK_MS]]
//! ```
//!
//! Defaults: 100 pairs of 10 ms blocks. Prints a table, then JSON lines.

use std::hint::black_box;
use std::ptr::null;
use std::time::Instant;

use groupwise::engine::{
    gw_engine, gw_engine_free, gw_engine_get_stats, gw_engine_lookalike, gw_engine_new,
    gw_engine_stats, GW_SCORER_CENTROID, GW_SCORER_CLASSIFIER, GW_SIZE_COUNT,
};
use groupwise::error::last_error;
use groupwise::guard::OutSlice;
use groupwise::gw_result;
use groupwise::handle;
use groupwise::slates::{gw_engine_decide, gw_slate_request, GW_POLICY_IN_SLATE_TS};
use groupwise_core::bandit::{Feedback, Request};
use groupwise_core::lookalike::{LookalikeRequest, Scorer, Seeds, Size};
use groupwise_core::Engine;

type BoxError = Box<dyn std::error::Error>;

const USERS: usize = 20_000;
const DIM: usize = 64;
const CLUSTERS: usize = 50;
const CANDIDATES: u64 = 1_000;
const SLATE: usize = 10;
const SEEDS: usize = 200;
const EXPAND_TO: usize = 1_000;
/// Decisions with feedback before measuring.
const WARM_DECISIONS: usize = 20_000;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let plan = Plan {
        pairs: match args.next() {
            Some(a) => a
                .parse()
                .map_err(|_| format!("not a number of block pairs: {a}"))?,
            None => 100,
        },
        block_ns: match args.next() {
            Some(a) => {
                a.parse::<f64>()
                    .map_err(|_| format!("not a block length in ms: {a}"))?
                    * 1e6
            }
            None => 10e6,
        },
    };
    if plan.pairs == 0 || plan.block_ns.is_nan() || plan.block_ns <= 0.0 {
        return Err("usage: overhead [BLOCK_PAIRS >= 1] [BLOCK_MS > 0]".into());
    }

    // The engine, created through the C ABI; the Rust path borrows the
    // same engine from the handle, so both paths see the same state.
    let mut handle_ptr: *mut gw_engine = std::ptr::null_mut();
    // SAFETY: `handle_ptr` is writable.
    check(unsafe { gw_engine_new(DIM, &mut handle_ptr) })?;
    let e: *const gw_engine = handle_ptr;
    // SAFETY: `e` is a live handle from gw_engine_new, freed at the end
    // after its last use.
    let engine: &Engine =
        unsafe { handle::borrow(e, "engine") }.map_err(|x| x.message().to_string())?;

    let mut rng = SplitMix(7);
    let t = Instant::now();
    let (vectors, labels) = clustered(&mut rng);
    let ids: Vec<u64> = (0..USERS as u64).collect();
    engine.upsert_embeddings(&ids, &vectors)?;
    let report = engine.build_segments()?;
    let rates: Vec<f64> = (0..CANDIDATES).map(|_| 0.01 + 0.1 * rng.unit()).collect();
    let candidates: Vec<u64> = (0..CANDIDATES).collect();
    // History from logs: 200 impressions of every item in every segment
    // (as the slates benchmark warms its bandit), then live decisions with
    // feedback on top.
    for segment in engine.segment_ids() {
        let observed: Vec<(u64, f64, f64)> = candidates
            .iter()
            .map(|&item| {
                let clicks = (0..200)
                    .filter(|_| rng.unit() < rates[item as usize])
                    .count() as f64;
                (item, clicks, 200.0 - clicks)
            })
            .collect();
        engine
            .bandit()
            .record(Some(segment), None, &observed, None)?;
    }
    for _ in 0..WARM_DECISIONS {
        let user = rng.below(USERS as u64);
        let d = engine.decide(&Request::new(Some(user), None, &candidates, SLATE))?;
        give_feedback(engine, &mut rng, &rates, d.id, &d.items)?;
    }
    // Seeds: the first SEEDS users of cluster 0.
    let seeds: Vec<u64> = ids
        .iter()
        .zip(&labels)
        .filter(|(_, &l)| l == 0)
        .map(|(&u, _)| u)
        .take(SEEDS)
        .collect();
    eprintln!(
        "setup: {USERS} users x {DIM}, {} segments, {WARM_DECISIONS} warm decisions, {:.1} s; load average {}",
        report.build.segments,
        t.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    );

    let mut rows = Vec::new();

    // (a) decide. Each path records its decision ids; the feedback for a
    // block's decisions is given after the block, outside the timing.
    {
        let pending = std::cell::RefCell::new(Vec::<(u64, [u64; SLATE], usize)>::new());
        let decide_c = black_box(gw_engine_decide as DecideFn);
        let (mut items, mut scores) = ([0u64; SLATE], [0f64; SLATE]);
        let mut rust = |key: u64| -> Result<(), BoxError> {
            let user = key % USERS as u64;
            let d = engine.decide(&Request::new(Some(user), None, &candidates, SLATE))?;
            let mut slate = [0u64; SLATE];
            slate[..d.items.len()].copy_from_slice(&d.items);
            pending.borrow_mut().push((d.id, slate, d.items.len()));
            black_box(&d);
            Ok(())
        };
        let mut c = |key: u64| -> Result<(), BoxError> {
            let request = gw_slate_request {
                user: key % USERS as u64,
                has_user: true,
                segment: 0,
                has_segment: false,
                candidates: candidates.as_ptr(),
                n_candidates: candidates.len(),
                exclude: null(),
                n_exclude: 0,
                host_scores: null(),
                n_host_scores: 0,
                slate_size: SLATE,
                policy: GW_POLICY_IN_SLATE_TS,
                now: 0.0,
                has_now: false,
            };
            let (mut len, mut id) = (0usize, 0u64);
            // SAFETY: live engine; the request's pointers hold their
            // lengths; the buffers hold SLATE elements; outputs writable.
            check(unsafe {
                decide_c(
                    e,
                    &request,
                    items.as_mut_ptr(),
                    scores.as_mut_ptr(),
                    SLATE,
                    &mut len,
                    &mut id,
                )
            })?;
            pending.borrow_mut().push((id, items, len));
            black_box(&scores);
            Ok(())
        };
        let mut between = || -> Result<(), BoxError> {
            for (id, slate, len) in pending.borrow_mut().drain(..) {
                give_feedback(engine, &mut rng, &rates, id, &slate[..len])?;
            }
            Ok(())
        };
        let name = "decide: 10 of 1,000, in-slate TS";
        rows.push(interleave(name, &plan, &mut rust, &mut c, &mut between)?);
    }

    // (b) lookalike, two scorers.
    let lookalike_c = black_box(gw_engine_lookalike as LookalikeFn);
    for (name, scorer, code) in [
        (
            "lookalike: centroid, 200 seeds -> 1,000",
            Scorer::Centroid,
            GW_SCORER_CENTROID,
        ),
        (
            "lookalike: classifier, 200 seeds -> 1,000",
            Scorer::Classifier,
            GW_SCORER_CLASSIFIER,
        ),
    ] {
        let mut out_ids = vec![0u64; EXPAND_TO];
        let mut out_scores = vec![0f64; EXPAND_TO];
        let mut rust = |_: u64| -> Result<(), BoxError> {
            let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(EXPAND_TO));
            request.scorer = scorer;
            black_box(engine.lookalike(&request)?);
            Ok(())
        };
        let mut c = |_: u64| -> Result<(), BoxError> {
            let mut len = 0usize;
            // SAFETY: live engine; `seeds` holds SEEDS ids; the buffers
            // hold EXPAND_TO elements; `len` is writable.
            check(unsafe {
                lookalike_c(
                    e,
                    seeds.as_ptr(),
                    seeds.len(),
                    null(),
                    0,
                    GW_SIZE_COUNT,
                    EXPAND_TO as f64,
                    code,
                    out_ids.as_mut_ptr(),
                    out_scores.as_mut_ptr(),
                    EXPAND_TO,
                    &mut len,
                )
            })?;
            black_box((&out_ids, &out_scores, len));
            Ok(())
        };
        rows.push(interleave(name, &plan, &mut rust, &mut c, &mut || Ok(()))?);
    }

    // (c) the fixed cost of the boundary, on a call that does little.
    {
        let stats_c = black_box(gw_engine_get_stats as StatsFn);
        let mut rust = |_: u64| -> Result<(), BoxError> {
            black_box(engine.stats());
            Ok(())
        };
        let mut c = |_: u64| -> Result<(), BoxError> {
            let mut s = gw_engine_stats::default();
            // SAFETY: live engine, writable struct.
            check(unsafe { stats_c(e, &mut s) })?;
            black_box(&s);
            Ok(())
        };
        let name = "stats (almost no work)";
        rows.push(interleave(name, &plan, &mut rust, &mut c, &mut || Ok(()))?);
    }

    // The parts of the C path's extra work, measured alone: the boundary
    // (catch_unwind and the mapping to a result code) around an empty body,
    // and copying a 1,000-user expansion into caller buffers the way
    // gw_engine_lookalike does.
    let guard_ns = per_call_ns(1_000_000, || {
        black_box(groupwise::guard::guard(|| black_box(Ok(()))));
    });
    let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(EXPAND_TO));
    request.scorer = Scorer::Centroid;
    let expansion = engine.lookalike(&request)?;
    let (mut out_ids, mut out_scores) = (vec![0u64; EXPAND_TO], vec![0f64; EXPAND_TO]);
    let copy_ns = per_call_ns(10_000, || {
        // SAFETY: both buffers hold EXPAND_TO elements.
        let ids = unsafe { OutSlice::new(out_ids.as_mut_ptr(), EXPAND_TO, "out_ids") };
        // SAFETY: as above.
        let scores = unsafe { OutSlice::new(out_scores.as_mut_ptr(), EXPAND_TO, "out_scores") };
        if let (Ok(ids), Ok(scores)) = (ids, scores) {
            let users = &black_box(&expansion).users;
            black_box(ids.write_iter(users.iter().map(|u| u.id)).is_ok());
            black_box(scores.write_iter(users.iter().map(|u| u.score)).is_ok());
        }
    });

    println!(
        "{:<42} {:>9} {:>11} {:>11} {:>9} {:>17} {:>17}",
        "call", "blocks", "Rust", "C", "C/Rust-1", "95% CI", "IQR"
    );
    let pct = |[a, b]: [f64; 2]| format!("{:+.2}..{:+.2}%", a * 100.0, b * 100.0);
    for r in &rows {
        println!(
            "{:<42} {:>9} {:>11} {:>11} {:>+8.2}% {:>17} {:>17}",
            r.name,
            format!("{}x{}", r.pairs, r.calls),
            time(r.rust),
            time(r.c),
            r.overhead.median * 100.0,
            pct(r.overhead.ci),
            pct(r.overhead.iqr),
        );
    }
    println!(
        "parts: boundary around an empty body {guard_ns:.1} ns; copying 1,000 ids and scores to caller buffers {:.2} µs",
        copy_ns / 1e3
    );
    for r in &rows {
        let o = &r.overhead;
        println!(
            "{{\"bench\":\"ffi-overhead\",\"call\":\"{}\",\"block_pairs\":{},\"calls_per_block\":{},\"rust_ns\":{:.1},\"c_ns\":{:.1},\"overhead_median\":{:.5},\"overhead_ci95\":[{:.5},{:.5}],\"overhead_iqr\":[{:.5},{:.5}],\"rust_p10_ns\":{:.1},\"c_p10_ns\":{:.1}}}",
            r.name, r.pairs, r.calls, r.rust, r.c, o.median, o.ci[0], o.ci[1], o.iqr[0], o.iqr[1],
            r.p10[0], r.p10[1]
        );
    }
    println!(
        "{{\"bench\":\"ffi-overhead-parts\",\"guard_empty_ns\":{guard_ns:.2},\"copy_1000_lookalike_ns\":{copy_ns:.1}}}"
    );

    // SAFETY: `handle_ptr` came from gw_engine_new; `engine` (borrowed from
    // it) is not used after this.
    unsafe { gw_engine_free(handle_ptr) };
    Ok(())
}

type DecideFn = unsafe extern "C" fn(
    *const gw_engine,
    *const gw_slate_request,
    *mut u64,
    *mut f64,
    usize,
    *mut usize,
    *mut u64,
) -> gw_result;
type LookalikeFn = unsafe extern "C" fn(
    *const gw_engine,
    *const u64,
    usize,
    *const u64,
    usize,
    u32,
    f64,
    u32,
    *mut u64,
    *mut f64,
    usize,
    *mut usize,
) -> gw_result;
type StatsFn = unsafe extern "C" fn(*const gw_engine, *mut gw_engine_stats) -> gw_result;

/// One call's measurement.
struct Row {
    name: &'static str,
    calls: usize,
    pairs: usize,
    /// Median per-call nanoseconds over blocks, Rust path.
    rust: f64,
    /// Median per-call nanoseconds over blocks, C path.
    c: f64,
    /// The fastest decile of blocks (least disturbed by other load), per
    /// path: `[rust, c]`.
    p10: [f64; 2],
    /// C/Rust − 1 per block pair: median, its 95 % confidence interval
    /// (order statistics), p25, p75.
    overhead: Overhead,
}

struct Overhead {
    median: f64,
    ci: [f64; 2],
    iqr: [f64; 2],
}

impl Row {
    fn new(name: &'static str, calls: usize, runs: Vec<[f64; 2]>) -> Row {
        let rust = sorted(runs.iter().map(|r| r[0]).collect());
        let c = sorted(runs.iter().map(|r| r[1]).collect());
        let ratios = sorted(runs.iter().map(|r| r[1] / r[0] - 1.0).collect());
        // The median's 95 % interval: ranks n/2 ± 1.96·√n/2.
        let n = ratios.len() as f64;
        let half = 0.98 * n.sqrt();
        let rank = |r: f64| (r.round().max(0.0) as usize).min(ratios.len() - 1);
        Row {
            name,
            calls,
            pairs: runs.len(),
            rust: quantile(&rust, 0.5),
            c: quantile(&c, 0.5),
            p10: [quantile(&rust, 0.1), quantile(&c, 0.1)],
            overhead: Overhead {
                median: quantile(&ratios, 0.5),
                ci: [
                    ratios[rank(n / 2.0 - half - 1.0)],
                    ratios[rank(n / 2.0 + half)],
                ],
                iqr: [quantile(&ratios, 0.25), quantile(&ratios, 0.75)],
            },
        }
    }
}

/// How to measure.
struct Plan {
    /// Block pairs (one Rust block and one C block each).
    pairs: usize,
    /// Target length of a block, in nanoseconds.
    block_ns: f64,
}

/// Runs `plan.pairs` block pairs, alternating which path goes first, after
/// one unrecorded warm-up pair. A block is as many calls as take about
/// `plan.block_ns` on the Rust path (at least one): short enough that a
/// burst of load from elsewhere spoils few pairs (the median over pairs
/// drops those), long enough to average the calls' own variation.
/// `between` runs after every block, untimed.
fn interleave(
    name: &'static str,
    plan: &Plan,
    rust: &mut dyn FnMut(u64) -> Result<(), BoxError>,
    c: &mut dyn FnMut(u64) -> Result<(), BoxError>,
    between: &mut dyn FnMut() -> Result<(), BoxError>,
) -> Result<Row, BoxError> {
    // Calibrate: Rust calls for at least 20 ms.
    let (t, mut n) = (Instant::now(), 0u64);
    while t.elapsed().as_nanos() < 20_000_000 {
        rust(n)?;
        n += 1;
    }
    between()?;
    let per_call = t.elapsed().as_nanos() as f64 / n as f64;
    let calls = ((plan.block_ns / per_call).round() as usize).max(1);
    let mut out = Vec::with_capacity(plan.pairs);
    for pair in 0..=plan.pairs {
        let mut ns = [0.0; 2];
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for path in order {
            // Every block gets the same keys (users) in the same order, so
            // that blocks differ only by noise.
            let mut keys = SplitMix(1);
            let f: &mut dyn FnMut(u64) -> Result<(), BoxError> =
                if path == 0 { &mut *rust } else { &mut *c };
            let t = Instant::now();
            for _ in 0..calls {
                f(keys.next())?;
            }
            ns[path] = t.elapsed().as_nanos() as f64 / calls as f64;
            between()?;
        }
        if pair > 0 {
            out.push(ns);
        }
    }
    Ok(Row::new(name, calls, out))
}

/// Mean nanoseconds per call of `f` over `n` calls.
fn per_call_ns(n: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Cascade clicks from the items' click rates, as feedback.
fn give_feedback(
    engine: &Engine,
    rng: &mut SplitMix,
    rates: &[f64],
    decision: u64,
    items: &[u64],
) -> Result<(), BoxError> {
    let slot = items
        .iter()
        .position(|&i| rng.unit() < rates[i as usize % rates.len()]);
    let clicks: &[usize] = match &slot {
        Some(s) => std::slice::from_ref(s),
        None => &[],
    };
    engine.feedback(&Feedback {
        decision,
        clicks,
        visible: slot.map(|s| s + 1),
        now: None,
    })?;
    Ok(())
}

/// `USERS` unit vectors around `CLUSTERS` Gaussian centres (noise 0.6),
/// row-major, and each one's cluster.
fn clustered(rng: &mut SplitMix) -> (Vec<f32>, Vec<usize>) {
    let centres: Vec<f32> = (0..CLUSTERS * DIM).map(|_| rng.normal()).collect();
    let mut vectors = Vec::with_capacity(USERS * DIM);
    let mut labels = Vec::with_capacity(USERS);
    for _ in 0..USERS {
        let c = rng.below(CLUSTERS as u64) as usize;
        let row: Vec<f32> = (0..DIM)
            .map(|d| centres[c * DIM + d] + 0.6 * rng.normal())
            .collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        vectors.extend(row.iter().map(|x| x / norm));
        labels.push(c);
    }
    (vectors, labels)
}

fn check(code: gw_result) -> Result<(), BoxError> {
    if code == gw_result::GW_OK {
        Ok(())
    } else {
        Err(format!("{code:?}: {}", last_error()).into())
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn time(ns: f64) -> String {
    if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// SplitMix64: a small, seeded generator (the example needs no dependency).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f32 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}
