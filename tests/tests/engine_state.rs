//! The Engine's state across restarts: every state its public calls produce
//! saves and loads back equal (`save` never writes what `load` refuses);
//! decision ids are never reissued after a restart, so feedback for a slate
//! lost with the process is refused; decisions for segments the engine does
//! not serve are refused and not counted; the engine counters survive a
//! save and load.

use std::collections::HashSet;
use std::path::Path;

use groupwise::bandit::{Delta, Feedback, Policy, Request};
use groupwise::lookalike::{LookalikeRequest, Scorer, Seeds, Size};
use groupwise::{Engine, EngineConfig, Error};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type TestResult = groupwise::Result<()>;

const DIM: usize = 16;

fn tempdir() -> groupwise::Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::Io {
        path: "tempdir".into(),
        source: e,
    })
}

/// An engine of `n` clustered users (ids 0..n) with small bandit caps, its
/// segments built when `segments`.
fn engine(n: u64, replica: Option<u64>, segments: bool) -> groupwise::Result<Engine> {
    let mut config = EngineConfig::new(DIM);
    config.segments.min_size = 20;
    config.index.exact_below = 0;
    config.replica_id = replica;
    config.bandit.max_users = 64;
    config.bandit.max_user_items = 4;
    config.bandit.max_pending = 64;
    config.bandit.half_life = Some(600.0);
    let engine = Engine::new(config)?;
    let (vectors, _) = groupwise_e2e::clustered_vectors(n as usize, DIM, 5, 0.3, 17);
    let ids: Vec<u64> = (0..n).collect();
    engine.upsert_embeddings(&ids, &vectors)?;
    if segments {
        engine.build_segments()?;
    }
    Ok(engine)
}

/// Saves `engine` to `path`, loads it back and checks the copy holds the
/// same state: every counter, the bandit's whole state, the segments.
fn save_and_load(engine: &Engine, path: &Path) -> groupwise::Result<Engine> {
    let saved = engine.save(path)?;
    let loaded =
        Engine::load(path).unwrap_or_else(|e| panic!("save wrote a snapshot load refuses: {e}"));
    assert_eq!(loaded.stats(), engine.stats());
    assert_eq!(
        loaded.bandit().export_state(),
        engine.bandit().export_state()
    );
    assert_eq!(loaded.segment_ids(), engine.segment_ids());
    assert_eq!(
        saved.pending_decisions,
        loaded.bandit().export_state().pending()
    );
    Ok(loaded)
}

