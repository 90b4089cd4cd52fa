//! The Engine facade: a MovieLens engine answers every query the same after
//! a snapshot round trip; damaged snapshots are refused; eight threads of
//! mixed operations lose no feedback and never return deleted users; three
//! replicas exchanging deltas (shuffled, duplicated) end where one engine
//! that saw every event ends.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use groupwise::bandit::{ClickModel, Feedback, Request};
use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::engine::{inspect, inspect_bytes, EncoderSpec, SNAPSHOT_VERSION};
use groupwise::lookalike::{LookalikeRequest, Scorer, Seeds, Size};
use groupwise::segments::ProfileOptions;
use groupwise::{Engine, EngineConfig, Error};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

type TestResult = groupwise::Result<()>;

/// What [`movielens_engine`] built.
struct MovieLens {
    engine: Engine,
    users: Vec<u64>,
    /// The candidate items.
    items: Vec<u64>,
    /// The last decision left open.
    open: u64,
    /// The last decision that got its feedback.
    closed: u64,
}

/// An engine over MovieLens 100K: every user encoded from its history with
/// the reference sequence encoder, segments built, and slates served and
/// clicked for a while.
fn movielens_engine() -> groupwise::Result<MovieLens> {
    let dir = groupwise_e2e::movielens_dir();
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let histories = log.histories();
    let mut config = EngineConfig::new(64);
    config.encoders = vec![EncoderSpec {
        name: "seq".into(),
        path: groupwise_e2e::model("ml100k-seq.onnx"),
    }];
    config.segments.min_size = 30;
    let engine = Engine::new(config)?;
    // Most users before the segments exist, the rest after (placed online).
    let (early, late) = histories.split_at(800);
    for h in early {
        let up = engine.upsert_sequence("seq", h.user, &h.items)?;
        assert_eq!(up.segment, None);
    }
    engine.build_segments()?;
    for h in late {
        let up = engine.upsert_sequence("seq", h.user, &h.items)?;
        assert!(up.segment.is_some(), "late users are placed in a segment");
    }
    let users: Vec<u64> = histories.iter().map(|h| h.user).collect();
    let mut counts: std::collections::HashMap<u64, usize> = Default::default();
    for h in &histories {
        for &i in &h.items {
            *counts.entry(i).or_default() += 1;
        }
    }
    let mut items: Vec<(u64, usize)> = counts.into_iter().collect();
    items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let items: Vec<u64> = items.iter().take(100).map(|e| e.0).collect();
    let mut rng = SmallRng::seed_from_u64(7);
    let (mut open, mut closed) = (0, 0);
    for round in 0..600 {
        let user = users[rng.random_range(0..users.len())];
        let d = engine.decide(&Request::new(Some(user), None, &items, 6))?;
        if round % 10 != 0 {
            // Every tenth decision stays open across the snapshot.
            let click = rng.random_range(0..4);
            engine.feedback(&Feedback {
                decision: d.id,
                clicks: &[click],
                visible: Some(4),
                now: None,
            })?;
            closed = d.id;
        } else {
            open = d.id;
        }
    }
    Ok(MovieLens {
        engine,
        users,
        items,
        open,
        closed,
    })
}

