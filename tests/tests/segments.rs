//! Data-driven segments: planted partitions with known answers (clustered
//! embeddings and a stochastic block model graph), metric parity with
//! scikit-learn and igraph, the privacy floor, determinism, stable ids across
//! rebuilds, online assignment, and profiles on MovieLens 100K.

use std::collections::{BTreeSet, HashMap, HashSet};

use groupwise::segments::metrics::{ari, nmi, silhouette};
use groupwise::segments::{
    detect, AssignRule, Behaviour, CommunityConfig, Method, ProfileOptions, SegmentConfig,
    Segments, WeightedGraph,
};
use groupwise::{Error, IndexConfig, UserIndex};
use groupwise_e2e::{clustered_vectors, repo_root};
use rand::{Rng, SeedableRng};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `n` users in `clusters` planted clusters, indexed; user id = row.
fn planted_index(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
) -> (UserIndex, Vec<u32>) {
    let (data, truth) = clustered_vectors(n, dim, clusters, spread, seed);
    let index = UserIndex::new(IndexConfig::new(dim)).expect("valid config");
    let ids: Vec<u64> = (0..n as u64).collect();
    index.upsert_batch(&ids, &data).expect("finite vectors");
    (index, truth.into_iter().map(|t| t as u32).collect())
}

/// Segment of every user in id order (u32::MAX for none).
fn labels(segments: &Segments, n: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|u| segments.segment_of(u).unwrap_or(u32::MAX))
        .collect()
}

fn reference() -> serde_json::Value {
    let path = repo_root().join("tests/reference/segment_metrics.json");
    let text = std::fs::read_to_string(&path).expect("tests/reference/segment_metrics.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as u32)
        .collect()
}

#[test]
fn metrics_match_scikit_learn_and_igraph() {
    let r = reference();
    let (a, b) = (u32s(&r["a"]), u32s(&r["b"]));
    let close = |got: f64, key: &str, tol: f64| {
        let want = r[key].as_f64().expect("number");
        assert!((got - want).abs() < tol, "{key}: {got} vs reference {want}");
    };
    close(nmi(&a, &b), "nmi", 1e-12);
    close(ari(&a, &b), "ari", 1e-12);
    let dim = r["dim"].as_u64().expect("dim") as usize;
    let vectors: Vec<f32> = r["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect();
    close(
        silhouette(&vectors, dim, &u32s(&r["silhouette_labels"]), None, 0),
        "silhouette",
        1e-5,
    );

    let n = r["graph_n"].as_u64().expect("n") as usize;
    let edges: Vec<(u32, u32, f64)> = r["graph_edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e[0].as_u64().expect("a") as u32,
                e[1].as_u64().expect("b") as u32,
                e[2].as_f64().expect("w"),
            )
        })
        .collect();
    let graph = WeightedGraph::from_edges(n, &edges).expect("valid graph");
    let part = u32s(&r["graph_partition"]);
    close(graph.modularity(&part, 1.0), "modularity_1", 1e-12);
    close(graph.modularity(&part, 2.0), "modularity_2", 1e-12);
    // Our Leiden reaches leidenalg's modularity on the same graph (within 0.5 %)
    // and recovers the planted blocks.
    let found = detect(&graph, &CommunityConfig::default()).expect("valid config");
    let reference = r["leidenalg_modularity"].as_f64().expect("number");
    assert!(
        found.modularity >= reference * 0.995,
        "{} vs leidenalg {reference}",
        found.modularity
    );
    assert!(nmi(&found.membership, &u32s(&r["graph_truth"])) > 0.95);
}

/// Stochastic block model: `blocks` blocks of `per` nodes.
fn sbm(blocks: usize, per: usize, p_in: f64, p_out: f64, seed: u64) -> (WeightedGraph, Vec<u32>) {
    let n = blocks * per;
    let truth: Vec<u32> = (0..n).map(|i| (i / per) as u32).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let p = if truth[i] == truth[j] { p_in } else { p_out };
            if rng.random::<f64>() < p {
                edges.push((i as u32, j as u32, 1.0));
            }
        }
    }
    (
        WeightedGraph::from_edges(n, &edges).expect("valid graph"),
        truth,
    )
}

#[test]
fn leiden_and_louvain_recover_a_stochastic_block_model() {
    // 12 blocks of 150: expected 15 neighbours inside the block, 8 outside.
    let (graph, truth) = sbm(12, 150, 0.1, 0.0049, 3);
    for method in [
        groupwise::segments::Algorithm::Leiden,
        groupwise::segments::Algorithm::Louvain,
    ] {
        for seed in 0..3 {
            let config = CommunityConfig {
                algorithm: method,
                seed,
                ..Default::default()
            };
            let found = detect(&graph, &config).expect("valid config");
            let score = nmi(&found.membership, &truth);
            assert!(
                score >= 0.9,
                "{method:?} seed {seed}: NMI {score}, {} communities",
                found.count
            );
            if method == groupwise::segments::Algorithm::Leiden {
                assert!(graph.disconnected_communities(&found.membership).is_empty());
            }
        }
    }
}

