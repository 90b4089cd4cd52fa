//! The user index, as a conformance suite run against every backend:
//! recall against exact search, upsert and delete semantics, filters, error
//! paths, snapshots (copied and memory-mapped), concurrent use, and
//! rebuilds that never block searches.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use groupwise::index::{recall_at_k, Backend, Precision};
use groupwise::{Error, Filter, IndexConfig, Neighbor, SearchMode, SearchOptions, UserIndex};
use groupwise_e2e::clustered_vectors;

const DIM: usize = 32;

fn graph() -> SearchOptions<'static> {
    SearchOptions {
        mode: SearchMode::Approximate,
        ..Default::default()
    }
}

fn exact() -> SearchOptions<'static> {
    SearchOptions {
        mode: SearchMode::Exact,
        ..Default::default()
    }
}

fn config(dim: usize, backend: Backend) -> IndexConfig {
    let mut cfg = IndexConfig::new(dim);
    cfg.backend = backend;
    cfg
}

fn index_of(backend: Backend, n: usize, seed: u64) -> (UserIndex, Vec<f32>) {
    let (data, _) = clustered_vectors(n, DIM, 20, 0.5, seed);
    let mut cfg = config(DIM, backend);
    cfg.capacity_hint = n;
    let index = UserIndex::new(cfg).expect("config");
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 10 + 3).collect();
    index.upsert_batch(&ids, &data).expect("insert");
    (index, data)
}

fn ids(ns: &[Neighbor]) -> Vec<u64> {
    ns.iter().map(|n| n.id).collect()
}

#[test]
fn recall_at_10_on_100k_clustered_vectors_usearch_f16() {
    recall_at_10_on_100k(Backend::Usearch, Precision::F16);
}

#[test]
fn recall_at_10_on_100k_clustered_vectors_usearch_i8() {
    recall_at_10_on_100k(Backend::Usearch, Precision::I8);
}

#[test]
fn recall_at_10_on_100k_clustered_vectors_hnsw_rs() {
    recall_at_10_on_100k(Backend::HnswRs, Precision::F32);
}

fn recall_at_10_on_100k(backend: Backend, precision: Precision) {
    // Queries are fresh draws from the same mixture (not indexed points).
    let (mut data, _) = clustered_vectors(100_500, 64, 100, 0.6, 11);
    let queries = data.split_off(100_000 * 64);
    let mut cfg = config(64, backend);
    cfg.graph_precision = precision;
    cfg.capacity_hint = 100_000;
    let index = UserIndex::new(cfg).expect("config");
    let users: Vec<u64> = (0..100_000).collect();
    index.upsert_batch(&users, &data).expect("insert");
    let truth = index.exact_search_batch(&queries, 10).expect("exact");
    let approx = index.search_batch(&queries, 10, &graph()).expect("graph");
    let recall = recall_at_k(&approx, &truth);
    assert!(
        recall >= 0.95,
        "{backend} {precision}: recall@10 = {recall:.4} at the default ef"
    );
    // Calibration on half of the queries picks the smallest ef that reaches
    // the target, and that ef carries over to the other half.
    let (calib, check) = queries.split_at(250 * 64);
    let cal = index
        .calibrate_ef(calib, 0.95, 10, 1024)
        .expect("calibrate");
    assert!(cal.reached && cal.recall >= 0.95, "{cal:?}");
    assert_eq!(index.ef_search(), cal.ef);
    assert!(
        cal.ef < 64,
        "the default ef 64 is more than this population needs: {cal:?}"
    );
    let truth2 = index.exact_search_batch(check, 10).expect("exact");
    let again = recall_at_k(
        &index.search_batch(check, 10, &graph()).expect("graph"),
        &truth2,
    );
    assert!(
        again >= 0.93,
        "recall@10 = {again:.4} on held-out queries at the calibrated ef {}",
        cal.ef
    );
    // The exact path is the ground truth: it agrees with a naive scan.
    let q = &queries[..64];
    let mut naive: Vec<(f32, u64)> = (0..100_000)
        .map(|i| {
            (
                groupwise::vector::dot(q, &data[i * 64..(i + 1) * 64]),
                i as u64,
            )
        })
        .collect();
    naive.sort_by(|a, b| b.0.total_cmp(&a.0));
    let want: Vec<u64> = naive.iter().take(10).map(|p| p.1).collect();
    assert_eq!(ids(&truth[0]), want);

    // All-pairs kNN lists from the base layer: every live user once, in ids()
    // order, never itself, and close to exact (measured 0.977 here; 0.94
    // with one refinement round instead of two).
    let lists = index.knn_lists(15).expect("lists");
    assert_eq!(lists.len(), 100_000);
    assert!(lists.iter().map(|(u, _)| *u).eq(index.ids()));
    let sample: Vec<u64> = (0..100_000).step_by(200).collect();
    let sample_vectors: Vec<f32> = sample
        .iter()
        .flat_map(|&u| data[u as usize * 64..(u as usize + 1) * 64].to_vec())
        .collect();
    let exact16 = index
        .exact_search_batch(&sample_vectors, 16)
        .expect("exact");
    let mut hit = 0;
    for (&u, truth) in sample.iter().zip(&exact16) {
        let got: HashSet<u64> = lists[u as usize].1.iter().map(|n| n.id).collect();
        assert!(!got.contains(&u) && got.len() == 15);
        hit += truth
            .iter()
            .filter(|n| n.id != u)
            .take(15)
            .filter(|n| got.contains(&n.id))
            .count();
    }
    let list_recall = hit as f64 / (sample.len() * 15) as f64;
    assert!(
        list_recall >= 0.96,
        "{backend} {precision}: kNN lists recall@15 = {list_recall:.4}"
    );
}

