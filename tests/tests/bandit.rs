//! The slate bandit: closed-form counts under PBM and cascade, the hierarchy,
//! slates, host-score blending, errors that change nothing, segment
//! migration, and exact counting under concurrent decisions and feedback.

use std::sync::Arc;

use groupwise::bandit::{
    BanditConfig, Blend, ClickModel, Counts, Feedback, Hierarchy, Policy, Pooling, Request,
    SlateBandit,
};
use groupwise::Error;

/// Cascade clicks on a flat Beta(1, 1) base prior (the closed forms below
/// are worked out for it).
fn cascade() -> BanditConfig {
    BanditConfig {
        click_model: ClickModel::Cascade,
        prior_alpha: 1.0,
        prior_beta: 1.0,
        ..Default::default()
    }
}

fn counts(s: f64, f: f64) -> (f64, f64) {
    (s, f)
}

fn pair(c: Counts) -> (f64, f64) {
    (c.successes, c.failures)
}

#[test]
fn pbm_feedback_adds_the_hand_computed_counts_at_every_level() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(BanditConfig {
        click_model: ClickModel::Pbm {
            examination: vec![1.0, 0.5, 0.25, 0.125],
        },
        ..Default::default()
    })?;
    let candidates = [10, 20, 30, 40];
    let d = bandit.decide(&Request::new(Some(7), Some(3), &candidates, 4))?;
    // Click on slot 1; slots 0, 2, 3 examined with 1, 0.25, 0.125.
    bandit.feedback(&Feedback {
        decision: d.id,
        clicks: &[1],
        visible: None,
        now: None,
    })?;
    let want = [
        counts(0.0, 1.0),
        counts(1.0, 0.0),
        counts(0.0, 0.25),
        counts(0.0, 0.125),
    ];
    for (slot, &item) in d.items.iter().enumerate() {
        assert_eq!(
            pair(bandit.segment_counts(3, item)),
            want[slot],
            "slot {slot}"
        );
        assert_eq!(pair(bandit.pooled_counts(item)), want[slot]);
        assert_eq!(bandit.user_counts(7, item).map(pair), Some(want[slot]));
        assert_eq!(
            pair(bandit.segment_counts(4, item)),
            (0.0, 0.0),
            "other segments untouched"
        );
    }
    // Only 2 slots visible: the hidden ones are not counted.
    let d = bandit.decide(&Request::new(None, Some(3), &candidates, 4))?;
    let before: Vec<(f64, f64)> = d
        .items
        .iter()
        .map(|&i| pair(bandit.segment_counts(3, i)))
        .collect();
    bandit.feedback(&Feedback {
        decision: d.id,
        clicks: &[],
        visible: Some(2),
        now: None,
    })?;
    let after: Vec<(f64, f64)> = d
        .items
        .iter()
        .map(|&i| pair(bandit.segment_counts(3, i)))
        .collect();
    assert_eq!(after[0], (before[0].0, before[0].1 + 1.0));
    assert_eq!(after[1], (before[1].0, before[1].1 + 0.5));
    assert_eq!(&after[2..], &before[2..]);
    Ok(())
}

#[test]
fn cascade_feedback_counts_down_to_the_click() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(cascade())?;
    let candidates: Vec<u64> = (1..=6).collect();
    let d = bandit.decide(&Request::new(Some(1), Some(0), &candidates, 5))?;
    bandit.feedback(&Feedback {
        decision: d.id,
        clicks: &[2],
        visible: Some(3),
        now: None,
    })?;
    let want = [(0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.0, 0.0)];
    for (slot, &item) in d.items.iter().enumerate() {
        assert_eq!(pair(bandit.segment_counts(0, item)), want[slot]);
    }
    let stats = bandit.stats();
    assert_eq!(
        (stats.clicks, stats.impressions, stats.feedback_applied),
        (1, 3, 1)
    );
    Ok(())
}