#[test]
fn leiden_communities_stay_connected_where_louvain_can_split_them() {
    // A sparse, noisy SBM on which Louvain leaves some communities
    // disconnected for some seeds (measured: 3 over these 20); Leiden's
    // guarantee must hold for every seed.
    let (graph, _) = sbm(20, 60, 0.02, 0.004, 3);
    let mut disconnected = [0usize; 2];
    for seed in 0..20 {
        for (i, algorithm) in [
            groupwise::segments::Algorithm::Louvain,
            groupwise::segments::Algorithm::Leiden,
        ]
        .into_iter()
        .enumerate()
        {
            let config = CommunityConfig {
                algorithm,
                seed,
                ..Default::default()
            };
            let found = detect(&graph, &config).expect("valid config");
            disconnected[i] += graph.disconnected_communities(&found.membership).len();
        }
    }
    assert!(
        disconnected[0] > 0,
        "the graph no longer shows Louvain's defect"
    );
    assert_eq!(
        disconnected[1], 0,
        "Leiden returned disconnected communities"
    );
}

#[test]
fn planted_clusters_are_recovered_by_both_methods() -> TestResult {
    let (index, truth) = planted_index(4000, 32, 8, 0.35, 5);
    for method in [Method::leiden(), Method::louvain(), Method::kmeans(8)] {
        let config = SegmentConfig {
            method: method.clone(),
            min_size: 50,
            ..Default::default()
        };
        let segments = Segments::build(&index, config)?;
        let got = labels(&segments, 4000);
        let score = nmi(&got, &truth);
        assert!(score >= 0.9, "{}: NMI {score}", method.name());
        assert!(segments.report().cohesion > 0.8, "{:?}", segments.report());
        if let Method::Graph { .. } = method {
            assert!(segments.report().modularity.unwrap_or(0.0) > 0.5);
        }
    }
    Ok(())
}

#[test]
fn builds_are_deterministic_for_a_seed() -> TestResult {
    let (index, _) = planted_index(3000, 16, 6, 0.6, 9);
    for method in [Method::leiden(), Method::kmeans(6)] {
        let config = SegmentConfig {
            method,
            ..Default::default()
        };
        let a = Segments::build(&index, config.clone())?;
        let b = Segments::build(&index, config.clone())?;
        assert_eq!(a.assignments(), b.assignments());
        let c = Segments::build(
            &index,
            SegmentConfig {
                seed: 1234,
                ..config
            },
        )?;
        // Another seed is another run, but on clear clusters the same answer.
        assert!(ari(&labels(&a, 3000), &labels(&c, 3000)) > 0.9);
    }
    Ok(())
}

#[test]
fn the_privacy_floor_holds_after_merging_and_under_deletions() -> TestResult {
    // Many small, overlapping clusters (one connected kNN graph): at
    // resolution 3 Leiden finds groups below the floor.
    let (index, _) = planted_index(3000, 16, 40, 1.0, 21);
    let floor = 120;
    let config = SegmentConfig {
        method: Method::Graph {
            algorithm: groupwise::segments::Algorithm::Leiden,
            k: 10,
            resolution: 3.0,
            iterations: 2,
            ef: None,
        },
        min_size: floor,
        ..Default::default()
    };
    let mut segments = Segments::build(&index, config)?;
    let report = segments.report().clone();
    assert!(
        report.merged_groups > 0,
        "the test needs groups below the floor: {report:?}"
    );
    assert_eq!(report.users, 3000);
    let mut total = 0;
    for id in segments.ids() {
        let size = segments.size(id)?;
        assert!(size >= floor, "segment {id} has {size} < {floor}");
        total += size;
    }
    assert_eq!(total, 3000, "every user keeps a segment");
    // Merging along graph edges keeps Leiden's communities connected.
    let knn = groupwise::graph::KnnGraph::build(&index, 10, &Default::default())?;
    let graph = WeightedGraph::from_knn(&knn);
    assert!(
        graph.disconnected_communities(&[0; 3000]).is_empty(),
        "the graph must be connected"
    );
    let membership: Vec<u32> = knn
        .users()
        .iter()
        .map(|&u| segments.segment_of(u).unwrap_or(u32::MAX))
        .collect();
    assert!(graph.disconnected_communities(&membership).is_empty());

    // Delete members of the smallest segment until it would fall below the
    // floor: it is dissolved, everyone left lands in a served segment.
    let smallest = segments
        .ids()
        .into_iter()
        .min_by_key(|&id| segments.size(id).unwrap_or(usize::MAX))
        .ok_or("no segment")?;
    let victims: Vec<u64> = segments.members(smallest, None, usize::MAX)?.members;
    let excess = victims.len() - floor + 1;
    let mut dissolved = None;
    for &u in &victims[..excess] {
        index.delete(u)?;
        let removal = segments.remove(&index, u)?;
        assert_eq!(removal.segment, Some(smallest));
        dissolved = removal.dissolved;
    }
    let moved = dissolved.ok_or("the segment was not dissolved")?;
    assert_eq!(moved.len(), floor - 1);
    assert!(matches!(
        segments.size(smallest),
        Err(Error::UnknownSegment(_))
    ));
    for &(u, s) in &moved {
        assert_eq!(segments.segment_of(u), Some(s));
        assert_ne!(s, smallest);
    }
    for id in segments.ids() {
        assert!(segments.size(id)? >= floor);
    }
    Ok(())
}