#[test]
fn deleted_and_replaced_users_are_never_returned() {
    for backend in Backend::ALL {
        deleted_and_replaced_users_are_never_returned_by(backend);
    }
}

fn deleted_and_replaced_users_are_never_returned_by(backend: Backend) {
    let (index, data) = index_of(backend, 3000, 1);
    let all: Vec<u64> = index.ids();
    let deleted: HashSet<u64> = all
        .iter()
        .copied()
        .filter(|id| id % 3 == 0)
        .take(600)
        .collect();
    for &id in &deleted {
        index.delete(id).expect("delete");
    }
    assert_eq!(index.len(), 3000 - deleted.len());
    match backend {
        // Real deletes: nothing stays behind, no rebuild is needed.
        Backend::Usearch => assert_eq!(index.stats().tombstones, 0),
        Backend::HnswRs => assert!(
            index.stats().tombstones > 0,
            "below the rebuild threshold tombstones stay"
        ),
    }
    for mode in [graph(), exact()] {
        let res = index
            .search_batch(&data[..200 * DIM], 20, &mode)
            .expect("search");
        for r in &res {
            assert_eq!(r.len(), 20);
            assert!(
                r.iter().all(|n| !deleted.contains(&n.id)),
                "a deleted user came back"
            );
        }
    }
    // Deleting past the threshold rebuilds the graph; results stay clean.
    let more: Vec<u64> = index.ids().into_iter().take(400).collect();
    for &id in &more {
        index.delete(id).expect("delete");
    }
    let stats = index.stats();
    match backend {
        Backend::Usearch => assert_eq!((stats.rebuilds, stats.tombstones), (0, 0)),
        Backend::HnswRs => assert!(stats.rebuilds >= 1 && stats.tombstones < 400, "{stats:?}"),
    }
    // Freed slots are reused by new users, who are found.
    let newcomers: Vec<u64> = (0..300).map(|i| 9_000_000 + i).collect();
    index
        .upsert_batch(&newcomers, &data[..300 * DIM])
        .expect("insert");
    for (i, &u) in newcomers.iter().enumerate().step_by(37) {
        let hits = index
            .search(&data[i * DIM..(i + 1) * DIM], 3, &graph())
            .expect("search");
        assert!(
            hits.iter().any(|n| n.id == u),
            "{backend}: newcomer {u} not found"
        );
    }
    for &u in &newcomers {
        index.delete(u).expect("delete");
    }
    let gone: HashSet<u64> = deleted.iter().chain(&more).copied().collect();
    let res = index
        .search_batch(&data[..100 * DIM], 10, &graph())
        .expect("search");
    assert!(res.iter().flatten().all(|n| !gone.contains(&n.id)));
    assert!(matches!(index.delete(more[0]), Err(Error::UnknownUser(_))));
    assert!(matches!(
        index.neighbors(more[0], 5, &graph()),
        Err(Error::UnknownUser(_))
    ));
}

