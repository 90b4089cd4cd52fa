//! Properties of the bandit's public calls: every state they can produce
//! round-trips through [`SlateBandit::export_state`] and
//! [`SlateBandit::from_state`]; refused requests and feedback change
//! nothing; clicks never outnumber impressions; decision ids are unique
//! across restarts, replicas and threads, and the draws do not depend on them.

use std::collections::HashSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Exports `b`, serializes the state as snapshots do, and restores it:
/// the restored bandit must export the same state.
fn round_trip(b: &SlateBandit) -> SlateBandit {
    let state = b.export_state();
    let bytes = rmp_serde::to_vec(&state).expect("a state serializes");
    let back: BanditState = rmp_serde::from_slice(&bytes).expect("and deserializes");
    assert_eq!(back, state);
    let restored = SlateBandit::from_state(back)
        .unwrap_or_else(|e| panic!("export_state gave a state from_state refuses: {e}"));
    assert_eq!(restored.export_state(), state);
    restored
}

/// A random configuration with small caps, so eviction happens often.
fn random_config(rng: &mut StdRng, replica: u64) -> BanditConfig {
    BanditConfig {
        hierarchy: [Hierarchy::Full, Hierarchy::SegmentOnly, Hierarchy::UserOnly]
            [rng.random_range(0..3)],
        click_model: if rng.random_bool(0.5) {
            ClickModel::Cascade
        } else {
            ClickModel::default()
        },
        half_life: rng.random_bool(0.5).then_some(50.0),
        max_users: rng.random_range(1..80),
        max_user_items: rng.random_range(1..5),
        max_pending: rng.random_range(1..80),
        blend: [
            Blend::default(),
            Blend::Evidence {
                w_min: 0.3,
                w_max: 0.9,
                n_half: 20.0,
            },
            Blend::Fixed(0.5),
            Blend::PriorMean { strength: 5.0 },
        ][rng.random_range(0..4)],
        prune: rng.random_bool(0.5),
        seed: rng.random(),
        record_deltas: rng.random_bool(0.5),
        replica_id: replica,
        ..BanditConfig::default()
    }
}

/// A random request; `None` fields of the result are filled by the caller.
struct RandomRequest {
    user: Option<u64>,
    segment: Option<SegmentId>,
    candidates: Vec<u64>,
    exclude: Vec<u64>,
    slate_size: usize,
    host: Option<Vec<f32>>,
    policy: Policy,
    now: Option<f64>,
}

impl RandomRequest {
    fn new(rng: &mut StdRng, now: f64) -> Self {
        let n = rng.random_range(0..12);
        let candidates: Vec<u64> = (0..n).map(|_| rng.random_range(0..30)).collect();
        // Sometimes every candidate is excluded.
        let exclude: Vec<u64> = if rng.random_bool(0.1) {
            candidates.clone()
        } else {
            (0..rng.random_range(0..4))
                .map(|_| rng.random_range(0..30))
                .collect()
        };
        let host = match rng.random_range(0..10) {
            0..=5 => None,
            6 => Some(vec![0.5; n + 1]), // wrong length
            7 if n > 0 => {
                let mut h = vec![0.3; n];
                h[rng.random_range(0..n)] = [f32::NAN, f32::INFINITY, 1.5][rng.random_range(0..3)];
                Some(h)
            }
            _ => Some((0..n).map(|_| rng.random_range(0.0..=1.0)).collect()),
        };
        RandomRequest {
            user: rng.random_bool(0.8).then(|| rng.random_range(0..60)),
            segment: rng.random_bool(0.8).then(|| rng.random_range(0..5)),
            candidates,
            exclude,
            slate_size: match rng.random_range(0..20) {
                0 => 0,
                1 => MAX_SLATE_SIZE + 1,
                _ => rng.random_range(1..8),
            },
            host,
            policy: Policy::ALL[rng.random_range(0..4)],
            now: match rng.random_range(0..10) {
                0 => None,
                1 => Some(f64::NAN),
                _ => Some(now),
            },
        }
    }

    fn request(&self) -> Request<'_> {
        Request {
            user: self.user,
            segment: self.segment,
            candidates: &self.candidates,
            exclude: &self.exclude,
            slate_size: self.slate_size,
            host_scores: self.host.as_deref(),
            policy: self.policy,
            now: self.now,
        }
    }
}