#[test]
fn too_few_users_for_the_floor_is_a_clear_error() -> TestResult {
    let (index, _) = planted_index(40, 8, 2, 0.3, 1);
    let err = Segments::build(&index, SegmentConfig::default())
        .err()
        .ok_or("expected an error")?;
    assert!(
        matches!(
            err,
            Error::BelowPrivacyFloor {
                users: 40,
                floor: 50
            }
        ),
        "{err}"
    );
    let bad = SegmentConfig {
        min_size: 0,
        ..Default::default()
    };
    assert!(matches!(
        Segments::build(&index, bad),
        Err(Error::InvalidConfig { key, .. }) if key == "segments.min_size"
    ));
    let bad = SegmentConfig {
        method: Method::kmeans(0),
        min_size: 5,
        ..Default::default()
    };
    assert!(Segments::build(&index, bad).is_err());
    Ok(())
}

#[test]
fn rebuilds_keep_ids_unchanged_data_has_no_churn() -> TestResult {
    for method in [Method::leiden(), Method::kmeans(8)] {
        let (index, _) = planted_index(4000, 24, 8, 0.5, 33);
        let config = SegmentConfig {
            method: method.clone(),
            ..Default::default()
        };
        let first = Segments::build(&index, config)?;
        let (second, report) = first.rebuild(&index)?;
        assert_eq!(report.churn, 0.0, "{}: {report:?}", method.name());
        assert_eq!(report.users_compared, 4000);
        assert!(report.created.is_empty() && report.retired.is_empty());
        assert_eq!(first.assignments(), second.assignments());
    }
    Ok(())
}

#[test]
fn rebuilds_after_small_changes_have_low_churn_and_keep_ids() -> TestResult {
    for method in [Method::leiden(), Method::kmeans(8)] {
        let (index, _) = planted_index(4000, 24, 8, 0.5, 33);
        let config = SegmentConfig {
            method: method.clone(),
            ..Default::default()
        };
        let first = Segments::build(&index, config)?;
        // 2 % new users (drawn from the same clusters), 1 % deleted.
        let (extra, _) = clustered_vectors(4080, 24, 8, 0.5, 33);
        let new_ids: Vec<u64> = (4000..4080).collect();
        index.upsert_batch(&new_ids, &extra[4000 * 24..])?;
        for u in (0..4000).step_by(100) {
            index.delete(u)?;
        }
        let (second, report) = first.rebuild(&index)?;
        assert!(
            report.churn < 0.05,
            "{}: churn {}",
            method.name(),
            report.churn
        );
        assert_eq!(report.users_compared, 3960);
        let before: BTreeSet<u32> = first.ids().into_iter().collect();
        let kept: BTreeSet<u32> = report.kept.iter().map(|k| k.id).collect();
        assert_eq!(
            kept,
            before,
            "{}: every segment keeps its id",
            method.name()
        );
        // Ids never reused: new ones are above every old one.
        let max_old = before.iter().max().copied().unwrap_or(0);
        assert!(report.created.iter().all(|&c| c > max_old));
        assert!(second.segment_of(4050).is_some(), "new users get a segment");
        // Overlaps account for every user segmented both times.
        let overlaps = first.overlaps(&second);
        assert_eq!(overlaps.iter().map(|o| o.2).sum::<usize>(), 3960);
    }
    Ok(())
}