#[test]
fn upsert_replaces_the_vector_of_a_user() {
    for backend in Backend::ALL {
        upsert_replaces_the_vector_of_a_user_in(backend);
    }
}

fn upsert_replaces_the_vector_of_a_user_in(backend: Backend) {
    let (index, data) = index_of(backend, 2000, 2);
    let target = index.ids()[17];
    let far = &data[1500 * DIM..1501 * DIM];
    let before = index.vector(target).expect("present");
    index.upsert(target, far).expect("upsert");
    assert_eq!(
        index.len(),
        2000,
        "an upsert of a known id does not add a user"
    );
    let after = index.vector(target).expect("present");
    assert_ne!(before, after);
    // The user is now found where its new vector is, and only once.
    let hits = index.search(far, 5, &graph()).expect("search");
    assert_eq!(hits.iter().filter(|n| n.id == target).count(), 1);
    assert!(hits.iter().take(2).any(|n| n.id == target));
    let near_old = index.search(&before, 50, &graph()).expect("search");
    assert!(near_old
        .iter()
        .all(|n| n.id != target || n.similarity < 0.99));
    // Last occurrence in a batch wins.
    index
        .upsert_batch(
            &[target, target],
            &[&data[..DIM], &data[DIM..2 * DIM]].concat(),
        )
        .expect("batch");
    let v = index.vector(target).expect("present");
    let want = groupwise::vector::normalized("v", &data[DIM..2 * DIM], DIM).expect("valid");
    assert!(v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn neighbors_exclude_the_user_and_are_sorted() {
    for backend in Backend::ALL {
        let (index, _) = index_of(backend, 4000, 3);
        for &id in index.ids().iter().take(50) {
            let ns = index.neighbors(id, 10, &graph()).expect("neighbours");
            assert_eq!(ns.len(), 10);
            assert!(ns.iter().all(|n| n.id != id));
            assert!(ns.windows(2).all(|w| w[0].similarity >= w[1].similarity));
            // Similarities are exact, whatever the graph's precision.
            let own = index.vector(id).expect("present");
            for n in &ns {
                let v = index.vector(n.id).expect("present");
                let exact = groupwise::vector::dot(&own, &v);
                assert!((n.similarity - exact).abs() < 1e-5, "{backend}");
            }
        }
    }
}

#[test]
fn filters_match_brute_force_at_every_selectivity() {
    for backend in Backend::ALL {
        filters_match_brute_force_in(backend);
    }
}

fn filters_match_brute_force_in(backend: Backend) {
    // Force the automatic choice between graph and exact scan to depend on the
    // filter alone (the population is small enough to be scanned otherwise).
    let (data, _) = clustered_vectors(5000, DIM, 20, 0.5, 4);
    let mut cfg = config(DIM, backend);
    cfg.exact_below = 0;
    let index = UserIndex::new(cfg).expect("config");
    let users: Vec<u64> = (0..5000u64).map(|i| i * 10 + 3).collect();
    index.upsert_batch(&users, &data).expect("insert");
    let all = index.ids();
    let q = &data[42 * DIM..43 * DIM];
    let brute = |keep: &dyn Fn(u64) -> bool, k: usize| -> Vec<u64> {
        let res = index.search(q, 5000, &exact()).expect("exact");
        res.into_iter()
            .filter(|n| keep(n.id))
            .take(k)
            .map(|n| n.id)
            .collect()
    };
    // Very selective allow-list (served exactly), and a broad one (served by the graph).
    for share in [7usize, 40, 2] {
        let allow: HashSet<u64> = all.iter().copied().step_by(share).collect();
        let opts = SearchOptions {
            filter: Some(Filter::Allow(&allow)),
            ..Default::default()
        };
        let got = ids(&index.search(q, 10, &opts).expect("search"));
        let want = brute(&|id| allow.contains(&id), 10);
        let overlap = got.iter().filter(|id| want.contains(id)).count();
        assert!(
            got.iter().all(|id| allow.contains(id)),
            "1/{share}: result outside the allow-list"
        );
        assert!(overlap >= 9, "1/{share}: {overlap}/10 of the exact answer");
    }
    let deny: HashSet<u64> = all.iter().copied().take(2500).collect();
    let opts = SearchOptions {
        filter: Some(Filter::Deny(&deny)),
        ..Default::default()
    };
    let got = index.search(q, 10, &opts).expect("deny");
    assert!(got.iter().all(|n| !deny.contains(&n.id)) && got.len() == 10);
    // A predicate keeping 3 users: all three come back, nothing else.
    let three = [all[5], all[500], all[4999]];
    let pred = |id: u64| three.contains(&id);
    let opts = SearchOptions {
        filter: Some(Filter::Predicate(&pred)),
        mode: SearchMode::Approximate,
        ..Default::default()
    };
    let mut got = ids(&index.search(q, 10, &opts).expect("predicate"));
    got.sort_unstable();
    let mut want = three.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "the exact fill-in finds every allowed user");
}

#[test]
fn bad_vectors_are_rejected_and_change_nothing() {
    for backend in Backend::ALL {
        bad_vectors_are_rejected_in(backend);
    }
}

fn bad_vectors_are_rejected_in(backend: Backend) {
    let (index, _) = index_of(backend, 100, 5);
    let before = index.stats();
    assert!(
        matches!(index.upsert(1, &[1.0; DIM - 1]), Err(Error::DimensionMismatch { expected: DIM, got, .. }) if got == DIM - 1)
    );
    let mut v = vec![0.5f32; DIM];
    v[3] = f32::NAN;
    assert!(matches!(
        index.upsert(1, &v),
        Err(Error::NonFinite { position: 3, .. })
    ));
    assert!(matches!(
        index.upsert(1, &[0.0; DIM]),
        Err(Error::ZeroVector { .. })
    ));
    // One bad row fails the whole batch before anything is written.
    let mut batch = vec![0.1f32; 3 * DIM];
    batch[2 * DIM] = f32::INFINITY;
    assert!(index.upsert_batch(&[7, 8, 9], &batch).is_err());
    assert!(
        index.upsert_batch(&[7, 8], &batch).is_err(),
        "rows and ids disagree"
    );
    assert_eq!(index.stats(), before);
    assert!(!index.contains(7));
    assert!(index.search(&[1.0; DIM + 1], 3, &graph()).is_err());
    assert!(index.search(&[f32::NAN; DIM], 3, &graph()).is_err());
    assert!(UserIndex::new(IndexConfig::new(0)).is_err());
    let mut cfg = config(8, backend);
    cfg.max_connections = 1000;
    assert!(UserIndex::new(cfg).is_err());
    for (key, set) in [
        (
            "index.ef_construction",
            (|c: &mut IndexConfig| c.ef_construction = 4_000_000_000) as fn(&mut IndexConfig),
        ),
        ("index.ef_search", |c: &mut IndexConfig| c.ef_search = 0),
        ("index.capacity_hint", |c: &mut IndexConfig| {
            c.capacity_hint = usize::MAX
        }),
    ] {
        let mut cfg = config(8, backend);
        set(&mut cfg);
        let err = UserIndex::new(cfg).expect_err("out of range");
        assert!(err.to_string().contains(key), "{err}");
    }
    // k = 0 and an empty index answer with nothing.
    assert!(index
        .search(&[1.0; DIM], 0, &graph())
        .expect("k=0")
        .is_empty());
    let empty = UserIndex::new(config(4, backend)).expect("config");
    assert!(empty
        .search(&[1.0; 4], 3, &graph())
        .expect("empty")
        .is_empty());
}

#[test]
fn concurrent_upserts_deletes_and_searches_stay_consistent() {
    for backend in Backend::ALL {
        concurrent_use_of(backend);
    }
}

fn concurrent_use_of(backend: Backend) {
    let (index, data) = index_of(backend, 3000, 6);
    let (fresh, _) = clustered_vectors(1200, DIM, 20, 0.5, 66);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (index, fresh) = (&index, &fresh);
            s.spawn(move || {
                for i in 0..400u64 {
                    let row = (t * 400 + i) as usize;
                    let id = 1_000_000 + t * 1000 + i;
                    index
                        .upsert(id, &fresh[row * DIM..(row + 1) * DIM])
                        .expect("upsert");
                    if i % 4 == 0 {
                        index.delete(id).expect("delete");
                    }
                }
            });
        }
        for t in 0..3usize {
            let (index, data) = (&index, &data);
            s.spawn(move || {
                for i in 0..300 {
                    let row = (t * 300 + i) % 3000;
                    let res = index
                        .search(&data[row * DIM..(row + 1) * DIM], 10, &graph())
                        .expect("search");
                    assert_eq!(res.len(), 10);
                }
            });
        }
    });
    assert_eq!(index.len(), 3000 + 3 * 300);
    for t in 0..3u64 {
        for i in 0..400u64 {
            assert_eq!(index.contains(1_000_000 + t * 1000 + i), i % 4 != 0);
        }
    }
}