#[test]
fn movielens_engine_answers_every_query_the_same_after_a_snapshot() -> TestResult {
    let MovieLens {
        engine,
        users,
        items,
        open,
        closed,
    } = movielens_engine()?;
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tempdir".into(),
        source: e,
    })?;
    let path = dir.path().join("ml.gw");
    let saved = engine.save(&path)?;
    let info = inspect(&path)?;
    assert_eq!(info, saved);
    assert_eq!(info.version, SNAPSHOT_VERSION);
    assert_eq!(info.users, users.len());
    assert_eq!(info.segments, Some(engine.segment_ids().len()));
    assert_eq!(info.encoders, vec!["seq".to_string()]);
    assert_eq!(info.bandit_stats.feedback_applied, 540);
    assert_eq!(info.pending_decisions, 60);

    let loaded = Engine::load(&path)?;
    assert_eq!(loaded.encoder_names(), vec!["seq".to_string()]);
    assert_eq!(loaded.stats().users, engine.stats().users);
    assert_eq!(loaded.stats().bandit, engine.stats().bandit);
    assert_eq!(loaded.segment_ids(), engine.segment_ids());
    for &u in &users {
        assert_eq!(loaded.segment_of(u), engine.segment_of(u), "segment of {u}");
        assert_eq!(
            loaded.neighbors(u, 10)?,
            engine.neighbors(u, 10)?,
            "neighbours of {u}"
        );
    }
    // One segment's profile is that segment's entry of all the profiles.
    let all = engine.with_segments(|s| {
        s.expect("segments are built")
            .profiles(engine.index(), None, &ProfileOptions::default())
    })?;
    assert_eq!(all.len(), engine.segment_ids().len());
    for p in &all {
        assert_eq!(&engine.segment_profile(p.id)?, p);
        assert_eq!(loaded.segment_profile(p.id)?, *p);
    }
    for s in engine.segment_ids() {
        for &i in &items {
            assert_eq!(
                loaded.bandit().posterior_of(Some(s), Some(users[0]), i),
                engine.bandit().posterior_of(Some(s), Some(users[0]), i)
            );
        }
    }
    // Lookalike of the largest segment's members.
    let biggest = engine
        .segment_ids()
        .into_iter()
        .max_by_key(|&s| engine.segment_profile(s).map(|p| p.size).unwrap_or(0))
        .expect("segments exist");
    let seeds: Vec<u64> = users
        .iter()
        .copied()
        .filter(|&u| engine.segment_of(u) == Some(biggest))
        .collect();
    for scorer in [Scorer::Classifier, Scorer::Diffusion] {
        let mut request = LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(50));
        request.scorer = scorer;
        assert_eq!(loaded.lookalike(&request)?, engine.lookalike(&request)?);
    }
    // The next decision is the same slate (its draws follow the number of
    // decisions made, which the snapshot keeps), under a new id (ids follow
    // the clock, so a loaded engine never reissues one).
    let next = Request::new(Some(users[3]), None, &items, 6);
    let (a, b) = (loaded.decide(&next)?, engine.decide(&next)?);
    assert_eq!((&a.items, &a.scores), (&b.items, &b.scores));
    assert!(a.id > closed && a.id > open);
    // An open decision from before the snapshot takes its feedback after it;
    // one that got its feedback before is refused.
    let fb = |decision| Feedback {
        decision,
        clicks: &[0],
        visible: None,
        now: None,
    };
    loaded.feedback(&fb(open))?;
    assert!(matches!(
        loaded.feedback(&fb(closed)),
        Err(Error::UnknownDecision(id)) if id == closed
    ));
    // Upserting from behaviour on the loaded engine (its encoder re-opened)
    // lands where it lands on the original.
    let a = engine.upsert_sequence("seq", 99_999, &items[..20])?;
    let b = loaded.upsert_sequence("seq", 99_999, &items[..20])?;
    assert_eq!(a, b);
    Ok(())
}

/// A small synthetic engine with segments and bandit state.
fn small_engine(replica: Option<u64>) -> groupwise::Result<Engine> {
    let dim = 16;
    let mut config = EngineConfig::new(dim);
    config.segments.min_size = 40;
    config.index.exact_below = 0; // exercise the graph
    config.replica_id = replica;
    let engine = Engine::new(config)?;
    let (vectors, _) = groupwise_e2e::clustered_vectors(1_200, dim, 6, 0.3, 11);
    let ids: Vec<u64> = (0..1_200).collect();
    engine.upsert_embeddings(&ids, &vectors)?;
    engine.build_segments()?;
    let candidates: Vec<u64> = (500..540).collect();
    for u in 0..200u64 {
        let d = engine.decide(&Request::new(Some(u), None, &candidates, 5))?;
        engine.feedback(&Feedback {
            decision: d.id,
            clicks: &[(u % 5) as usize],
            visible: None,
            now: None,
        })?;
    }
    Ok(engine)
}

#[test]
fn damaged_snapshots_are_refused_never_loaded_wrong() -> TestResult {
    let engine = small_engine(None)?;
    let bytes = engine.to_bytes()?;
    let good = Engine::from_bytes(&bytes)?;
    assert_eq!(good.stats().bandit, engine.stats().bandit);
    let mut rng = SmallRng::seed_from_u64(2024);
    for trial in 0..300 {
        let mut bad = bytes.clone();
        for _ in 0..rng.random_range(1..=3) {
            let bit = rng.random_range(0..bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
        }
        match Engine::from_bytes(&bad) {
            Err(Error::CorruptSnapshot { .. }) => {}
            other => panic!("flip trial {trial}: expected a corruption error, got {other:?}"),
        }
        assert!(inspect_bytes(&bad).is_err());
    }
    for _ in 0..100 {
        let cut = rng.random_range(0..bytes.len());
        assert!(matches!(
            Engine::from_bytes(&bytes[..cut]),
            Err(Error::CorruptSnapshot { .. })
        ));
    }
    // A file from another program, and an empty one.
    assert!(Engine::from_bytes(b"PK\x03\x04 not a snapshot at all, but long enough").is_err());
    assert!(Engine::from_bytes(&[]).is_err());
    Ok(())
}

/// Rewrites a snapshot's version field and fixes the checksum, as a newer
/// build would have written it.
fn with_version(bytes: &[u8], version: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[8..12].copy_from_slice(&version.to_le_bytes());
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&out[8..24]);
    h.update(&out[32..]);
    out[24..32].copy_from_slice(&h.digest().to_le_bytes());
    out
}