#[test]
fn online_assignment_and_paginated_membership() -> TestResult {
    let (index, truth) = planted_index(2000, 16, 4, 0.3, 8);
    for rule in [AssignRule::Centroid, AssignRule::KnnVote { k: 10 }] {
        let mut segments = Segments::build(
            &index,
            SegmentConfig {
                method: Method::kmeans(4),
                assign: rule,
                ..Default::default()
            },
        )?;
        // New users from the same clusters join the segment of their cluster.
        let (fresh, fresh_truth) = clustered_vectors(2100, 16, 4, 0.3, 8);
        let segment_of_cluster: HashMap<u32, u32> = (0..2000)
            .map(|u| (truth[u], segments.segment_of(u as u64).unwrap_or(u32::MAX)))
            .collect();
        for u in 2000..2100 {
            index.upsert(u as u64, &fresh[u * 16..(u + 1) * 16])?;
            let placed = segments.place(&index, u as u64)?;
            assert_eq!(
                placed.segment,
                segment_of_cluster[&(fresh_truth[u] as u32)],
                "{rule:?}"
            );
            assert_eq!(segments.segment_of(u as u64), Some(placed.segment));
        }
        // Pages cover each segment exactly once, in id order.
        for id in segments.ids() {
            let mut seen: Vec<u64> = Vec::new();
            let mut after = None;
            loop {
                let page = segments.members(id, after, 37)?;
                assert!(page.members.len() <= 37);
                seen.extend(&page.members);
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(seen.len(), segments.size(id)?);
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(matches!(
            segments.members(999, None, 10),
            Err(Error::UnknownSegment(999))
        ));
        assert!(matches!(
            segments.place(&index, 123_456),
            Err(Error::UnknownUser(123_456))
        ));
        assert!(matches!(
            segments.nearest(&[1.0; 3]),
            Err(Error::DimensionMismatch { .. })
        ));
        assert!(segments.nearest(&[f32::NAN; 16]).is_err());
        assert!(segments.nearest(&[0.0; 16]).is_err());
    }
    Ok(())
}

#[test]
fn movielens_profiles_name_genres_that_are_really_over_represented() -> TestResult {
    use groupwise::data::{Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec};
    let dir = groupwise_e2e::movielens_dir();
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())?;
    let meta = ItemMetadata::load(dir.join("ml-100k.item"), &ItemMetadataSpec::movielens())?;
    let histories = log.histories();
    let index = groupwise_e2e::reference_index(&histories);
    let segments = Segments::build(
        &index,
        SegmentConfig {
            min_size: 30,
            ..Default::default()
        },
    )?;
    assert!(segments.len() >= 3, "{:?}", segments.report());
    let behaviour = Behaviour {
        histories: &histories,
        items: Some(&meta),
    };
    let profiles = segments.profiles(&index, Some(&behaviour), &ProfileOptions::default())?;
    // Recount each listed genre's lift straight from the ratings.
    let member: HashMap<u64, u32> = segments.assignments().into_iter().collect();
    let mut seg_counts: HashMap<(u32, usize), u64> = HashMap::new();
    let mut seg_total: HashMap<u32, u64> = HashMap::new();
    let mut pop_counts = vec![0u64; meta.category_names.len()];
    let mut pop_total = 0u64;
    for h in &histories {
        let s = member[&h.user];
        for &item in &h.items {
            for &c in meta.categories(item) {
                *seg_counts.entry((s, c as usize)).or_insert(0) += 1;
                *seg_total.entry(s).or_insert(0) += 1;
                pop_counts[c as usize] += 1;
                pop_total += 1;
            }
        }
    }
    let mut named = 0;
    for p in &profiles {
        assert!(p.size >= 30);
        assert!(p.representatives.len() == 5);
        assert!(p.cohesion > 0.5);
        for g in &p.top_categories {
            let c = g.key as usize;
            let support = seg_counts[&(p.id, c)];
            let lift = (support as f64 / seg_total[&p.id] as f64)
                / (pop_counts[c] as f64 / pop_total as f64);
            assert_eq!(g.support, support);
            assert!(
                (g.lift - lift).abs() < 1e-9,
                "{}: {} vs {lift}",
                g.label,
                g.lift
            );
            assert!(g.lift > 1.0 && g.support >= 5);
            assert_eq!(g.label, meta.category_names[c]);
        }
        for w in p.top_categories.windows(2) {
            assert!(w[0].lift_lower >= w[1].lift_lower);
        }
        // Items too: the share of segment users who rated it, over everyone's.
        for item in &p.top_items {
            let users: HashSet<u64> = histories
                .iter()
                .filter(|h| h.items.contains(&item.key))
                .map(|h| h.user)
                .collect();
            let in_segment = users.iter().filter(|u| member[u] == p.id).count() as u64;
            assert_eq!(item.support, in_segment);
            assert!(item.lift > 1.0);
        }
        if p.top_categories.first().is_some_and(|g| g.lift > 1.1) {
            named += 1;
        }
    }
    // Segments differ in taste: most have a genre at least 10 % over-represented.
    assert!(
        named * 2 > profiles.len(),
        "{named} of {} segments",
        profiles.len()
    );
    Ok(())
}