#[test]
fn a_rebuild_never_blocks_searches_or_writers() {
    for backend in Backend::ALL {
        // Big enough that the rebuild takes a while on two cores.
        let n = 20_000;
        let (data, _) = clustered_vectors(n, DIM, 20, 0.5, 8);
        // Users written during the rebuild: other draws of the mixture.
        let (fresh, _) = clustered_vectors(n, DIM, 20, 0.5, 88);
        let index = UserIndex::new(config(DIM, backend)).expect("config");
        let users: Vec<u64> = (0..n as u64).collect();
        index.upsert_batch(&users, &data).expect("insert");
        let rebuilding = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let during: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (index, data, rebuilding, done, during) =
                    (&index, &data, &rebuilding, &done, &during);
                s.spawn(move || {
                    let mut i = t * 977;
                    while !done.load(Ordering::Acquire) {
                        let row = i % n;
                        let res = index
                            .search(&data[row * DIM..(row + 1) * DIM], 10, &graph())
                            .expect("search");
                        assert_eq!(res.len(), 10);
                        if rebuilding.load(Ordering::Acquire) {
                            during[t].fetch_add(1, Ordering::Relaxed);
                        }
                        i += 13;
                    }
                });
            }
            {
                let (index, fresh, rebuilding, done, during) =
                    (&index, &fresh, &rebuilding, &done, &during);
                s.spawn(move || {
                    let mut i = 0u64;
                    while !done.load(Ordering::Acquire) && (i as usize) < n {
                        let row = i as usize;
                        index
                            .upsert(5_000_000 + i, &fresh[row * DIM..(row + 1) * DIM])
                            .expect("upsert");
                        if rebuilding.load(Ordering::Acquire) {
                            during[4].fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            rebuilding.store(true, Ordering::Release);
            index.rebuild().expect("rebuild");
            rebuilding.store(false, Ordering::Release);
            done.store(true, Ordering::Release);
        });
        let counts: Vec<usize> = during.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert!(
            counts[..4].iter().all(|&c| c >= 10),
            "{backend}: searches completed by each thread during the rebuild: {counts:?}"
        );
        assert!(
            counts[4] >= 1,
            "{backend}: upserts during the rebuild: {counts:?}"
        );
        assert_eq!(index.stats().rebuilds, 1);
        // Everything written during the rebuild is in the new graph.
        let extra = index.len() - n;
        assert!(extra >= counts[4]);
        let mut found = 0;
        for i in 0..extra as u64 {
            let id = 5_000_000 + i;
            let v = index.vector(id).expect("present");
            let hits = index.search(&v, 3, &graph()).expect("search");
            found += usize::from(hits.iter().any(|h| h.id == id));
        }
        // A user missing from the new graph would never be found by its own
        // vector; HNSW itself misses a few in a hundred at most.
        assert!(
            found as f64 >= 0.97 * extra as f64,
            "{backend}: {found} of the {extra} users written during and after the rebuild found"
        );
    }
}

#[test]
fn snapshots_round_trip_copied_and_memory_mapped_on_every_backend() {
    use groupwise::engine::{Engine, EngineConfig, LoadOptions};
    let dir = tempfile::tempdir().expect("tmp");
    let (data, _) = clustered_vectors(3000, DIM, 20, 0.5, 9);
    let (fresh, _) = clustered_vectors(50, DIM, 20, 0.5, 99);
    for backend in Backend::ALL {
        for precision in Precision::ALL {
            if backend == Backend::HnswRs && precision != Precision::F32 {
                continue;
            }
            let what = format!("{backend} {precision}");
            let mut config = EngineConfig::new(DIM);
            config.index.backend = backend;
            config.index.graph_precision = precision;
            config.index.exact_below = 0;
            let engine = Engine::new(config).expect("config");
            let users: Vec<u64> = (0..3000).collect();
            engine.upsert_embeddings(&users, &data).expect("insert");
            for u in (0..3000).step_by(11) {
                engine.delete_user(u).expect("delete");
            }
            let probe = &data[..40 * DIM];
            let before = engine
                .index()
                .search_batch(probe, 10, &graph())
                .expect("search");
            let path = dir.path().join(format!("{backend}-{precision}.gw"));
            engine.save(&path).expect("save");
            for mmap in [true, false] {
                let loaded = Engine::load_with(
                    &path,
                    LoadOptions {
                        load_encoders: false,
                        mmap,
                        backend: None,
                    },
                )
                .expect("load");
                let stats = loaded.index().stats();
                assert_eq!(stats.backend, backend);
                assert_eq!(
                    stats.mapped,
                    mmap && backend == Backend::Usearch,
                    "{what}: a usearch graph is served from the map"
                );
                let after = loaded
                    .index()
                    .search_batch(probe, 10, &graph())
                    .expect("search");
                assert_eq!(after, before, "{what} mmap={mmap}: same answers");
                // Writes go on after a mapped load: the graph is copied first.
                let ids: Vec<u64> = (10_000..10_050).collect();
                loaded.upsert_embeddings(&ids, &fresh).expect("upsert");
                loaded.delete_user(1).expect("delete");
                assert!(!loaded.index().stats().mapped);
                for (i, &id) in ids.iter().enumerate() {
                    let hits = loaded
                        .index()
                        .search(&fresh[i * DIM..(i + 1) * DIM], 1, &graph())
                        .expect("search");
                    assert_eq!(hits[0].id, id, "{what} mmap={mmap}");
                }
                assert!(!loaded.contains(1));
                // And what it holds then saves and loads again.
                let again = Engine::from_bytes(&loaded.to_bytes().expect("bytes")).expect("load");
                assert_eq!(again.index().len(), loaded.index().len());
            }
        }
    }
}