/// Random clicks for a slate of `len`: valid, or (sometimes) a repeated
/// slot, a hidden slot or a slot past the slate.
fn random_clicks(rng: &mut StdRng, len: usize) -> (Vec<usize>, Option<usize>) {
    let visible = match rng.random_range(0..4) {
        0 => None,
        1 => Some(len + rng.random_range(0..3)),
        _ => Some(rng.random_range(0..=len)),
    };
    let shown = visible.map_or(len, |v| v.min(len));
    let mut clicks: Vec<usize> = (0..shown).filter(|_| rng.random_bool(0.3)).collect();
    match rng.random_range(0..8) {
        0 if !clicks.is_empty() => clicks.push(clicks[0]),
        1 => clicks.push(shown + rng.random_range(0..3)),
        2 => clicks = vec![0; 50],
        _ => {}
    }
    (clicks, visible)
}

#[test]
fn every_state_public_calls_produce_round_trips() {
    for seed in 0..16u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut b = SlateBandit::new(random_config(&mut rng, 1)).expect("valid config");
        // Another replica whose deltas get merged.
        let peer = SlateBandit::new(BanditConfig {
            record_deltas: true,
            half_life: b.config().half_life,
            ..random_config(&mut rng, 2)
        })
        .expect("valid config");
        let mut open: Vec<(u64, usize)> = Vec::new();
        let mut used: Vec<u64> = Vec::new();
        let mut now = 0.0;
        for step in 0..400 {
            now += rng.random_range(0.0..5.0);
            let before = b.stats();
            match rng.random_range(0..14) {
                0..=4 => {
                    let r = RandomRequest::new(&mut rng, now);
                    let eligible: HashSet<u64> = r
                        .candidates
                        .iter()
                        .filter(|c| !r.exclude.contains(c))
                        .copied()
                        .collect();
                    // The learned blend takes scores on any scale.
                    let learned = matches!(b.config().blend, Blend::Learned { .. });
                    let host_ok = r.host.as_ref().is_none_or(|h| {
                        h.len() == r.candidates.len()
                            && h.iter()
                                .all(|x| x.is_finite() && (learned || (0.0..=1.0).contains(x)))
                    });
                    let valid = (1..=MAX_SLATE_SIZE).contains(&r.slate_size)
                        && host_ok
                        && !r.now.is_some_and(f64::is_nan);
                    let state = b.export_state();
                    match b.decide(&r.request()) {
                        Ok(d) => {
                            assert!(valid && !eligible.is_empty());
                            assert_eq!(d.items.len(), r.slate_size.min(eligible.len()));
                            assert!(d.items.iter().all(|i| eligible.contains(i)));
                            assert_eq!(b.stats().decisions, before.decisions + 1);
                            open.push((d.id, d.items.len()));
                        }
                        Err(e) => {
                            assert!(!valid || eligible.is_empty(), "{e}");
                            if valid {
                                assert!(
                                    matches!(
                                        e,
                                        Error::InvalidArgument {
                                            name: "candidates",
                                            ..
                                        }
                                    ),
                                    "{e}"
                                );
                            }
                            // Refused: nothing recorded, no id or ordinal spent.
                            assert_eq!(b.export_state(), state, "{e}");
                        }
                    }
                }
                5..=8 => {
                    let (decision, len) = match rng.random_range(0..10) {
                        0 if !used.is_empty() => (used[rng.random_range(0..used.len())], 3),
                        1 => (rng.random(), 3),
                        _ if !open.is_empty() => open[rng.random_range(0..open.len())],
                        _ => continue,
                    };
                    let (clicks, visible) = random_clicks(&mut rng, len);
                    let fb = Feedback {
                        decision,
                        clicks: &clicks,
                        visible,
                        now: if rng.random_bool(0.05) {
                            Some(f64::NAN)
                        } else {
                            Some(now)
                        },
                    };
                    let state = b.export_state().without_stats();
                    match b.feedback(&fb) {
                        Ok(()) => {
                            let shown = visible.map_or(len, |v| v.min(len)) as u64;
                            let after = b.stats();
                            assert_eq!(after.clicks, before.clicks + clicks.len() as u64);
                            assert_eq!(after.impressions, before.impressions + shown);
                            open.retain(|o| o.0 != decision);
                            used.push(decision);
                        }
                        Err(e) => {
                            // Refused: nothing but a rejection counter
                            // changes, and the decision stays open.
                            assert_eq!(b.export_state().without_stats(), state, "{e}");
                            let after = b.stats();
                            assert_eq!(
                                (after.clicks, after.impressions, after.feedback_applied),
                                (before.clicks, before.impressions, before.feedback_applied)
                            );
                        }
                    }
                }
                9 => {
                    let obs: Vec<(u64, f64, f64)> = (0..rng.random_range(1..4))
                        .map(|_| {
                            (
                                rng.random_range(0..30),
                                rng.random_range(0.0..2.0),
                                rng.random_range(-0.1..3.0),
                            )
                        })
                        .collect();
                    let user = rng.random_bool(0.7).then(|| rng.random_range(0..60));
                    let segment = rng.random_bool(0.7).then(|| rng.random_range(0..5));
                    let r = b.record(segment, user, &obs, Some(now));
                    let _ = peer.record(segment, user, &obs, Some(now));
                    assert_eq!(r.is_ok(), obs.iter().all(|o| o.2 >= 0.0));
                }
                10 => {
                    let delta = peer.export_delta();
                    let delta = Delta::from_bytes(&delta.to_bytes().expect("bytes"))
                        .expect("a delta decodes");
                    assert!(b.merge_delta(&delta).expect("merge"));
                    assert!(!b.merge_delta(&delta).expect("duplicate"));
                    if b.config().record_deltas && rng.random_bool(0.5) {
                        let own = b.export_delta();
                        assert!(!b.merge_delta(&own).expect("own delta"));
                    }
                }
                11 => {
                    b.forget_user(rng.random_range(0..60));
                }
                12 => {
                    let overlaps: Vec<(SegmentId, SegmentId, usize)> = (0..rng.random_range(0..4))
                        .map(|_| {
                            (
                                rng.random_range(0..5),
                                rng.random_range(0..6),
                                rng.random_range(0..20),
                            )
                        })
                        .collect();
                    b.migrate_segments(&overlaps);
                }
                _ => {
                    let cats: Vec<(u64, u32)> = (0..rng.random_range(0..5))
                        .map(|_| (rng.random_range(0..30), rng.random_range(0..3)))
                        .collect();
                    b.set_item_categories(&cats);
                }
            }
            let s = b.stats();
            assert!(s.clicks <= s.impressions, "seed {seed} step {step}: {s:?}");
            if step % 7 == 0 {
                let restored = round_trip(&b);
                // Half the time, carry on with the restored bandit (a restart).
                if rng.random_bool(0.5) {
                    b = restored;
                }
            }
        }
        round_trip(&b);
        assert!(b.stats().decisions > 20, "seed {seed}: the walk decided");
    }
}