#[test]
fn the_closed_form_posterior_of_each_level() -> groupwise::Result<()> {
    // Base Beta(1, 1); pooling strength 10; user strength 20.
    let bandit = SlateBandit::new(cascade())?;
    // Segment 1 saw item 5: 3 clicks, 7 misses; segment 2: 1 click, 9 misses.
    bandit.record(Some(1), None, &[(5, 3.0, 7.0)], None)?;
    bandit.record(Some(2), None, &[(5, 1.0, 9.0)], None)?;
    // Pooled: Beta(1 + 4, 1 + 16).
    let pooled = bandit.posterior_of(None, None, 5);
    assert!((pooled.alpha - 5.0).abs() < 1e-12 && (pooled.beta - 17.0).abs() < 1e-12);
    // Segment 1: the base prior plus the *other* segments' 10 observations
    // (at most 10: all of them), Beta(1 + 1, 1 + 9); plus its own 3 and 7.
    let s1 = bandit.posterior_of(Some(1), None, 5);
    assert!((s1.alpha - 5.0).abs() < 1e-9, "{s1:?}");
    assert!((s1.beta - 17.0).abs() < 1e-9, "{s1:?}");
    // A new segment: the base prior plus all 20 observations scaled to 10,
    // Beta(1 + 2, 1 + 8).
    let fresh = bandit.posterior_of(Some(9), None, 5);
    assert!((fresh.alpha - 3.0).abs() < 1e-9 && (fresh.beta - 9.0).abs() < 1e-9);
    // A user without data gets the segment's posterior.
    assert_eq!(bandit.posterior_of(Some(1), Some(77), 5), s1);
    // The user's clicks take over as they accumulate.
    bandit.record(Some(1), Some(77), &[(5, 30.0, 0.0)], None)?;
    let u = bandit.posterior_of(Some(1), Some(77), 5);
    let s1 = bandit.posterior_of(Some(1), None, 5);
    // Segment: Beta(5 + 30, 17). User: the segment without the user's own
    // 30 clicks, Beta(5, 17) (mean 5/22, strength 22), is the prior; 30
    // clicks take 30 / (5/22) pseudo-counts off it, more than it has, so it
    // keeps user_strength 20: mean (20 · 5/22 + 30) / 50.
    assert!((s1.alpha - 35.0).abs() < 1e-9 && (s1.beta - 17.0).abs() < 1e-9);
    let rest = 5.0 / 22.0;
    assert!(
        (u.mean() - (20.0 * rest + 30.0) / 50.0).abs() < 1e-9,
        "{u:?}"
    );
    assert!((u.strength() - 50.0).abs() < 1e-9, "{u:?}");
    // A user of a well-known segment starts from the segment's posterior and
    // keeps it after one non-click but for the pseudo-counts it gives way.
    bandit.record(Some(1), Some(1000), &[(5, 300.0, 700.0)], None)?;
    let seg = bandit.posterior_of(Some(1), None, 5);
    bandit.record(Some(1), Some(78), &[(5, 0.0, 1.0)], None)?;
    let one = bandit.posterior_of(Some(1), Some(78), 5);
    let m = seg.mean();
    // The prior gives way by 1 / (1 − m) pseudo-counts: α loses m / (1 − m);
    // β loses 1 and gains the non-click, so it is unchanged.
    assert!(
        (one.alpha - (seg.alpha - m / (1.0 - m))).abs() < 1e-9,
        "{one:?} {seg:?}"
    );
    assert!((one.beta - seg.beta).abs() < 1e-9, "{one:?} {seg:?}");
    // Pooling by mean: segment 1's prior is the others' pooled mean, 2/12,
    // at strength min(10, 12) = 10: Beta(10/6, 50/6); a new segment gets all
    // the pooled evidence's mean, 5/22, at strength 10.
    let by_mean = SlateBandit::new(BanditConfig {
        pooling: Pooling::Mean,
        ..cascade()
    })?;
    by_mean.record(Some(1), None, &[(5, 3.0, 7.0)], None)?;
    by_mean.record(Some(2), None, &[(5, 1.0, 9.0)], None)?;
    let m1 = by_mean.posterior_of(Some(1), None, 5);
    assert!((m1.alpha - (10.0 / 6.0 + 3.0)).abs() < 1e-9, "{m1:?}");
    assert!((m1.beta - (50.0 / 6.0 + 7.0)).abs() < 1e-9, "{m1:?}");
    let fresh = by_mean.posterior_of(Some(9), None, 5);
    assert!((fresh.mean() - 5.0 / 22.0).abs() < 1e-9 && (fresh.strength() - 10.0).abs() < 1e-9);
    // A pessimistic base prior keeps its 100 pseudo-counts in a segment with
    // evidence pooling; by mean it shrinks to 10.
    for (pooling, strength) in [(Pooling::Evidence, 100.0), (Pooling::Mean, 10.0)] {
        let b = SlateBandit::new(BanditConfig {
            prior_beta: 99.0,
            pooling,
            ..cascade()
        })?;
        let p = b.posterior_of(Some(3), None, 42);
        assert!((p.mean() - 0.01).abs() < 1e-9, "{pooling:?} {p:?}");
        assert!((p.strength() - strength).abs() < 1e-9, "{pooling:?} {p:?}");
    }
    // Segment-only ignores the user; user-only ignores the segment.
    for (hierarchy, want) in [
        (Hierarchy::SegmentOnly, None),
        (Hierarchy::UserOnly, Some((31.0, 1.0))),
    ] {
        let b = SlateBandit::new(BanditConfig {
            hierarchy,
            ..cascade()
        })?;
        b.record(Some(1), None, &[(5, 3.0, 7.0)], None)?;
        b.record(Some(1), Some(77), &[(5, 30.0, 0.0)], None)?;
        let p = b.posterior_of(Some(1), Some(77), 5);
        match want {
            Some((a, bb)) => assert!(
                (p.alpha - a).abs() < 1e-9 && (p.beta - bb).abs() < 1e-9,
                "{p:?}"
            ),
            None => assert!((p.mean() - b.posterior_of(Some(1), None, 5).mean()).abs() < 1e-12),
        }
    }
    Ok(())
}

