//! How the golden format-1 snapshots in this folder were written: this
//! program, built as a `[[bin]]` of `groupwise-e2e` at the last commit that
//! wrote format 1 (see the README here), run from the repository root. It is
//! kept for the record and is not compiled any more (today's build writes
//! format 2). `tests/tests/compat.rs` loads the files and checks them
//! against `expected.json`.

use std::collections::HashSet;

use groupwise::bandit::{Feedback, Request};
use groupwise::engine::{Engine, EngineConfig, SnapshotConfig};
use groupwise::index::{SearchMode, SearchOptions};
use rand::{Rng, SeedableRng};

fn main() {
    let dir = std::path::Path::new("tests/data/golden-v1");
    let mut config = EngineConfig::new(8);
    config.index.exact_below = 0; // searches go through the graph
    let engine = Engine::new(config).expect("engine");
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let ids: Vec<u64> = (0..400).map(|i| 1000 + 7 * i).collect();
    let vectors: Vec<f32> = (0..ids.len() * 8)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    engine.upsert_embeddings(&ids, &vectors).expect("upsert");
    // Deleted and replaced users leave tombstones in the stored graph.
    for &id in ids.iter().step_by(17) {
        engine.delete_user(id).expect("delete");
    }
    for &id in ids.iter().skip(3).step_by(29) {
        let v: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        engine.upsert_embedding(id, &v).expect("replace");
    }
    // Bandit state: closed decisions and one still open.
    let items: Vec<u64> = (1..=30).collect();
    for round in 0..40u64 {
        let user = ids[(round as usize * 5) % ids.len()];
        let d = engine
            .decide(&Request::new(Some(user), None, &items, 4))
            .expect("decide");
        if round < 39 {
            let clicks: Vec<usize> = if round % 3 == 0 { vec![1] } else { vec![] };
            engine
                .feedback(&Feedback {
                    decision: d.id,
                    clicks: &clicks,
                    visible: None,
                    now: None,
                })
                .expect("feedback");
        }
    }
    engine
        .save_with(dir.join("engine-graph.gw"), &SnapshotConfig { store_graph: true })
        .expect("save");
    engine
        .save_with(dir.join("engine-nograph.gw"), &SnapshotConfig { store_graph: false })
        .expect("save");

    let queries: Vec<u64> = ids.iter().copied().filter(|&id| engine.contains(id)).step_by(23).collect();
    let exact = SearchOptions { mode: SearchMode::Exact, ..Default::default() };
    let graph = SearchOptions { mode: SearchMode::Approximate, ..Default::default() };
    let list = |opts: &SearchOptions<'_>| -> Vec<serde_json::Value> {
        queries
            .iter()
            .map(|&q| {
                let n = engine.index().neighbors(q, 10, opts).expect("neighbors");
                serde_json::json!({
                    "user": q,
                    "ids": n.iter().map(|x| x.id).collect::<Vec<_>>(),
                    "similarities": n.iter().map(|x| x.similarity).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let live: HashSet<u64> = engine.index().ids().into_iter().collect();
    let mut live: Vec<u64> = live.into_iter().collect();
    live.sort_unstable();
    let stats = engine.stats();
    let expected = serde_json::json!({
        "live_users": live,
        "exact": list(&exact),
        "graph": list(&graph),
        "upserts": stats.upserts,
        "deletes": stats.deletes,
        "decisions": stats.bandit.decisions,
        "feedback_applied": stats.bandit.feedback_applied,
    });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).expect("json"),
    )
    .expect("write");
}