#[test]
fn an_empty_slate_is_an_error_that_records_nothing() {
    let b = SlateBandit::new(BanditConfig::default()).expect("valid config");
    let state = b.export_state();
    let cases: [(&[u64], &[u64]); 3] = [
        (&[], &[]),
        (&[1, 2, 3], &[1, 2, 3]),
        (&[4, 4, 5, 5], &[5, 4]), // duplicates of excluded items
    ];
    for policy in Policy::ALL {
        for (candidates, exclude) in cases {
            let mut r = Request::new(Some(1), Some(2), candidates, 3);
            r.exclude = exclude;
            r.policy = policy;
            match b.decide(&r) {
                Err(
                    e @ Error::InvalidArgument {
                        name: "candidates", ..
                    },
                ) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("excluded") || text.contains("none given"),
                        "{text}"
                    );
                }
                other => {
                    panic!("{candidates:?} minus {exclude:?}: expected an error, got {other:?}")
                }
            }
        }
    }
    assert_eq!(b.export_state(), state, "no decision, no counter, no id");
    round_trip(&b);
}

#[test]
fn inflated_clicks_are_refused_and_keep_the_decision_open() -> Result<()> {
    let b = SlateBandit::new(BanditConfig::default())?;
    let candidates: Vec<u64> = (0..20).collect();
    let d = b.decide(&Request::new(Some(1), Some(0), &candidates, 10))?;
    let fb = |clicks: &'static [usize], visible| Feedback {
        decision: d.id,
        clicks,
        visible,
        now: None,
    };
    static MILLION: [usize; 1_000_000] = [0; 1_000_000];
    let state = b.export_state().without_stats();
    for (bad, needle) in [
        (fb(&[2, 2, 2, 2], None), "slot 2 is clicked more than once"),
        (fb(&MILLION, None), "slot 0 is clicked more than once"),
        (fb(&[0], Some(0)), "only the first 0 of the 10"),
        (fb(&[7], Some(3)), "slot 7 was clicked"),
        (fb(&[10], None), "outside the slate"),
    ] {
        match b.feedback(&bad) {
            Err(e @ Error::InvalidArgument { name: "clicks", .. }) => {
                assert!(e.to_string().contains(needle), "{e}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(b.export_state().without_stats(), state, "nothing changed");
    let s = b.stats();
    assert_eq!(
        (
            s.rejected_bad_position,
            s.feedback_applied,
            s.clicks,
            s.impressions
        ),
        (5, 0, 0, 0)
    );
    // The decision is still open: the corrected feedback is applied, once.
    b.feedback(&fb(&[1, 2], Some(3)))?;
    let s = b.stats();
    assert_eq!((s.feedback_applied, s.clicks, s.impressions), (1, 2, 3));
    assert!(matches!(
        b.feedback(&fb(&[1], None)),
        Err(Error::UnknownDecision(_))
    ));
    Ok(())
}

#[test]
fn host_scores_that_are_not_numbers_are_non_finite_errors() -> Result<()> {
    let b = SlateBandit::new(BanditConfig::default())?;
    let candidates: Vec<u64> = (0..6).collect();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut host = vec![0.5f32; 6];
        host[4] = bad;
        let mut r = Request::new(None, None, &candidates, 2);
        r.host_scores = Some(&host);
        match b.decide(&r) {
            Err(Error::NonFinite { what, position: 4 }) => assert_eq!(what, "host_scores"),
            other => panic!("{bad}: expected NonFinite at 4, got {other:?}"),
        }
    }
    assert_eq!(b.stats().decisions, 0);
    // Finite but not a probability: an invalid argument for the blends that
    // mix in probability units; any scale for the learned blend.
    let mut host = vec![0.5f32; 6];
    host[1] = 1.5;
    let mut r = Request::new(None, None, &candidates, 2);
    r.host_scores = Some(&host);
    let fixed = SlateBandit::new(BanditConfig {
        blend: Blend::Fixed(0.5),
        ..BanditConfig::default()
    })?;
    assert!(matches!(
        fixed.decide(&r),
        Err(Error::InvalidArgument {
            name: "host_scores",
            ..
        })
    ));
    assert_eq!(fixed.stats().decisions, 0);
    host[2] = -40.0;
    let mut r = Request::new(None, None, &candidates, 2);
    r.host_scores = Some(&host);
    assert_eq!(b.decide(&r)?.items.len(), 2);
    Ok(())
}

#[test]
fn slate_sizes_and_candidate_lists_are_capped() -> Result<()> {
    let b = SlateBandit::new(BanditConfig::default())?;
    let candidates: Vec<u64> = (0..MAX_CANDIDATES as u64 + 1).collect();
    // At the caps: served.
    let d = b.decide(&Request::new(
        None,
        None,
        &candidates[..MAX_SLATE_SIZE * 2],
        MAX_SLATE_SIZE,
    ))?;
    assert_eq!(d.items.len(), MAX_SLATE_SIZE);
    let mut r = Request::new(None, None, &candidates[..MAX_CANDIDATES], 1);
    r.policy = Policy::Greedy;
    assert_eq!(b.decide(&r)?.items.len(), 1);
    // Past them: refused, naming the argument.
    let state = b.export_state();
    for (r, name) in [
        (
            Request::new(None, None, &candidates[..10], MAX_SLATE_SIZE + 1),
            "slate_size",
        ),
        (
            Request::new(None, None, &candidates[..10], 1_000_000),
            "slate_size",
        ),
        (Request::new(None, None, &candidates, 1), "candidates"),
    ] {
        match b.decide(&r) {
            Err(Error::InvalidArgument { name: n, problem }) => {
                assert_eq!(n, name, "{problem}");
                assert!(problem.contains("out of range") || problem.contains("at most"));
            }
            other => panic!("expected an error naming {name}, got {other:?}"),
        }
    }
    assert_eq!(b.export_state(), state);
    Ok(())
}

/// The replica id in a decision id's low bits, and its sequence.
fn split(id: u64) -> (u64, u64) {
    (id & MAX_REPLICA_ID, id >> REPLICA_BITS)
}

#[test]
fn decision_ids_increase_follow_the_clock_and_carry_the_replica() -> Result<()> {
    let b = SlateBandit::new(BanditConfig {
        replica_id: 5,
        ..BanditConfig::default()
    })?;
    let mut last = 0;
    for _ in 0..2_000 {
        let floor = clock_floor();
        let d = b.decide(&Request::new(None, None, &[1, 2, 3], 2))?;
        let (replica, sequence) = split(d.id);
        assert_eq!(replica, 5);
        assert!(
            sequence >= floor,
            "the sequence never falls below the clock"
        );
        assert!(d.id > last, "ids strictly increase");
        last = d.id;
    }
    for (replica, ok) in [
        (0, true),
        (MAX_REPLICA_ID, true),
        (MAX_REPLICA_ID + 1, false),
    ] {
        let made = SlateBandit::new(BanditConfig {
            replica_id: replica,
            ..BanditConfig::default()
        });
        match made {
            Ok(_) => assert!(ok),
            Err(e @ Error::InvalidConfig { .. }) => {
                assert!(!ok);
                let text = e.to_string();
                assert!(
                    text.contains("bandit.replica_id") && text.contains("0..=1023"),
                    "{text}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    Ok(())
}

#[test]
fn a_restart_from_an_old_state_never_reissues_an_id() -> Result<()> {
    let candidates: Vec<u64> = (10..40).collect();
    let b = SlateBandit::new(BanditConfig::default())?;
    let request = Request::new(Some(3), Some(1), &candidates, 3);
    let mut before: Vec<u64> = (0..5)
        .map(|_| b.decide(&request).map(|d| d.id))
        .collect::<Result<_>>()?;
    // The snapshot; then decisions the process makes before it dies.
    let saved = b.export_state();
    let lost: Vec<Decision> = (0..5).map(|_| b.decide(&request)).collect::<Result<_>>()?;
    before.extend(lost.iter().map(|d| d.id));
    let newest = *before.iter().max().expect("decisions");
    drop(b);
    // Restarted from the snapshot, twice (a crash after the first restart).
    let mut seen: HashSet<u64> = before.iter().copied().collect();
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let restarted = SlateBandit::from_state(saved.clone())?;
        let first = restarted.decide(&request)?;
        assert!(first.id > newest, "{} after {newest}", first.id);
        assert!(seen.insert(first.id), "id {} issued twice", first.id);
        // Feedback meant for a slate lost with the process is refused,
        // not credited to the new slate.
        for d in &lost {
            assert!(matches!(
                restarted.feedback(&Feedback {
                    decision: d.id,
                    clicks: &[0],
                    visible: None,
                    now: None,
                }),
                Err(Error::UnknownDecision(id)) if id == d.id
            ));
        }
        assert_eq!(restarted.stats().rejected_unknown_decision, 5);
        for _ in 0..50 {
            assert!(seen.insert(restarted.decide(&request)?.id));
        }
        firsts.push(first);
    }
    // The draws follow the ordinal, not the id: both restarts made the
    // slate the lost process made first.
    assert_eq!(firsts[0].items, lost[0].items);
    assert_eq!(firsts[1].items, lost[0].items);
    assert_eq!(firsts[0].scores, lost[0].scores);
    Ok(())
}

#[test]
fn the_same_seed_makes_the_same_slates_whatever_the_ids() -> Result<()> {
    let config = BanditConfig {
        seed: 77,
        ..BanditConfig::default()
    };
    let (a, b) = (SlateBandit::new(config.clone())?, SlateBandit::new(config)?);
    let candidates: Vec<u64> = (0..50).collect();
    for round in 0..200u64 {
        let mut r = Request::new(Some(round % 7), Some((round % 3) as u32), &candidates, 5);
        r.policy = Policy::ALL[(round % 4) as usize];
        let (x, y) = (a.decide(&r)?, b.decide(&r)?);
        assert_eq!(
            (&x.items, &x.scores),
            (&y.items, &y.scores),
            "round {round}"
        );
        for (bandit, d) in [(&a, &x), (&b, &y)] {
            bandit.feedback(&Feedback {
                decision: d.id,
                clicks: &[(round % 5) as usize],
                visible: None,
                now: None,
            })?;
        }
    }
    Ok(())
}

#[test]
fn threads_and_replicas_never_share_an_id() -> Result<()> {
    let replicas: Vec<Arc<SlateBandit>> = [1, 2]
        .into_iter()
        .map(|replica_id| {
            SlateBandit::new(BanditConfig {
                replica_id,
                max_pending: 1 << 20,
                ..BanditConfig::default()
            })
            .map(Arc::new)
        })
        .collect::<Result<_>>()?;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let b = Arc::clone(&replicas[t % 2]);
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let candidates: Vec<u64> = (0..20).collect();
                let mut ids = Vec::with_capacity(5_000);
                for _ in 0..5_000 {
                    ids.push(b.decide(&Request::new(None, None, &candidates, 2))?.id);
                }
                Ok(ids)
            })
        })
        .collect();
    let mut all = HashSet::new();
    for (t, h) in handles.into_iter().enumerate() {
        let ids = h.join().expect("no thread panicked")?;
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing per thread");
        assert!(ids.iter().all(|&id| split(id).0 == 1 + (t as u64 % 2)));
        for id in ids {
            assert!(all.insert(id), "id {id} issued twice");
        }
    }
    assert_eq!(all.len(), 8 * 5_000);
    for r in &replicas {
        assert_eq!(r.stats().decisions, 4 * 5_000);
    }
    Ok(())
}

/// How often `n` decisions of `request` show `item` at all, and in the
/// first slot.
fn exposure(b: &SlateBandit, request: &Request<'_>, item: u64, n: usize) -> Result<(f64, f64)> {
    let (mut shown, mut first) = (0usize, 0usize);
    for _ in 0..n {
        let d = b.decide(request)?;
        shown += usize::from(d.items.contains(&item));
        first += usize::from(d.items[0] == item);
    }
    Ok((shown as f64 / n as f64, first as f64 / n as f64))
}

/// The largest rise of an estimated probability that sampling noise
/// explains: 4.5 standard errors of the difference of two independent
/// proportions estimated from `n` draws each (a false alarm has probability
/// below 4·10⁻⁶ per comparison; the two estimates here share their seed and
/// ordinals, which only makes them closer).
fn noise(before: f64, after: f64, n: usize) -> f64 {
    let p = 0.5 * (before + after);
    4.5 * (2.0 * p * (1.0 - p) / n as f64).sqrt() + 1e-12
}

#[test]
fn the_issue_repro_a_non_click_does_not_raise_exposure() -> Result<()> {
    // The segment learned A ≈ 0.18 and C ≈ 0.20 from 1,000 impressions
    // each; user 1 is shown A once and does not click.
    let (a, c) = (1u64, 3u64);
    for user_strength in [20.0, 10.0] {
        let b = SlateBandit::new(BanditConfig {
            user_strength,
            ..BanditConfig::default()
        })?;
        for other in 100..1100u64 {
            let click_a = f64::from(u8::from(other % 50 < 9));
            let click_c = f64::from(u8::from(other % 5 == 0));
            b.record(
                Some(0),
                Some(other),
                &[(a, click_a, 1.0 - click_a), (c, click_c, 1.0 - click_c)],
                None,
            )?;
        }
        let n = 20_000;
        let pair = [a, c];
        let single = Request::new(Some(1), Some(0), &pair, 1);
        let (before, _) = exposure(&b, &single, a, n)?;
        // Measured by the issue: 0.136 before.
        assert!((0.08..0.2).contains(&before), "{before}");
        let d = b.decide(&Request::new(Some(1), Some(0), &[a], 1))?;
        b.feedback(&Feedback {
            decision: d.id,
            clicks: &[],
            visible: None,
            now: None,
        })?;
        assert_eq!(b.user_counts(1, a).map(|x| x.failures), Some(1.0));
        let (after, _) = exposure(&b, &single, a, n)?;
        // Before the fix: 0.334 (0.322 at user_strength 10).
        assert!(
            after <= before + noise(before, after, n),
            "user_strength {user_strength}: P(A) {before} -> {after}"
        );
    }
    Ok(())
}

#[test]
fn a_non_click_never_raises_exposure_and_a_click_never_lowers_it() -> Result<()> {
    let candidates: Vec<u64> = (0..6).collect();
    let n = 3_000;
    let mut checked = 0;
    for case in 0..60u64 {
        let mut rng = StdRng::seed_from_u64(1_000 + case);
        let (prior_alpha, prior_beta) =
            [(1.0, 1.0), (1.0, 99.0), (2.0, 20.0)][rng.random_range(0..3)];
        let config = BanditConfig {
            prior_alpha,
            prior_beta,
            pooling_strength: [0.0, 10.0, 100.0][rng.random_range(0..3)],
            user_strength: [0.0, 1.0, 10.0, 20.0, 200.0][rng.random_range(0..5)],
            hierarchy: if rng.random_bool(0.8) {
                Hierarchy::Full
            } else {
                [Hierarchy::SegmentOnly, Hierarchy::UserOnly][rng.random_range(0..2)]
            },
            prune: rng.random_bool(0.5),
            seed: rng.random(),
            ..BanditConfig::default()
        };
        let b = SlateBandit::new(config)?;
        // Other users' evidence in three segments, from none to thousands of
        // impressions per item.
        for &item in &candidates {
            for segment in 0..3 {
                let n = [0.0, 5.0, 50.0, 1_000.0, 3_000.0][rng.random_range(0..5)];
                let rate: f64 = rng.random_range(0.02..0.4);
                if n > 0.0 {
                    b.record(
                        Some(segment),
                        Some(rng.random_range(100..200)),
                        &[(item, (rate * n).round(), n - (rate * n).round())],
                        None,
                    )?;
                }
            }
            // The user's own evidence, often none.
            if rng.random_bool(0.5) {
                let s = f64::from(rng.random_range(0..3u8));
                let f = rng.random_range(0..12) as f64 * 0.5;
                if s + f > 0.0 {
                    b.record(Some(0), Some(1), &[(item, s, f)], None)?;
                }
            }
        }
        let item = candidates[rng.random_range(0..candidates.len())];
        let click = rng.random_bool(0.5);
        let observation = if click {
            (item, 1.0, 0.0)
        } else {
            (item, 0.0, [1.0, 0.5, 0.25][rng.random_range(0..3)])
        };
        let k = rng.random_range(1..4);
        let state = b.export_state();
        let before = SlateBandit::from_state(state.clone())?;
        let after = SlateBandit::from_state(state)?;
        after.record(Some(0), Some(1), &[observation], None)?;
        for policy in [Policy::InSlateThompson, Policy::Thompson, Policy::Greedy] {
            let draws = if policy == Policy::Greedy { 1 } else { n };
            let mut request = Request::new(Some(1), Some(0), &candidates, k);
            request.policy = policy;
            let (shown0, first0) = exposure(&before, &request, item, draws)?;
            let (shown1, first1) = exposure(&after, &request, item, draws)?;
            for (what, x0, x1) in [("shown", shown0, shown1), ("first slot", first0, first1)] {
                let tolerance = if policy == Policy::Greedy {
                    0.0
                } else {
                    noise(x0, x1, n)
                };
                let (rise, fall) = (x1 - x0, x0 - x1);
                let ok = if click {
                    fall <= tolerance
                } else {
                    rise <= tolerance
                };
                assert!(
                    ok,
                    "case {case} ({policy:?}, {what}, slate of {k}, click {click}, \
                     {:?}): {x0} -> {x1}\nposterior before {:?} after {:?}",
                    b.config(),
                    before.posterior_of(Some(0), Some(1), item),
                    after.posterior_of(Some(0), Some(1), item),
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 60 * 3 * 2);
    Ok(())
}