#[test]
fn snapshots_of_other_versions_say_which_version_and_what_to_do() -> TestResult {
    let engine = small_engine(None)?;
    let bytes = engine.to_bytes()?;
    assert!(Engine::from_bytes(&with_version(&bytes, SNAPSHOT_VERSION)).is_ok());
    match Engine::from_bytes(&with_version(&bytes, SNAPSHOT_VERSION + 1)) {
        Err(e @ Error::SnapshotVersion { .. }) => {
            let text = e.to_string();
            assert!(text.contains("newer"), "{text}");
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    match Engine::from_bytes(&with_version(&bytes, 0)) {
        Err(Error::SnapshotVersion { found: 0, .. }) => {}
        other => panic!("expected a version error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_failed_save_leaves_the_previous_snapshot_intact() -> TestResult {
    let engine = small_engine(None)?;
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tempdir".into(),
        source: e,
    })?;
    let path = dir.path().join("engine.gw");
    engine.save(&path)?;
    let before = std::fs::read(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    // Saving into a folder that does not exist fails cleanly...
    assert!(engine
        .save(dir.path().join("missing").join("engine.gw"))
        .is_err());
    // ... and a save over a path that is a folder fails without touching it.
    let folder = dir.path().join("folder.gw");
    std::fs::create_dir(&folder).map_err(|e| Error::Io {
        path: folder.clone(),
        source: e,
    })?;
    assert!(engine.save(&folder).is_err());
    assert!(folder.is_dir());
    assert_eq!(
        std::fs::read(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e
        })?,
        before
    );
    Engine::load(&path)?;
    Ok(())
}

#[test]
fn eight_threads_of_mixed_operations_lose_nothing() -> TestResult {
    let engine = Arc::new(small_engine(None)?);
    let base = engine.stats().bandit;
    let deleted: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let sent = Arc::new(Mutex::new((0u64, 0u64))); // (feedback events, clicks)
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let engine = engine.clone();
            let deleted = deleted.clone();
            let sent = sent.clone();
            std::thread::spawn(move || -> groupwise::Result<()> {
                let mut rng = SmallRng::seed_from_u64(100 + t);
                let dim = engine.config().dim;
                // Each thread deletes users from its own slice of users 0..600
                // and upserts new users in its own id range; users 600..1200
                // are queried and served.
                let mut mine: Vec<u64> = (t * 75..(t + 1) * 75).collect();
                mine.shuffle(&mut rng);
                let mut next_new = 10_000 + t * 10_000;
                let candidates: Vec<u64> = (500..560).collect();
                let (mut events, mut clicks) = (0u64, 0u64);
                for op in 0..400 {
                    match rng.random_range(0..10) {
                        0 => {
                            let v: Vec<f32> =
                                (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                            engine.upsert_embedding(next_new, &v)?;
                            next_new += 1;
                        }
                        1 => {
                            if let Some(u) = mine.pop() {
                                assert!(engine.delete_user(u)?);
                                deleted.lock().insert(u);
                            }
                        }
                        2 | 3 => {
                            let gone = deleted.lock().clone();
                            let q = rng.random_range(600..1_200);
                            if let Ok(list) = engine.neighbors(q, 10) {
                                assert!(list.iter().all(|n| !gone.contains(&n.id)));
                            }
                        }
                        4 => {
                            let gone = deleted.lock().clone();
                            let seeds: Vec<u64> = (1_000..1_200).collect();
                            let mut request =
                                LookalikeRequest::new(Seeds::Users(&seeds), Size::Count(30));
                            request.scorer = Scorer::Centroid;
                            let out = engine.lookalike(&request)?;
                            assert!(out.users.iter().all(|u| !gone.contains(&u.id)));
                        }
                        5 if op % 50 == 0 => {
                            // A snapshot in the middle of everything.
                            let bytes = engine.to_bytes()?;
                            Engine::from_bytes(&bytes)?;
                        }
                        _ => {
                            let user = rng.random_range(600..1_200);
                            let d =
                                engine.decide(&Request::new(Some(user), None, &candidates, 4))?;
                            let click: Vec<usize> = if rng.random_bool(0.5) {
                                vec![rng.random_range(0..d.items.len())]
                            } else {
                                vec![]
                            };
                            engine.feedback(&Feedback {
                                decision: d.id,
                                clicks: &click,
                                visible: None,
                                now: None,
                            })?;
                            events += 1;
                            clicks += click.len() as u64;
                        }
                    }
                }
                let mut s = sent.lock();
                s.0 += events;
                s.1 += clicks;
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panicked")?;
    }
    let (events, clicks) = *sent.lock();
    let stats = engine.stats().bandit;
    assert_eq!(stats.feedback_applied - base.feedback_applied, events);
    assert_eq!(stats.clicks - base.clicks, clicks);
    assert_eq!(stats.rejected_unknown_decision, 0);
    // Every click is in the pooled counts exactly once (PBM: a click adds one
    // success to the clicked item).
    let pooled: f64 = (500..560)
        .map(|i| engine.bandit().pooled_counts(i).successes)
        .sum();
    assert_eq!(pooled, stats.clicks as f64);
    let gone = deleted.lock().clone();
    assert!(!gone.is_empty());
    for &u in &gone {
        assert!(!engine.contains(u));
        assert_eq!(engine.segment_of(u), None);
    }
    for q in (600..1_200).step_by(7) {
        assert!(engine
            .neighbors(q, 20)?
            .iter()
            .all(|n| !gone.contains(&n.id)));
    }
    assert!(
        engine.unsegmented_users().is_empty(),
        "every live user has a segment"
    );
    // Still answers, and rebuilds.
    engine.build_segments()?;
    assert!(engine.unsegmented_users().is_empty());
    engine.decide(&Request::new(Some(700), None, &[1, 2, 3], 2))?;
    Ok(())
}

/// One event of the replica test: observations for a user in a segment at a time.
struct Event {
    replica: usize,
    segment: u32,
    user: u64,
    observations: Vec<(u64, f64, f64)>,
    now: f64,
}

#[test]
fn three_replicas_exchanging_shuffled_duplicated_deltas_equal_one_engine() -> TestResult {
    let mut rng = SmallRng::seed_from_u64(99);
    let mut config = EngineConfig::new(8);
    config.bandit.half_life = Some(3_600.0);
    let replicas: Vec<Engine> = (1..=3)
        .map(|id| {
            let mut c = config.clone();
            c.replica_id = Some(id);
            Engine::new(c)
        })
        .collect::<groupwise::Result<_>>()?;
    let reference = Engine::new(config)?;
    let click_model: ClickModel = replicas[0].config().bandit.click_model.clone();
    // Events in time order, each served by a random replica. Half come from
    // real decisions (cascade clicks); half are logged observations.
    let mut events = Vec::new();
    let mut now = 1_000_000.0;
    for e in 0..3_000u64 {
        now += rng.random_range(0.0..30.0);
        let replica = rng.random_range(0..3);
        let segment = rng.random_range(0..4);
        let user = rng.random_range(0..50);
        let observations = if e % 2 == 0 {
            let candidates: Vec<u64> = (0..30).collect();
            // The segments here are the host's own labels, not segments the
            // engine built (Engine::decide serves only those): decide with
            // the bandit itself.
            let d = replicas[replica].bandit().decide(&Request {
                segment: Some(segment),
                now: Some(now),
                ..Request::new(Some(user), None, &candidates, 5)
            })?;
            // A click on one of the 4 visible slots.
            let clicks: Vec<usize> = if rng.random_bool(0.4) {
                vec![rng.random_range(0..4)]
            } else {
                vec![]
            };
            replicas[replica].feedback(&Feedback {
                decision: d.id,
                clicks: &clicks,
                visible: Some(4),
                now: Some(now),
            })?;
            let updates = click_model.updates(5, &clicks, 4)?;
            d.items
                .iter()
                .zip(updates)
                .filter(|(_, u)| u.0 + u.1 > 0.0)
                .map(|(&i, u)| (i, u.0, u.1))
                .collect()
        } else {
            let obs = vec![(
                rng.random_range(0..30),
                rng.random_range(0.0..1.0),
                rng.random_range(0.0..2.0),
            )];
            replicas[replica]
                .bandit()
                .record(Some(segment), Some(user), &obs, Some(now))?;
            obs
        };
        events.push(Event {
            replica,
            segment,
            user,
            observations,
            now,
        });
    }
    // The reference records exactly the observations the replicas applied,
    // in time order.
    let served: BTreeSet<usize> = events.iter().map(|e| e.replica).collect();
    assert_eq!(served.len(), 3);
    for e in &events {
        reference
            .bandit()
            .record(Some(e.segment), Some(e.user), &e.observations, Some(e.now))?;
    }
    // Deltas: each replica exports a few times; every delta is published
    // 1-3 times and delivered to every replica in a random order.
    let mut published: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3 {
        for r in &replicas {
            let bytes = r.export_delta()?.to_bytes()?;
            for _ in 0..rng.random_range(1..=3) {
                published.push(bytes.clone());
            }
        }
    }
    for r in &replicas {
        let mut inbox = published.clone();
        inbox.shuffle(&mut rng);
        for bytes in &inbox {
            r.merge_delta(&groupwise::bandit::Delta::from_bytes(bytes)?)?;
        }
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    let same = |a: groupwise::bandit::Counts, b: groupwise::bandit::Counts| {
        close(a.successes, b.successes) && close(a.failures, b.failures)
    };
    for item in 0..30 {
        let want = reference.bandit().pooled_counts(item);
        assert!(want.total() > 0.0);
        for (k, r) in replicas.iter().enumerate() {
            let got = r.bandit().pooled_counts(item);
            assert!(
                same(got, want),
                "replica {k} item {item}: {got:?} vs {want:?}"
            );
            for s in 0..4 {
                assert!(same(
                    r.bandit().segment_counts(s, item),
                    reference.bandit().segment_counts(s, item)
                ));
            }
            for u in 0..50 {
                let (a, b) = (
                    r.bandit().user_counts(u, item),
                    reference.bandit().user_counts(u, item),
                );
                assert!(
                    match (a, b) {
                        (Some(a), Some(b)) => same(a, b),
                        (None, None) => true,
                        _ => false,
                    },
                    "replica {k} user {u} item {item}: {a:?} vs {b:?}"
                );
            }
        }
    }
    let merged: u64 = replicas
        .iter()
        .map(|r| r.stats().bandit.merged_deltas)
        .sum();
    assert_eq!(
        merged,
        3 * 3 * 2,
        "each replica merges the 2 others' 3 deltas once"
    );
    Ok(())
}

#[test]
fn the_example_config_loads_both_reference_encoders_and_bad_input_changes_nothing() -> TestResult {
    let config =
        EngineConfig::from_file(groupwise_e2e::repo_root().join("examples/groupwise.json"))?;
    assert!(
        config.encoders.iter().all(|e| e.path.is_file()),
        "relative paths resolved"
    );
    let engine = Engine::new(config)?;
    assert_eq!(
        engine.encoder_names(),
        vec!["bag".to_string(), "seq".to_string()]
    );
    let a = engine.upsert_sequence("seq", 1, &[50, 172, 133])?;
    assert_eq!(a.segment, None);
    engine.upsert_sequence("bag", 2, &[50, 172, 133])?;
    assert_eq!(engine.stats().users, 2);
    // Bad input: a clear error each time, and the engine is unchanged.
    assert!(matches!(
        engine.upsert_sequence("nope", 3, &[1]),
        Err(Error::UnknownEncoder(_))
    ));
    assert!(matches!(
        engine.upsert_embedding(3, &[0.5; 63]),
        Err(Error::DimensionMismatch {
            expected: 64,
            got: 63,
            ..
        })
    ));
    let mut nan = vec![0.5f32; 64];
    nan[7] = f32::NAN;
    assert!(matches!(
        engine.upsert_embedding(3, &nan),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        engine.upsert_embedding(3, &[0.0; 64]),
        Err(Error::ZeroVector { .. })
    ));
    assert!(matches!(engine.neighbors(3, 5), Err(Error::UnknownUser(3))));
    assert!(!engine.delete_user(3)?);
    assert!(matches!(engine.segment_profile(0), Err(Error::NoSegments)));
    assert!(matches!(
        engine.feedback(&Feedback {
            decision: 77,
            clicks: &[0],
            visible: None,
            now: None
        }),
        Err(Error::UnknownDecision(77))
    ));
    assert!(engine.export_delta().is_err(), "no replica id configured");
    assert!(matches!(
        engine.build_segments(),
        Err(Error::BelowPrivacyFloor {
            users: 2,
            floor: 30
        })
    ));
    assert_eq!(engine.stats().users, 2);
    assert!(engine.contains(1) && engine.contains(2) && !engine.contains(3));
    Ok(())
}