#[test]
fn categories_give_new_items_their_group_prior() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(cascade())?;
    bandit.set_item_categories(&[(1, 0), (2, 0), (3, 1)]);
    bandit.record(None, None, &[(1, 40.0, 60.0)], None)?;
    // Item 2 has no data but shares item 1's category: mean near 0.4.
    let two = bandit.posterior_of(None, None, 2);
    assert!((two.mean() - 41.0 / 102.0).abs() < 1e-9, "{two:?}");
    assert!((two.strength() - 10.0).abs() < 1e-9);
    // Item 3's category has no data: the base prior's mean.
    assert!((bandit.posterior_of(None, None, 3).mean() - 0.5).abs() < 1e-9);
    Ok(())
}

#[test]
fn slates_respect_size_exclusions_and_never_repeat() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(BanditConfig::default())?;
    let candidates: Vec<u64> = (0..50).chain(0..10).collect(); // duplicates ignored
    let exclude: Vec<u64> = (0..25).collect();
    for policy in Policy::ALL {
        for _ in 0..50 {
            let mut req = Request::new(Some(1), Some(2), &candidates, 8);
            req.exclude = &exclude;
            req.policy = policy;
            let d = bandit.decide(&req)?;
            assert_eq!(d.items.len(), 8);
            assert_eq!(d.scores.len(), 8);
            let mut seen = d.items.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 8, "{policy:?} repeated an item");
            assert!(
                d.items.iter().all(|i| *i >= 25 && *i < 50),
                "{policy:?}: {:?}",
                d.items
            );
        }
    }
    // Fewer eligible candidates than slots.
    let mut req = Request::new(None, None, &candidates[..30], 10);
    req.exclude = &exclude;
    assert_eq!(bandit.decide(&req)?.items.len(), 5);
    Ok(())
}

