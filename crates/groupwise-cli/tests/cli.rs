//! The `groupwise` command end to end: encode → embeddings file → neighbours,
//! the demo on MovieLens, and errors a user can make on the command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn groupwise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_groupwise"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run groupwise")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn encode_then_neighbors_on_a_small_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two groups of users with disjoint tastes (items from the reference vocabulary).
    let mut log = String::from("uid,sku,ts\n");
    for u in 0..6 {
        let items: &[u32] = if u < 3 {
            &[1, 2, 3, 4, 5]
        } else {
            &[300, 301, 302, 303, 304]
        };
        for (t, i) in items.iter().enumerate() {
            log.push_str(&format!("user-{u},{i},{t}\n"));
        }
    }
    let log_path = dir.path().join("log.csv");
    std::fs::write(&log_path, log).expect("write log");
    let out = dir.path().join("emb.npy");
    let res = groupwise(&[
        "encode",
        "--interactions",
        log_path.to_str().expect("utf-8"),
        "--user-col",
        "uid",
        "--item-col",
        "sku",
        "--time-col",
        "ts",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let table = groupwise::io::EmbeddingTable::load(&out).expect("embeddings file");
    assert_eq!(table.ids.len(), 6);
    assert_eq!(table.dim, 64);

    let res = groupwise(&[
        "neighbors",
        "--embeddings",
        out.to_str().expect("utf-8"),
        "--user",
        "user-0",
        "-k",
        "2",
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let stdout = text(&res.stdout);
    let got: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    let mut got = got.clone();
    got.sort_unstable();
    assert_eq!(got, ["user-1", "user-2"], "{stdout}");

    let res = groupwise(&[
        "neighbors",
        "--embeddings",
        out.to_str().expect("utf-8"),
        "--user",
        "nobody",
    ]);
    assert!(!res.status.success());
    assert!(
        text(&res.stderr).contains("not in the index"),
        "{}",
        text(&res.stderr)
    );
}

/// `groupwise encode` on a log written to a fresh folder as `name`.
fn encode_log(name: &str, log: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join(name);
    std::fs::write(&log_path, log).expect("write");
    let out = dir.path().join("x.npy");
    let mut args = vec![
        "encode",
        "--interactions",
        log_path.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    groupwise(&args)
}

#[test]
fn malformed_input_is_reported_with_file_and_line() {
    let res = encode_log("bad.csv", "user_id,item_id\n1,2\n3\n", &[]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(err.contains("bad.csv:3:"), "{err}");
}

#[test]
fn missing_runtime_is_a_clear_error_from_the_command() {
    let res = encode_log(
        "log.csv",
        "user_id,item_id\n1,2\n",
        &["--ort-lib", "/nonexistent/libonnxruntime.so"],
    );
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("ONNX Runtime is not available") && err.contains("scripts/setup.sh"),
        "{err}"
    );
}

#[test]
fn demo_runs_on_movielens_and_checks_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let picture = dir.path().join("segments.svg");
    let regret = dir.path().join("regret.svg");
    let snapshot = dir.path().join("ml.gw");
    let res = groupwise(&[
        "demo",
        "--picture",
        picture.to_str().expect("utf-8"),
        "--slates-picture",
        regret.to_str().expect("utf-8"),
        "--snapshot",
        snapshot.to_str().expect("utf-8"),
    ]);
    let stdout = text(&res.stdout);
    assert!(res.status.success(), "{}\n{}", stdout, text(&res.stderr));
    assert!(
        stdout.contains("943 users, 1682 movies, 100000 ratings"),
        "{stdout}"
    );
    let recall: f64 = stdout
        .lines()
        .find(|l| l.starts_with("index check"))
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("recall line");
    assert!(recall >= 0.95, "{stdout}");
    assert!(stdout.contains("shares top genres"), "{stdout}");
    // Segments: every one at or above the demo's floor of 30, named by genres,
    // and a picture with one point per user.
    let sizes: Vec<usize> = stdout
        .lines()
        .filter(|l| l.starts_with("segment "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert!(sizes.len() >= 3, "{stdout}");
    assert!(sizes.iter().all(|&s| s >= 30), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 943);
    assert!(stdout.contains("over-represented genres:"), "{stdout}");
    let svg = std::fs::read_to_string(&picture).expect("picture written");
    assert_eq!(svg.matches("<circle").count(), 943);
    // Slates: every policy learns to beat random on the simulated carousel.
    let ctr = |name: &str| -> f64 {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name) && l.contains("CTR over the last"))
            .and_then(|l| l.split("rounds ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no CTR line for {name}: {stdout}"))
    };
    assert!(ctr("hierarchical group") > 1.3 * ctr("random"), "{stdout}");
    assert!(ctr("greedy") > 1.3 * ctr("random"), "{stdout}");
    let svg = std::fs::read_to_string(&regret).expect("regret picture written");
    assert_eq!(svg.matches("<polyline").count(), 4);
    // The engine snapshot is saved, reloaded and checked, and `snapshot
    // inspect` reads it back.
    assert!(stdout.contains("check passed"), "{stdout}");
    let inspected = groupwise(&["snapshot", "inspect", snapshot.to_str().expect("utf-8")]);
    let out = text(&inspected.stdout);
    assert!(inspected.status.success(), "{out}");
    assert!(
        out.contains("users 943 (dimension 64; HNSW graph stored)"),
        "{out}"
    );
    assert!(out.contains(": OK"), "{out}");
    assert!(
        out.contains("3000 decisions, 3000 feedback events"),
        "{out}"
    );
    // A damaged copy is refused with a clear message, not a panic.
    let mut bytes = std::fs::read(&snapshot).expect("snapshot written");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let damaged = dir.path().join("damaged.gw");
    std::fs::write(&damaged, &bytes).expect("write");
    let res = groupwise(&["snapshot", "inspect", damaged.to_str().expect("utf-8")]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn encode_dense_feature_rows_with_a_features_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    // plain_features.onnx: y = x W, 8 features -> 4 dims (see models/fixtures/make_fixtures.py).
    let rows = dir.path().join("f.csv");
    std::fs::write(
        &rows,
        "user_id,a,b,c,d,e,f,g,h\nu1,1,0,0,0,0,0,0,0\nu2,0,0,0,0,0,0,0,2\n",
    )
    .expect("write");
    let out = dir.path().join("f.npy");
    let res = groupwise(&[
        "encode",
        "--model",
        "models/fixtures/plain_features.onnx",
        "--features",
        rows.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let t = groupwise::io::EmbeddingTable::load(&out).expect("load");
    assert_eq!(t.ids, ["u1", "u2"]);
    // Row u1 = W[0] = [0.1, 0.05, 0.0, -0.05]; row u2 = 2 W[7] = 2 [0.8, 0.75, 0.7, 0.65].
    let want = [0.1f32, 0.05, 0.0, -0.05, 1.6, 1.5, 1.4, 1.3];
    assert!(
        t.data.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
        "{:?}",
        t.data
    );
}

#[test]
fn lookalike_command_expands_a_seed_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Three tight clusters on the first three axes; ids name their cluster.
    let dim = 8;
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for c in 0..3 {
        for i in 0..200 {
            ids.push(format!("c{c}-u{i}"));
            for d in 0..dim {
                let jitter = (((i * 31 + d * 17) % 13) as f32 - 6.0) * 0.01;
                data.push(if d == c { 1.0 } else { 0.0 } + jitter);
            }
        }
    }
    let emb = dir.path().join("e.npy");
    groupwise::io::EmbeddingTable { ids, data, dim }
        .save(&emb)
        .expect("save");
    let seeds = dir.path().join("seeds.txt");
    let seed_ids: Vec<String> = (0..120)
        .map(|i| format!("c1-u{i}"))
        .chain(["nobody".to_string()])
        .collect();
    std::fs::write(&seeds, seed_ids.join("\n")).expect("write");
    let out = dir.path().join("ranked.tsv");
    let res = groupwise(&[
        "lookalike",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--seeds",
        seeds.to_str().expect("utf-8"),
        "--size",
        "50",
        "--explain",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    assert!(
        text(&res.stderr).contains("1 seed ids not found"),
        "{}",
        text(&res.stderr)
    );
    let ranked = std::fs::read_to_string(&out).expect("output");
    let rows: Vec<Vec<&str>> = ranked
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 50);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (i + 1).to_string());
        assert!(
            r[1].starts_with("c1-u") && !seed_ids.contains(&r[1].to_string()),
            "{r:?}"
        );
        assert!(r[3].split(',').all(|s| s.starts_with("c1-u")), "{r:?}");
    }

    std::fs::write(&seeds, "c1-u1\nc1-u2\n").expect("write");
    let res = groupwise(&[
        "lookalike",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--seeds",
        seeds.to_str().expect("utf-8"),
    ]);
    assert!(!res.status.success());
    assert!(
        text(&res.stderr).contains("only 2 usable seeds"),
        "{}",
        text(&res.stderr)
    );
}

#[test]
fn eval_lookalike_reports_every_scorer_and_baseline_on_movielens() {
    let res = groupwise(&["eval", "lookalike", "--movielens", "--splits", "1"]);
    let out = text(&res.stdout);
    assert!(res.status.success(), "{}", text(&res.stderr));
    for needle in [
        "| occupation |",
        "| gender |",
        "| age band |",
        "| behavioural |",
        "classifier",
        "activity",
        "Horror fans (later)",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
}

/// Three tight clusters on the first three axes (ids name their cluster),
/// saved as an embeddings file.
fn three_clusters(dir: &Path) -> PathBuf {
    let dim = 8;
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for c in 0..3 {
        for i in 0..200 {
            ids.push(format!("c{c}-u{i}"));
            for d in 0..dim {
                // Distinct pseudo-random jitter per user and axis (1009 is prime).
                let jitter = (((i * 7919 + d * 104_729) % 1009) as f32 / 1009.0 - 0.5) * 0.1;
                data.push(if d == c { 1.0 } else { 0.0 } + jitter);
            }
        }
    }
    let emb = dir.join("e.npy");
    groupwise::io::EmbeddingTable { ids, data, dim }
        .save(&emb)
        .expect("save");
    emb
}

#[test]
fn segments_command_writes_assignments_profiles_and_a_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emb = three_clusters(dir.path());
    // Cluster c mostly watches items of category g{c}; everyone watches item 100.
    let mut log = String::from("user_id,item_id\n");
    let mut items = String::from("item_id,genre,title\n");
    for c in 0..3 {
        for i in 0..200 {
            for k in 0..3 {
                log.push_str(&format!("c{c}-u{i},{}\n", c * 10 + (i + k) % 5));
            }
            log.push_str(&format!("c{c}-u{i},100\n"));
        }
        for k in 0..5 {
            items.push_str(&format!("{},g{c},movie {c}-{k}\n", c * 10 + k));
        }
    }
    items.push_str("100,g9,everyone's movie\n");
    std::fs::write(dir.path().join("log.csv"), log).expect("write");
    std::fs::write(dir.path().join("items.csv"), items).expect("write");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    for method in ["leiden", "kmeans"] {
        let res = groupwise(&[
            "segments",
            "--embeddings",
            emb.to_str().expect("utf-8"),
            "--method",
            method,
            "--clusters",
            "3",
            // Leiden splits a uniform blob into several communities; a floor
            // of 150 merges them back along the graph (clusters share no edges).
            "--min-size",
            "150",
            "--interactions",
            &path("log.csv"),
            "--items",
            &path("items.csv"),
            "--category-col",
            "genre",
            "--title-col",
            "title",
            "--assignments",
            &path("seg.tsv"),
            "--profiles",
            &path("seg.json"),
            "--picture",
            &path("seg.svg"),
        ]);
        assert!(res.status.success(), "{method}: {}", text(&res.stderr));
        let assignments = std::fs::read_to_string(path("seg.tsv")).expect("assignments");
        let mut segment_of_cluster = std::collections::HashMap::new();
        for line in assignments.lines().skip(1) {
            let (user, seg) = line.split_once('\t').expect("two columns");
            let cluster = &user[..2];
            let known = segment_of_cluster
                .entry(cluster.to_string())
                .or_insert(seg.to_string());
            assert_eq!(known, seg, "{method}: {user} is not with its cluster");
        }
        assert_eq!(assignments.lines().count(), 601);
        assert_eq!(segment_of_cluster.len(), 3);
        let profiles: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path("seg.json")).expect("profiles"))
                .expect("JSON");
        for p in profiles["segments"].as_array().expect("segments") {
            let id = p["id"].to_string();
            let cluster = segment_of_cluster
                .iter()
                .find(|(_, s)| **s == id)
                .map(|(c, _)| c.clone())
                .expect("segment of a cluster");
            let top = &p["top_categories"][0];
            assert_eq!(top["label"], format!("g{}", &cluster[1..]), "{method}: {p}");
            assert!(
                (top["lift"].as_f64().expect("lift") - 3.0).abs() < 1e-9,
                "{p}"
            );
            assert!(p["top_items"][0]["label"]
                .as_str()
                .expect("title")
                .starts_with("movie "));
        }
        let svg = std::fs::read_to_string(path("seg.svg")).expect("picture");
        assert_eq!(svg.matches("<circle").count(), 600);
    }
    // Errors a user can make.
    let res = groupwise(&[
        "segments",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--method",
        "dbscan",
    ]);
    assert!(!res.status.success());
    assert!(
        text(&res.stderr).contains("unknown method \"dbscan\""),
        "{}",
        text(&res.stderr)
    );
    let res = groupwise(&[
        "segments",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--min-size",
        "1000",
    ]);
    assert!(!res.status.success());
    assert!(
        text(&res.stderr).contains("privacy floor"),
        "{}",
        text(&res.stderr)
    );
}

#[test]
fn eval_segments_reports_every_method_on_movielens() {
    let res = groupwise(&["eval", "segments", "--movielens", "--seeds", "2"]);
    let out = text(&res.stdout);
    assert!(res.status.success(), "{}", text(&res.stderr));
    for needle in [
        "| groupwise | leiden |",
        "| groupwise | louvain |",
        "| groupwise | kmeans (k=",
        "leiden + floor 30",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in {out}");
    }
    // Leiden on this graph reaches a modularity well above 0.5 (measured 0.69).
    let row = out
        .lines()
        .find(|l| l.starts_with("| groupwise | leiden |"))
        .expect("leiden row");
    let modularity: f64 = row
        .split('|')
        .nth(4)
        .and_then(|v| v.trim().parse().ok())
        .expect("number");
    assert!(modularity > 0.6, "{row}");
}
