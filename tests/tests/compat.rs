//! Snapshots written by earlier formats still load: the golden format-1
//! files in `tests/data/golden-v1/` (see its README) answer as they did when
//! they were written, and a loaded format-1 engine saves as format 2.

use std::path::{Path, PathBuf};

use groupwise::bandit::Feedback;
use groupwise::engine::{inspect, Engine, LoadOptions};
use groupwise::index::{Backend, SearchMode, SearchOptions};
use groupwise::Error;
use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/golden-v1")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(golden("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect()
}

/// Checks an engine loaded from a golden file against `expected.json`:
/// the same live users, counters, exact neighbours and, when `same_graph`,
/// the same graph answers.
fn check(engine: &Engine, same_graph: bool) {
    let want = expected();
    let mut live = engine.index().ids();
    live.sort_unstable();
    assert_eq!(live, ids(&want["live_users"]));
    let stats = engine.stats();
    assert_eq!(stats.upserts, want["upserts"].as_u64().expect("n"));
    assert_eq!(stats.deletes, want["deletes"].as_u64().expect("n"));
    assert_eq!(
        stats.bandit.decisions,
        want["decisions"].as_u64().expect("n")
    );
    assert_eq!(
        stats.bandit.feedback_applied,
        want["feedback_applied"].as_u64().expect("n")
    );
    let exact = SearchOptions {
        mode: SearchMode::Exact,
        ..Default::default()
    };
    let graph = SearchOptions {
        mode: SearchMode::Approximate,
        ..Default::default()
    };
    for (key, opts) in [("exact", exact), ("graph", graph)] {
        if key == "graph" && !same_graph {
            continue;
        }
        for q in want[key].as_array().expect("queries") {
            let user = q["user"].as_u64().expect("user");
            let got = engine
                .index()
                .neighbors(user, 10, &opts)
                .expect("neighbours");
            let got_ids: Vec<u64> = got.iter().map(|n| n.id).collect();
            assert_eq!(got_ids, ids(&q["ids"]), "{key} neighbours of {user}");
            for (n, s) in got.iter().zip(q["similarities"].as_array().expect("sims")) {
                let s = s.as_f64().expect("similarity") as f32;
                assert!(
                    (n.similarity - s).abs() < 1e-6,
                    "{key} {user}: {} vs {s}",
                    n.similarity
                );
            }
        }
    }
}

#[test]
fn golden_v1_with_its_graph_loads_served_by_hnsw_rs_and_answers_the_same() {
    let path = golden("engine-graph.gw");
    let info = inspect(&path).expect("inspect");
    assert_eq!((info.version, info.graph_stored), (1, true));
    assert_eq!(info.backend, Backend::HnswRs);
    for mmap in [true, false] {
        let engine = Engine::load_with(
            &path,
            LoadOptions {
                load_encoders: false,
                mmap,
                backend: None,
            },
        )
        .expect("load");
        assert_eq!(engine.index().stats().backend, Backend::HnswRs);
        check(&engine, true);
    }
}

#[test]
fn golden_v1_without_its_graph_loads_on_the_default_backend() {
    let engine = Engine::load_with(
        golden("engine-nograph.gw"),
        LoadOptions {
            load_encoders: false,
            ..LoadOptions::default()
        },
    )
    .expect("load");
    assert_eq!(engine.index().stats().backend, Backend::Usearch);
    check(&engine, false);
}

#[test]
fn golden_v1_moves_to_usearch_on_request_and_saves_as_format_2() {
    let engine = Engine::load_with(
        golden("engine-graph.gw"),
        LoadOptions {
            load_encoders: false,
            backend: Some(Backend::Usearch),
            ..LoadOptions::default()
        },
    )
    .expect("load");
    assert_eq!(engine.index().stats().backend, Backend::Usearch);
    check(&engine, false);
    // The one decision left open takes its feedback once, after a save in
    // format 2 and a load of that.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("v2.gw");
    let info = engine.save(&path).expect("save");
    assert_eq!((info.version, info.backend), (2, Backend::Usearch));
    let again = Engine::load_with(
        &path,
        LoadOptions {
            load_encoders: false,
            ..LoadOptions::default()
        },
    )
    .expect("load v2");
    assert!(again.index().stats().mapped, "a usearch graph is mapped");
    check(&again, false);
    let open = again.bandit().export_state().pending_ids();
    assert_eq!(open.len(), 1, "{open:?}");
    let fb = Feedback {
        decision: open[0],
        clicks: &[0],
        visible: None,
        now: None,
    };
    again.feedback(&fb).expect("late feedback accepted");
    assert!(matches!(
        again.feedback(&fb),
        Err(Error::UnknownDecision(_))
    ));
}