#[test]
fn host_scores_blend_by_evidence_and_can_act_as_priors() -> groupwise::Result<()> {
    let candidates: Vec<u64> = (0..20).collect();
    let host: Vec<f32> = (0..20).map(|i| i as f32 / 20.0).collect();
    // With the posterior weight fixed at 0, the host's order is the slate.
    let b = SlateBandit::new(BanditConfig {
        blend: Blend::Fixed(0.0),
        ..Default::default()
    })?;
    let mut req = Request::new(Some(1), Some(0), &candidates, 3);
    req.host_scores = Some(&host);
    assert_eq!(b.decide(&req)?.items, vec![19, 18, 17]);
    // Host scores as prior means: greedy follows them before any feedback.
    let b = SlateBandit::new(BanditConfig {
        blend: Blend::PriorMean { strength: 50.0 },
        ..Default::default()
    })?;
    req.policy = Policy::Greedy;
    assert_eq!(b.decide(&req)?.items, vec![19, 18, 17]);
    // Bad host scores are refused.
    let short = [0.5f32; 3];
    req.host_scores = Some(&short);
    assert!(matches!(b.decide(&req), Err(Error::ShapeMismatch { .. })));
    for wrong in [f32::NAN, 1.5, -0.1] {
        let mut bad = host.clone();
        bad[4] = wrong;
        let mut r = req;
        r.host_scores = Some(&bad);
        assert!(b.decide(&r).is_err(), "{wrong}");
    }
    assert_eq!(b.stats().decisions, 1, "refused requests are not decisions");
    Ok(())
}

#[test]
fn bad_feedback_is_refused_counted_and_changes_nothing() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(cascade())?;
    let candidates: Vec<u64> = (0..10).collect();
    let d = bandit.decide(&Request::new(Some(1), Some(0), &candidates, 4))?;
    let unknown = Feedback {
        decision: 999_999,
        clicks: &[0],
        visible: None,
        now: None,
    };
    assert!(matches!(
        bandit.feedback(&unknown),
        Err(Error::UnknownDecision(999_999))
    ));
    let outside = Feedback {
        decision: d.id,
        clicks: &[4],
        visible: None,
        now: None,
    };
    assert!(bandit.feedback(&outside).is_err());
    for &item in &candidates {
        assert_eq!(pair(bandit.pooled_counts(item)), (0.0, 0.0));
    }
    // The decision is still open after a refused feedback; once used, it is gone.
    let good = Feedback {
        decision: d.id,
        clicks: &[0],
        visible: None,
        now: None,
    };
    bandit.feedback(&good)?;
    assert!(matches!(
        bandit.feedback(&good),
        Err(Error::UnknownDecision(_))
    ));
    let s = bandit.stats();
    assert_eq!(
        (
            s.rejected_unknown_decision,
            s.rejected_bad_position,
            s.feedback_applied
        ),
        (2, 1, 1)
    );
    assert!(SlateBandit::new(BanditConfig {
        prior_alpha: 0.0,
        ..Default::default()
    })
    .is_err());
    assert!(bandit
        .decide(&Request::new(None, None, &candidates, 0))
        .is_err());
    Ok(())
}

#[test]
fn decay_halves_old_evidence() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(BanditConfig {
        half_life: Some(100.0),
        ..cascade()
    })?;
    bandit.record(Some(0), None, &[(1, 8.0, 8.0)], Some(0.0))?;
    bandit.record(Some(0), None, &[(1, 0.0, 4.0)], Some(100.0))?;
    assert_eq!(pair(bandit.segment_counts(0, 1)), (4.0, 8.0));
    Ok(())
}

