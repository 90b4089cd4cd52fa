//! Invariants on real data: MovieLens 100K (installed by scripts/setup.sh)
//! through the loaders, the reference encoder and the index.

use std::collections::HashMap;

use groupwise::data::{
    Interactions, InteractionsSpec, ItemMetadata, ItemMetadataSpec, UserHistory,
};
use groupwise::index::recall_at_k;
use groupwise::{
    Encoder, EncoderOptions, IndexConfig, Neighbor, SearchMode, SearchOptions, UserIndex,
};
use groupwise_e2e::{model, movielens_dir};

struct Ml {
    histories: Vec<UserHistory>,
    meta: ItemMetadata,
    embeddings: Vec<f32>,
}

fn movielens() -> Ml {
    let dir = movielens_dir();
    let log = Interactions::load(dir.join("ml-100k.inter"), &InteractionsSpec::movielens())
        .expect("interactions");
    assert_eq!(log.len(), 100_000);
    assert_eq!(log.users.len(), 943);
    assert_eq!(log.items.len(), 1682);
    let meta = ItemMetadata::load(dir.join("ml-100k.item"), &ItemMetadataSpec::movielens())
        .expect("items");
    assert_eq!(meta.len(), 1682);
    assert!(meta.category_names.iter().any(|g| g == "Drama"));
    let histories = log.histories();
    assert!(
        histories.iter().all(|h| h.items.len() >= 20),
        "every MovieLens 100K user rated at least 20 movies"
    );
    assert!(
        histories
            .iter()
            .all(|h| h.times.windows(2).all(|w| w[0] <= w[1])),
        "histories are time-ordered"
    );
    let enc = Encoder::load(model("ml100k-seq.onnx"), &EncoderOptions::default()).expect("encoder");
    let out = enc.encode_histories(&histories, false).expect("encode");
    assert_eq!(
        out.stats.unknown_items, 0,
        "the reference vocabulary covers MovieLens"
    );
    Ml {
        histories,
        meta,
        embeddings: out.embeddings,
    }
}

fn genre_profile(h: &UserHistory, meta: &ItemMetadata) -> Vec<f32> {
    let mut p = vec![0.0f32; meta.category_names.len()];
    for &i in &h.items {
        for &c in meta.categories(i) {
            p[c as usize] += 1.0;
        }
    }
    let n = groupwise::vector::norm(&p);
    p.iter().map(|x| x / n).collect()
}

#[test]
fn embeddings_are_unit_vectors_and_both_encoders_agree() {
    let ml = movielens();
    for row in ml.embeddings.chunks(64) {
        assert!((groupwise::vector::norm(row) - 1.0).abs() < 1e-4);
    }
    // The bag-of-items model must give the same embedding for histories the
    // sequence model does not truncate (at most max_len = 200 items).
    let bag = Encoder::load(model("ml100k-bag.onnx"), &EncoderOptions::default()).expect("bag");
    let short: Vec<usize> = (0..ml.histories.len())
        .filter(|&i| ml.histories[i].items.len() <= 200)
        .collect();
    assert!(
        short.len() > 700,
        "{} users with at most 200 ratings",
        short.len()
    );
    let hs: Vec<UserHistory> = short.iter().map(|&i| ml.histories[i].clone()).collect();
    let b = bag.encode_histories(&hs, false).expect("bag encode");
    for (r, &i) in short.iter().enumerate() {
        let (x, y) = (b.row(r), &ml.embeddings[i * 64..(i + 1) * 64]);
        let worst = x
            .iter()
            .zip(y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "user row {i}: {worst:e}");
    }
}

#[test]
fn nearest_users_share_genre_taste_far_more_than_random_users() {
    let ml = movielens();
    let mut cfg = IndexConfig::new(64);
    cfg.capacity_hint = 943;
    let index = UserIndex::new(cfg).expect("index");
    let ids: Vec<u64> = ml.histories.iter().map(|h| h.user).collect();
    index.upsert_batch(&ids, &ml.embeddings).expect("insert");
    let profiles: HashMap<u64, Vec<f32>> = ml
        .histories
        .iter()
        .map(|h| (h.user, genre_profile(h, &ml.meta)))
        .collect();
    let graph = SearchOptions {
        mode: SearchMode::Approximate,
        ..Default::default()
    };
    let exact = SearchOptions {
        mode: SearchMode::Exact,
        ..Default::default()
    };
    let approx: Vec<Vec<Neighbor>> = ids
        .iter()
        .map(|&u| index.neighbors(u, 10, &graph).expect("nn"))
        .collect();
    let truth: Vec<Vec<Neighbor>> = ids
        .iter()
        .map(|&u| index.neighbors(u, 10, &exact).expect("nn"))
        .collect();
    let recall = recall_at_k(&approx, &truth);
    assert!(
        recall >= 0.95,
        "recall@10 on MovieLens embeddings = {recall:.4}"
    );

    // Genre-taste distance (1 - cosine of genre profiles): neighbours vs a
    // fixed-stride "random" partner. Measured: 0.056 vs 0.148 (2.6x closer).
    let dist =
        |a: u64, b: u64| 1.0 - f64::from(groupwise::vector::dot(&profiles[&a], &profiles[&b]));
    let n = ids.len();
    let mut near = 0.0;
    let mut far = 0.0;
    for (i, (&u, ns)) in ids.iter().zip(&approx).enumerate() {
        for (j, nb) in ns.iter().enumerate() {
            near += dist(u, nb.id);
            far += dist(u, ids[(i + 1 + 97 * (j + 1)) % n]);
        }
    }
    let ratio = far / near;
    assert!(
        ratio > 1.8,
        "neighbours are only {ratio:.2}x closer in genre taste than other users"
    );
}
