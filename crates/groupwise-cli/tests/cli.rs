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
    // The command line's advice: the checkout's installer and the flag.
    assert!(
        err.contains("ONNX Runtime is not available")
            && err.contains("scripts/setup.sh")
            && err.contains("--ort-lib")
            && !err.contains("RuntimeConfig"),
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
        out.contains("users 943 (dimension 64; usearch HNSW graph stored)"),
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
    let err = text(&res.stderr);
    assert!(
        err.contains("only 2 usable seeds")
            && err.contains("lower --min-seeds")
            && !err.contains("LookalikeConfig"),
        "{err}"
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
        "quartile AUC",
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
    let err = text(&res.stderr);
    assert!(
        err.contains("privacy floor")
            && err.contains("lower --min-size")
            && !err.contains("SegmentConfig"),
        "{err}"
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

/// The number in `text` right before `suffix` (e.g. `"(1166 users)"` → 1166
/// for the suffix `" users)"`).
fn number_before(text: &str, suffix: &str) -> usize {
    let head = &text[..text
        .find(suffix)
        .unwrap_or_else(|| panic!("no {suffix:?} in {text}"))];
    let digits: String = head
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number before {suffix:?} in {text}"))
}

#[test]
fn segments_report_counts_each_merged_user_once() {
    // As many k-means clusters as users: every user starts as a group of
    // one, and groups merge in cascades up to the floor of 50.
    let dir = tempfile::tempdir().expect("tempdir");
    let emb = three_clusters(dir.path());
    let res = groupwise(&[
        "segments",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--method",
        "kmeans",
        "--clusters",
        "600",
        "--min-size",
        "50",
    ]);
    let out = text(&res.stdout);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let summary = out.lines().next().expect("summary line");
    let users = number_before(summary, " users;");
    let segments = number_before(summary, " segments (kmeans)");
    let merged = number_before(summary, " users); cohesion");
    assert_eq!(users, 600, "{summary}");
    // Each segment keeps one original group of at least one user; everybody
    // else moved, and is counted once.
    assert!(merged > 0 && merged <= users - segments, "{summary}");
    // k-means kept every user apart: then exactly one user per segment stayed.
    if number_before(summary, " groups,") == users {
        assert_eq!(merged, users - segments, "{summary}");
    }
}

/// An embeddings file of three users with `ids` as its ids file.
fn embeddings_with_ids(dir: &Path, ids: &str) -> PathBuf {
    let emb = dir.join("e.npy");
    groupwise::io::EmbeddingTable {
        ids: vec!["u1".into(), "u2".into(), "u3".into()],
        data: vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
        dim: 2,
    }
    .save(&emb)
    .expect("save");
    std::fs::write(groupwise::io::ids_path(&emb), ids).expect("write ids");
    emb
}

#[test]
fn an_id_listed_twice_is_an_error_naming_the_file_the_id_and_both_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emb = embeddings_with_ids(dir.path(), "u1\nu2\nu1\n");
    let res = groupwise(&[
        "neighbors",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--user",
        "u2",
    ]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("e.ids.txt:3:") && err.contains("\"u1\"") && err.contains("lines 1 and 3"),
        "{err}"
    );
    assert!(res.stdout.is_empty(), "{}", text(&res.stdout));
}

#[test]
fn a_header_without_rows_is_an_error() {
    let res = encode_log("empty.csv", "user_id,item_id\n", &[]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("--interactions") && err.contains("empty.csv") && err.contains("no data rows"),
        "{err}"
    );
    // The same for feature rows.
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = dir.path().join("f.csv");
    std::fs::write(&rows, "user_id,a,b,c,d,e,f,g,h\n").expect("write");
    let res = groupwise(&[
        "encode",
        "--model",
        "models/fixtures/plain_features.onnx",
        "--features",
        rows.to_str().expect("utf-8"),
        "--out",
        dir.path().join("f.npy").to_str().expect("utf-8"),
    ]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("f.csv") && err.contains("no data rows"),
        "{err}"
    );
    assert!(!dir.path().join("f.npy").exists());
}

#[test]
fn zero_neighbours_is_an_error_naming_k() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emb = embeddings_with_ids(dir.path(), "u1\nu2\nu3\n");
    let res = groupwise(&[
        "neighbors",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--user",
        "u1",
        "-k",
        "0",
    ]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(err.contains("-k") && err.contains("at least 1"), "{err}");
    assert!(res.stdout.is_empty(), "{}", text(&res.stdout));
}

#[test]
fn output_paths_are_checked_and_their_folders_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emb = three_clusters(dir.path());
    let seeds = dir.path().join("seeds.txt");
    let ids: Vec<String> = (0..120).map(|i| format!("c1-u{i}")).collect();
    std::fs::write(&seeds, ids.join("\n")).expect("write");
    let lookalike = |out: &Path| {
        groupwise(&[
            "lookalike",
            "--embeddings",
            emb.to_str().expect("utf-8"),
            "--seeds",
            seeds.to_str().expect("utf-8"),
            "--size",
            "10",
            "--out",
            out.to_str().expect("utf-8"),
        ])
    };
    // A folder given as --out: the error names the flag and the path.
    let res = lookalike(dir.path());
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains(&format!("--out {}", dir.path().display())) && err.contains("is a directory"),
        "{err}"
    );
    // Missing folders are created.
    let nested = dir.path().join("new/deeper/ranked.tsv");
    let res = lookalike(&nested);
    assert!(res.status.success(), "{}", text(&res.stderr));
    assert_eq!(
        std::fs::read_to_string(&nested)
            .expect("written")
            .lines()
            .count(),
        11
    );
    let assignments = dir.path().join("seg/out/assignments.tsv");
    let res = groupwise(&[
        "segments",
        "--embeddings",
        emb.to_str().expect("utf-8"),
        "--min-size",
        "150",
        "--assignments",
        assignments.to_str().expect("utf-8"),
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    assert_eq!(
        std::fs::read_to_string(&assignments)
            .expect("written")
            .lines()
            .count(),
        601
    );
}

#[test]
fn encode_writes_the_ids_file_its_help_names_and_creates_folders() {
    let help = text(&groupwise(&["encode", "--help"]).stdout);
    assert!(help.contains("`emb.npy` → `emb.ids.txt`"), "{help}");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.csv");
    std::fs::write(&log, "user_id,item_id\n1,2\n1,3\n2,5\n").expect("write");
    let out = dir.path().join("emb/new/emb.npy");
    let res = groupwise(&[
        "encode",
        "--interactions",
        log.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let ids = dir.path().join("emb/new/emb.ids.txt");
    assert_eq!(std::fs::read_to_string(ids).expect("ids file"), "1\n2\n");
    assert!(!dir.path().join("emb/new/emb.npy.ids.txt").exists());
    // A directory given as --model says so.
    let res = groupwise(&[
        "encode",
        "--model",
        dir.path().to_str().expect("utf-8"),
        "--interactions",
        log.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(err.contains("is a directory"), "{err}");
    assert!(!err.contains("not found"), "{err}");
}

/// A log of 240 users in four taste groups (items of the reference
/// vocabulary; each group favours its own 60 items) with 1–5 star weights,
/// and the labels file of the groups plus a group of 5 users.
fn taste_groups(dir: &Path) -> (PathBuf, PathBuf) {
    let mut log = String::from("uid,sku,stars\n");
    let mut labels = String::from("uid,segment\n");
    for u in 0..240u32 {
        let g = u % 4;
        for k in 0..15u32 {
            // Two thirds of the items from the group's range, the rest anywhere.
            let item = if k % 3 == 2 {
                1 + (u * 131 + k * 71) % 600
            } else {
                1 + g * 150 + (u * 7 + k * 13) % 60
            };
            let stars = 1 + (u * 3 + k * 7) % 5;
            log.push_str(&format!("user-{u},{item},{stars}\n"));
        }
        labels.push_str(&format!("user-{u},group {g}\n"));
        if u < 5 {
            labels.push_str(&format!("user-{u},tiny\n"));
        }
    }
    let (l, s) = (dir.join("log.csv"), dir.join("labels.csv"));
    std::fs::write(&l, log).expect("write log");
    std::fs::write(&s, labels).expect("write labels");
    (l, s)
}

#[test]
fn eval_lookalike_on_embeddings_matches_the_model_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, labels) = taste_groups(dir.path());
    let p = |x: &Path| x.to_str().expect("utf-8").to_string();
    let columns = ["--user-col", "uid", "--item-col", "sku"];
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "lookalike", "--min-members", "20", "--splits", "2"];
        args.extend_from_slice(&columns);
        let labels = p(&labels);
        args.extend_from_slice(&["--labels", &labels]);
        args.extend_from_slice(extra);
        groupwise(&args)
    };
    let ok = |res: &Output| {
        assert!(res.status.success(), "{}", text(&res.stderr));
        text(&res.stdout)
    };
    let emb = dir.path().join("emb.npy");
    let res = groupwise(
        &[
            &["encode", "--interactions", &p(&log), "--out", &p(&emb)][..],
            &columns,
            &["--weight-col", "stars"],
        ]
        .concat(),
    );
    ok(&res);

    // The model path with the weights, and the embeddings `encode` wrote with
    // the same weights: the same report, number for number.
    let res = eval(&["--interactions", &p(&log), "--weight-col", "stars"]);
    let from_model = ok(&res);
    // Segments below --min-members are named on standard error, with their size.
    let err = text(&res.stderr);
    assert!(
        err.contains("skipped segment \"tiny\": 5 members in the index (below --min-members 20)"),
        "{err}"
    );
    assert!(!from_model.contains("| tiny |"), "{from_model}");
    let from_embeddings = ok(&eval(&[
        "--embeddings",
        &p(&emb),
        "--interactions",
        &p(&log),
    ]));
    assert_eq!(from_model, from_embeddings);
    // The weights matter here, so the equality above needs them honoured.
    let unweighted = ok(&eval(&["--interactions", &p(&log)]));
    assert_ne!(from_model, unweighted);
    for needle in ["| group 0 |", "| activity |", "quartile AUC", "classifier"] {
        assert!(
            from_model.contains(needle),
            "missing {needle:?}: {from_model}"
        );
    }

    // Embeddings alone: no activity baseline, and the report says why.
    let alone = ok(&eval(&["--embeddings", &p(&emb)]));
    assert!(alone.contains("No activity counts"), "{alone}");
    assert!(!alone.contains("| activity |"), "{alone}");
    // Embeddings replace the model: both at once is an error naming them.
    let res = eval(&[
        "--embeddings",
        &p(&emb),
        "--model",
        "models/ml100k-seq.onnx",
    ]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("--embeddings") && err.contains("--model"),
        "{err}"
    );
    // A seed minimum above the seed half names the flag, not the Rust setting.
    let res = eval(&["--interactions", &p(&log), "--min-seeds", "500"]);
    assert!(!res.status.success());
    let err = text(&res.stderr);
    assert!(
        err.contains("lower --min-seeds") && !err.contains("::"),
        "{err}"
    );
}