#[test]
fn rebuilt_segments_inherit_counts_by_member_overlap() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(cascade())?;
    bandit.record(Some(1), None, &[(7, 10.0, 30.0)], None)?;
    bandit.record(Some(2), None, &[(7, 4.0, 4.0)], None)?;
    // Old 1 → 75 % to new 10, 25 % to new 11; old 2 → all to new 11.
    bandit.migrate_segments(&[(1, 10, 75), (1, 11, 25), (2, 11, 40)]);
    assert_eq!(pair(bandit.segment_counts(10, 7)), (7.5, 22.5));
    assert_eq!(pair(bandit.segment_counts(11, 7)), (2.5 + 4.0, 7.5 + 4.0));
    assert_eq!(pair(bandit.segment_counts(1, 7)), (0.0, 0.0));
    assert_eq!(pair(bandit.segment_counts(2, 7)), (0.0, 0.0));
    Ok(())
}

#[test]
fn user_state_is_bounded() -> groupwise::Result<()> {
    let bandit = SlateBandit::new(BanditConfig {
        max_users: 64,
        max_user_items: 5,
        ..cascade()
    })?;
    for u in 0..1000u64 {
        bandit.record(Some(0), Some(u), &[(u % 10, 1.0, 0.0)], None)?;
    }
    assert!(bandit.stats().evicted_users >= 1000 - 64);
    // The most recent user is kept; items per user are capped.
    assert!(bandit.user_counts(999, 9).is_some());
    for i in 0..10 {
        bandit.record(None, Some(999), &[(100 + i, 0.0, 1.0)], None)?;
    }
    let kept = (0..10)
        .filter(|i| {
            bandit
                .user_counts(999, 100 + i)
                .is_some_and(|c| c.total() > 0.0)
        })
        .count();
    assert!(kept <= 5, "{kept}");
    Ok(())
}

#[test]
fn eight_threads_lose_no_feedback() -> groupwise::Result<()> {
    let bandit = Arc::new(SlateBandit::new(BanditConfig {
        max_pending: 1 << 20,
        ..cascade()
    })?);
    let candidates: Arc<Vec<u64>> = Arc::new((0..200).collect());
    let per_thread = 2_000u64;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let bandit = Arc::clone(&bandit);
            let candidates = Arc::clone(&candidates);
            std::thread::spawn(move || -> groupwise::Result<(u64, u64)> {
                let (mut clicks, mut misses) = (0u64, 0u64);
                for i in 0..per_thread {
                    let user = t * 1000 + i % 50;
                    let segment = (i % 4) as u32;
                    let d =
                        bandit.decide(&Request::new(Some(user), Some(segment), &candidates, 6))?;
                    // Click on slot (i % 7) when it exists: misses are the slots above it.
                    let slot = (i % 7) as usize;
                    let fb: Vec<usize> = if slot < 6 { vec![slot] } else { vec![] };
                    bandit.feedback(&Feedback {
                        decision: d.id,
                        clicks: &fb,
                        visible: Some(6),
                        now: None,
                    })?;
                    clicks += fb.len() as u64;
                    misses += if slot < 6 { slot as u64 } else { 6 };
                }
                Ok((clicks, misses))
            })
        })
        .collect();
    let (mut clicks, mut misses) = (0u64, 0u64);
    for h in handles {
        let (c, m) = h.join().map_err(|_| Error::EmptyPopulation)??;
        clicks += c;
        misses += m;
    }
    let (mut s, mut f) = (0.0, 0.0);
    let (mut seg_s, mut seg_f) = (0.0, 0.0);
    for &item in candidates.iter() {
        let p = bandit.pooled_counts(item);
        s += p.successes;
        f += p.failures;
        for seg in 0..4 {
            let c = bandit.segment_counts(seg, item);
            seg_s += c.successes;
            seg_f += c.failures;
        }
    }
    assert_eq!((s as u64, f as u64), (clicks, misses));
    assert_eq!((seg_s as u64, seg_f as u64), (clicks, misses));
    let stats = bandit.stats();
    assert_eq!(stats.decisions, 8 * per_thread);
    assert_eq!(stats.feedback_applied, 8 * per_thread);
    assert_eq!(stats.clicks, clicks);
    Ok(())
}