#[test]
fn every_state_engine_calls_produce_saves_and_loads() -> TestResult {
    let dir = tempdir()?;
    let path = dir.path().join("engine.gw");
    let mut rng = SmallRng::seed_from_u64(1212);
    let mut e = engine(400, Some(1), true)?;
    let peer = engine(100, Some(2), false)?;
    let mut next_user = 10_000u64;
    let mut deleted: HashSet<u64> = HashSet::new();
    let mut open: Vec<(u64, usize)> = Vec::new();
    let mut now = 0.0;
    let (mut made, mut refused, mut restarts) = (0, 0, 0);
    for step in 0..500 {
        now += rng.random_range(0.0..20.0);
        match rng.random_range(0..20) {
            0 => {
                let mut v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
                if rng.random_bool(0.1) {
                    v[3] = f32::NAN; // refused
                }
                let user = if rng.random_bool(0.5) {
                    next_user += 1;
                    next_user
                } else {
                    rng.random_range(0..400)
                };
                if e.upsert_embedding(user, &v).is_ok() {
                    deleted.remove(&user);
                }
            }
            1 => {
                let user = rng.random_range(0..400);
                assert_eq!(e.delete_user(user)?, !deleted.contains(&user));
                deleted.insert(user);
            }
            2..=9 => {
                let candidates: Vec<u64> = (0..rng.random_range(0..10))
                    .map(|_| rng.random_range(0..40))
                    .collect();
                let exclude: Vec<u64> = if rng.random_bool(0.15) {
                    candidates.clone()
                } else {
                    vec![rng.random_range(0..40)]
                };
                let served = e.segment_ids();
                let segment = match rng.random_range(0..10) {
                    0 => Some(9_999),
                    1 | 2 if !served.is_empty() => Some(served[rng.random_range(0..served.len())]),
                    _ => None,
                };
                let request = Request {
                    exclude: &exclude,
                    policy: Policy::ALL[rng.random_range(0..4)],
                    segment,
                    now: Some(now),
                    ..Request::new(
                        rng.random_bool(0.8).then(|| rng.random_range(0..400)),
                        None,
                        &candidates,
                        rng.random_range(1..6),
                    )
                };
                let before = e.stats().bandit.decisions;
                match e.decide(&request) {
                    Ok(d) => {
                        assert!(!d.items.is_empty());
                        open.push((d.id, d.items.len()));
                        made += 1;
                    }
                    Err(err) => {
                        assert!(
                            matches!(
                                err,
                                Error::UnknownSegment(9_999)
                                    | Error::InvalidArgument {
                                        name: "candidates",
                                        ..
                                    }
                            ),
                            "{err}"
                        );
                        assert_eq!(e.stats().bandit.decisions, before, "not counted");
                        refused += 1;
                    }
                }
            }
            10..=14 if !open.is_empty() => {
                let (decision, len) = open[rng.random_range(0..open.len())];
                let visible = rng.random_range(0..=len);
                let mut clicks: Vec<usize> =
                    (0..visible).filter(|_| rng.random_bool(0.3)).collect();
                if rng.random_bool(0.2) {
                    clicks.push(if rng.random_bool(0.5) { len } else { 0 }); // maybe refused
                }
                let fb = Feedback {
                    decision,
                    clicks: &clicks,
                    visible: Some(visible),
                    now: Some(now),
                };
                if e.feedback(&fb).is_ok() {
                    open.retain(|o| o.0 != decision);
                }
            }
            15 => {
                let obs = [(rng.random_range(0..40), 1.0, 2.0)];
                peer.bandit().record(
                    Some(rng.random_range(0..4)),
                    Some(rng.random_range(0..100)),
                    &obs,
                    Some(now),
                )?;
                let delta = Delta::from_bytes(&peer.export_delta()?.to_bytes()?)?;
                e.merge_delta(&delta)?;
                e.export_delta()?;
            }
            16 if step % 3 == 0 => {
                e.build_segments()?;
            }
            17 => {
                let seeds: Vec<u64> = (0..150).collect();
                let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(10));
                request.scorer = Scorer::Centroid;
                e.lookalike(&request)?;
            }
            18 => {
                let cats: Vec<(u64, u32)> = (0..3)
                    .map(|_| (rng.random_range(0..40), rng.random_range(0..3)))
                    .collect();
                e.bandit().set_item_categories(&cats);
            }
            _ => {}
        }
        let s = e.stats().bandit;
        assert!(s.clicks <= s.impressions, "step {step}: {s:?}");
        if step % 25 == 24 {
            let loaded = save_and_load(&e, &path)?;
            // Half the time the process "restarts" from the file.
            if rng.random_bool(0.5) {
                e = loaded;
                restarts += 1;
            }
        }
    }
    assert!(
        made > 100 && refused > 10 && restarts > 3,
        "{made} {refused} {restarts}"
    );
    Ok(())
}

#[test]
fn a_restarted_engine_never_reissues_a_decision_id() -> TestResult {
    let dir = tempdir()?;
    let path = dir.path().join("engine.gw");
    let e = engine(200, None, true)?;
    let candidates: Vec<u64> = (10..30).collect();
    let request = Request::new(Some(5), None, &candidates, 3);
    let first = e.decide(&request)?;
    e.save(&path)?;
    // Decided after the save; then the process dies.
    let lost = e.decide(&request)?;
    drop(e);
    let mut seen: HashSet<u64> = [first.id, lost.id].into();
    // Loaded, and loaded again (as after a second crash).
    for restart in 0..2 {
        let e = Engine::load(&path)?;
        let next = e.decide(&request)?;
        assert!(
            next.id > lost.id,
            "restart {restart}: {} after {}",
            next.id,
            lost.id
        );
        assert!(
            seen.insert(next.id),
            "restart {restart}: id {} reissued",
            next.id
        );
        // The same slate as the lost one: the draws follow the decision's
        // ordinal, not its id.
        assert_eq!(next.items, lost.items);
        // Feedback meant for the lost slate is refused, not credited to the
        // new one, which still takes its own.
        let fb = |decision| Feedback {
            decision,
            clicks: &[0],
            visible: None,
            now: None,
        };
        assert!(matches!(
            e.feedback(&fb(lost.id)),
            Err(Error::UnknownDecision(id)) if id == lost.id
        ));
        e.feedback(&fb(next.id))?;
        e.feedback(&fb(first.id))?; // open in the snapshot
        let s = e.stats().bandit;
        assert_eq!((s.rejected_unknown_decision, s.feedback_applied), (1, 2));
    }
    Ok(())
}