/// Runs 400 rounds of 8-slot slates from 40 items for 20 users of segment
/// 0 (each user with tastes of their own: `truth(user, item)`), cascade
/// clicks over the 3 visible slots, with `host(user, item)` scores, and
/// returns the bandit.
fn learn_with_host(
    truth: &dyn Fn(u64, u64) -> f64,
    host: &dyn Fn(u64, u64) -> f32,
    seed: u64,
) -> groupwise::Result<SlateBandit> {
    use rand::{Rng, SeedableRng};
    let bandit = SlateBandit::new(BanditConfig {
        click_model: ClickModel::Cascade,
        prior_beta: 49.0,
        seed,
        ..Default::default()
    })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let candidates: Vec<u64> = (0..40).collect();
    for _ in 0..400 {
        for user in 0..20 {
            let scores: Vec<f32> = candidates.iter().map(|&i| host(user, i)).collect();
            let mut req = Request::new(Some(user), Some(0), &candidates, 8);
            req.host_scores = Some(&scores);
            let d = bandit.decide(&req)?;
            let click = d.items[..3]
                .iter()
                .position(|&i| rng.random::<f64>() < truth(user, i));
            bandit.feedback(&Feedback {
                decision: d.id,
                clicks: click.as_slice(),
                visible: Some(3),
                now: None,
            })?;
        }
    }
    Ok(bandit)
}

#[test]
fn the_learned_blend_trusts_informative_scores_and_not_useless_ones() -> groupwise::Result<()> {
    // Each user likes different items: the segment's posterior cannot know
    // what the host knows.
    let truth = |u: u64, i: u64| 0.01 + 0.4 * ((i * 7 + u * 11) % 40) as f64 / 40.0;
    // The true probabilities on another scale (logits times 10).
    let exact = |u: u64, i: u64| {
        let p = truth(u, i);
        (10.0 * (p / (1.0 - p)).ln()) as f32
    };
    // Scores unrelated to the truth: uniform, from their own seed.
    let noise: Vec<f32> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        (0..20 * 40).map(|_| rng.random()).collect()
    };
    let useless = |u: u64, i: u64| noise[(u * 40 + i) as usize];
    for seed in [1, 2] {
        let e = learn_with_host(&truth, &exact, seed)?.host_model();
        let u = learn_with_host(&truth, &useless, seed)?.host_model();
        // The exact scores get a weight well above 0 (prior: 0 ± 1) and
        // above the posterior's (measured: c ≈ 0.8, b ≈ 0), and decisions
        // use it; the useless ones a weight within 4 standard deviations of
        // 0, which decisions do not use. (Slates show the host's top items
        // once it is trusted, so the shown scores vary little and c's own
        // standard deviation stays wide.)
        assert!(e.c > 0.5 && e.c > e.b, "exact: {e:?}");
        assert!(e.host_weight() > 0.3, "exact: {e:?}");
        assert!(u.c.abs() < 4.0 * u.c_sd(), "useless: {u:?}");
        assert_eq!(u.host_weight(), 0.0, "useless: {u:?}");
        assert!(e.observations > 5_000.0, "{e:?}");
    }
    Ok(())
}

#[test]
fn the_learned_blend_changes_nothing_until_the_scores_prove_useful() -> groupwise::Result<()> {
    // A fresh bandit's weight is 0: with or without host scores, the same
    // seed gives the same slates, for every policy.
    let candidates: Vec<u64> = (0..30).collect();
    let host: Vec<f32> = (0..30).map(|i| (i * 17 % 30) as f32 - 4.0).collect();
    for policy in Policy::ALL {
        let with = SlateBandit::new(BanditConfig::default())?;
        let without = SlateBandit::new(BanditConfig::default())?;
        for b in [&with, &without] {
            b.record(Some(0), None, &[(3, 5.0, 20.0), (7, 1.0, 40.0)], None)?;
        }
        for _ in 0..20 {
            let mut req = Request::new(Some(1), Some(0), &candidates, 5);
            req.policy = policy;
            let plain = without.decide(&req)?;
            req.host_scores = Some(&host);
            assert_eq!(with.decide(&req)?.items, plain.items, "{policy:?}");
        }
    }
    Ok(())
}