#[test]
fn replica_ids_are_checked_and_tag_every_decision() -> TestResult {
    let mut config = EngineConfig::new(DIM);
    config.replica_id = Some(1024);
    match Engine::new(config) {
        Err(Error::InvalidConfig { key, problem }) if key == "replica_id" => {
            assert!(problem.contains("0..=1023"), "{problem}")
        }
        other => panic!("expected an error naming replica_id, got {other:?}"),
    }
    let a = engine(100, Some(1023), false)?;
    let b = engine(100, Some(7), false)?;
    let candidates = [1, 2, 3];
    let mut ids = HashSet::new();
    for _ in 0..500 {
        for (e, replica) in [(&a, 1023), (&b, 7)] {
            let id = e.decide(&Request::new(None, None, &candidates, 2))?.id;
            assert_eq!(id & 1023, replica);
            assert!(ids.insert(id));
        }
    }
    Ok(())
}

#[test]
fn decisions_for_segments_the_engine_does_not_serve_are_refused() -> TestResult {
    let e = engine(300, None, false)?;
    let candidates = [1, 2, 3, 4];
    let in_segment = |s| Request::new(Some(3), Some(s), &candidates, 2);
    // No segment is served before the first build.
    assert!(matches!(
        e.decide(&in_segment(0)),
        Err(Error::UnknownSegment(0))
    ));
    e.build_segments()?;
    let served = e.segment_ids();
    assert!(!served.is_empty());
    let unknown = served.iter().max().copied().unwrap_or(0) + 1;
    match e.decide(&in_segment(unknown)) {
        Err(err @ Error::UnknownSegment(_)) => {
            assert!(err.to_string().contains(&format!("segment {unknown}")))
        }
        other => panic!("expected UnknownSegment, got {other:?}"),
    }
    assert_eq!(
        e.stats().bandit.decisions,
        0,
        "refused decisions are not counted"
    );
    // A served segment, and a user's own segment, are fine.
    e.decide(&in_segment(served[0]))?;
    e.decide(&Request::new(Some(3), None, &candidates, 2))?;
    assert_eq!(e.stats().bandit.decisions, 2);
    Ok(())
}

#[test]
fn engine_counters_survive_a_save_and_load() -> TestResult {
    let dir = tempdir()?;
    let path = dir.path().join("engine.gw");
    let e = engine(300, None, true)?;
    assert!(e.delete_user(7)? && e.delete_user(8)?);
    let seeds: Vec<u64> = (0..120).collect();
    let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(10));
    request.scorer = Scorer::Centroid;
    e.lookalike(&request)?;
    e.save(&path)?;
    e.save(&path)?;
    // Neither a failed save nor the bytes of a snapshot count as saves.
    assert!(e
        .save(dir.path().join("missing").join("engine.gw"))
        .is_err());
    let bytes = e.to_bytes()?;
    let s = e.stats();
    assert_eq!(
        (s.upserts, s.deletes, s.lookalikes, s.snapshots),
        (300, 2, 1, 2)
    );
    let loaded = Engine::load(&path)?;
    assert_eq!(loaded.stats(), s);
    assert_eq!(Engine::from_bytes(&bytes)?.stats(), s);
    // The count goes on over the lineage: the loaded engine's next save is
    // the third.
    loaded.upsert_embedding(5_000, &[0.25; DIM])?;
    loaded.save(&path)?;
    let again = Engine::load(&path)?.stats();
    assert_eq!(
        (
            again.upserts,
            again.deletes,
            again.lookalikes,
            again.snapshots
        ),
        (301, 2, 1, 3)
    );
    Ok(())
}
