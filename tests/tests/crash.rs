//! Crash safety of engine snapshots: a child process (`snapshot_writer`)
//! saves snapshots in an endless loop and is killed with SIGKILL at random
//! moments, over and over. After every kill the last complete snapshot must
//! load and hold exactly what its generation saved.
//!
//! The child's generation `g` is the number of users beyond the initial ones;
//! it logs `g` (fsynced) only after `save` returned, so with `L` the last
//! logged generation the snapshot on disk is generation `L` or, when the kill
//! fell between the rename and the log line, `L + 1`. The constants and
//! The facts the child and this test share are in `groupwise_e2e::crash`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use groupwise::{Engine, SearchMode, SearchOptions};
use groupwise_e2e::crash::{vector_of, BASE, DIM, INITIAL, ITEMS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Kills (each one a child started, killed and checked).
const KILLS: usize = 120;
const SEED: u64 = 0x00C4_A5E5;

/// `v` scaled to unit length (as the index stores it).
fn unit(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    v.iter().map(|&x| (f64::from(x) / n) as f32).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The users of generation `s`.
fn users_of(s: u64) -> impl Iterator<Item = u64> {
    (0..INITIAL).chain((1..=s).map(|g| BASE + g))
}

/// The complete lines of the log (a line is complete once its `\n` is
/// written), checked to increase strictly.
fn logged(dir: &Path) -> Vec<u64> {
    let text = match std::fs::read_to_string(dir.join("log")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read the log: {e}"),
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // After the last '\n': empty, or a line being written.
    let gens: Vec<u64> = lines
        .iter()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|e| panic!("bad log line {l:?}: {e}"))
        })
        .collect();
    assert!(
        gens.windows(2).all(|w| w[0] < w[1]),
        "logged generations do not increase: {gens:?}"
    );
    gens
}

fn log_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("log")).map_or(0, |m| m.len())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn tree_bytes(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).expect("metadata");
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .expect("read dir")
        .map(|e| tree_bytes(&e.expect("dir entry").path()))
        .sum()
}

fn stray_temporaries(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with(".engine.gw.") && n.ends_with(".tmp"))
        .collect()
}

/// Fails the test with the child's output if it exited on its own.
fn check_alive(child: &mut Child) {
    if let Some(status) = child.try_wait().expect("try_wait") {
        let out = take_output(child);
        panic!(
            "snapshot_writer exited by itself ({status}):\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn take_output(child: &mut Child) -> Output {
    use std::io::Read;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut stderr).expect("read stderr");
    }
    let status = child.wait().expect("wait");
    Output {
        status,
        stdout,
        stderr,
    }
}

fn sleep_alive(child: &mut Child, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_alive(child);
        std::thread::sleep(Duration::from_millis(1).min(end - Instant::now()));
    }
}

/// Waits until the child has logged one more generation.
fn wait_for_log_growth(child: &mut Child, dir: &Path, from: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while log_len(dir) <= from {
        check_alive(child);
        assert!(
            Instant::now() < deadline,
            "the child logged nothing in 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Loads the snapshot and checks it is exactly generation `s` for some `s`
/// in `{last_logged, last_logged + 1}`; returns `s`.
fn check_snapshot(path: &Path, last_logged: u64) -> u64 {
    let engine = Engine::load(path).unwrap_or_else(|e| {
        panic!(
            "the snapshot does not load after a kill (last logged generation {last_logged}): {e}"
        )
    });
    let users = engine.index().len() as u64;
    let s = users
        .checked_sub(INITIAL)
        .unwrap_or_else(|| panic!("{users} users, fewer than the initial {INITIAL}"));
    assert!(
        s == last_logged || s == last_logged + 1,
        "snapshot of generation {s}, but the last logged generation is {last_logged}"
    );
    assert!(s >= 1, "a saved snapshot has generation >= 1");

    // Exactly the users of generation s, each with its vector.
    for id in users_of(s) {
        let stored = engine
            .index()
            .vector(id)
            .unwrap_or_else(|| panic!("generation {s}: user {id} is missing"));
        let want = unit(&vector_of(id, DIM));
        let err = stored
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err <= 1e-6,
            "generation {s}: user {id}'s vector is off by {err}"
        );
    }
    assert!(
        !engine.contains(BASE + s + 1),
        "generation {s} holds user BASE+{}",
        s + 1
    );
    let ids: HashSet<u64> = engine.index().ids().into_iter().collect();
    assert_eq!(
        ids,
        users_of(s).collect(),
        "generation {s}: the user set differs"
    );

    // The bandit: generation g recorded one success and one failure on item g % 7.
    let mut total = (0.0, 0.0);
    for item in 0..ITEMS {
        let c = engine.bandit().pooled_counts(item);
        let n = (1..=s).filter(|g| g % ITEMS == item).count() as f64;
        assert_eq!(
            (c.successes, c.failures),
            (n, n),
            "generation {s}: pooled counts of item {item}"
        );
        total.0 += c.successes;
        total.1 += c.failures;
    }
    assert_eq!(total, (s as f64, s as f64), "generation {s}: pooled totals");

    // Searches work: the facade's (exact at this size) against brute force,
    // and the restored HNSW graph.
    let newest = BASE + s;
    let q = unit(&vector_of(newest, DIM));
    let mut brute: Vec<(u64, f32)> = users_of(s)
        .filter(|&u| u != newest)
        .map(|u| (u, dot(&q, &unit(&vector_of(u, DIM)))))
        .collect();
    brute.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<u64> = brute.iter().take(10).map(|&(u, _)| u).collect();
    let got = engine.neighbors(newest, 10).expect("neighbors");
    assert_eq!(
        got.iter().map(|n| n.id).collect::<Vec<_>>(),
        top,
        "generation {s}: neighbors"
    );

    let graph = SearchOptions {
        mode: SearchMode::Approximate,
        ef: Some(200),
        ..Default::default()
    };
    let approx = engine
        .index()
        .neighbors(newest, 10, &graph)
        .expect("graph neighbors");
    assert_eq!(approx.len(), 10);
    let hits = approx.iter().filter(|n| top.contains(&n.id)).count();
    assert!(hits >= 8, "generation {s}: graph recall@10 is {hits}/10");
    let found = engine
        .index()
        .search(&vector_of(newest, DIM), 1, &graph)
        .expect("graph search");
    assert_eq!(
        found.first().map(|n| n.id),
        Some(newest),
        "generation {s}: graph search"
    );
    s
}

#[derive(Debug, Default)]
struct Tally {
    no_snapshot_yet: usize,
    at_log: usize,
    ahead_of_log: usize,
    during_startup: usize,
    mid_write: usize,
    tmpdir_leaks: usize,
    tmpdir_leaks_at_startup: usize,
    after_wait_for_log: usize,
    save_ms: Vec<f64>,
    save_bytes: u64,
}

#[test]
fn the_last_complete_snapshot_survives_sigkill() {
    let exe = env!("CARGO_BIN_EXE_snapshot_writer");
    let root = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = root.path().join("snap");
    // The child's TMPDIR, to see what a kill leaves in the system temp folder.
    let child_tmp: PathBuf = root.path().join("tmp");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::create_dir(&child_tmp).expect("mkdir");
    let snapshot = dir.join("engine.gw");

    let mut rng = SmallRng::seed_from_u64(SEED);
    let mut tally = Tally::default();
    let started = Instant::now();
    for round in 0..KILLS {
        let strays_before = stray_temporaries(&dir).len();
        let tmp_before = entries(&child_tmp).len();
        let log_before = log_len(&dir);
        let mut child = Command::new(exe)
            .arg(&dir)
            .env("TMPDIR", &child_tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn snapshot_writer");

        // Decided from the seed alone, so the schedule is the same every run.
        let wait_first = rng.random_bool(0.25);
        let after_wait = Duration::from_micros(rng.random_range(0..60_000));
        let plain = Duration::from_millis(rng.random_range(20..=400));
        if (round > 0 && log_before == 0) || wait_first {
            // Let the child get through its start (and, with no snapshot
            // yet, its initial build) and kill it in the saving loop.
            wait_for_log_growth(&mut child, &dir, log_before);
            sleep_alive(&mut child, after_wait);
            tally.after_wait_for_log += 1;
        } else {
            sleep_alive(&mut child, plain);
        }
        check_alive(&mut child);
        child.kill().expect("SIGKILL"); // SIGKILL on Unix
        let out = take_output(&mut child);
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            // "save of generation G: BYTES bytes in MS ms"
            if let Some(rest) = line.strip_prefix("save of generation ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [_, bytes, "bytes", "in", ms, "ms"] = words.as_slice() {
                    tally.save_ms.push(ms.parse().expect("ms"));
                    tally.save_bytes = bytes.parse().expect("bytes");
                }
            }
        }
        let at_startup = !stdout.contains("loaded generation") && !stdout.contains("built ");
        if at_startup {
            tally.during_startup += 1;
        }
        if stray_temporaries(&dir).len() > strays_before {
            tally.mid_write += 1;
        }
        if entries(&child_tmp).len() > tmp_before {
            tally.tmpdir_leaks += 1;
            if at_startup {
                tally.tmpdir_leaks_at_startup += 1;
            }
        }

        let gens = logged(&dir);
        let last = gens.last().copied().unwrap_or(0);
        if !snapshot.exists() {
            assert!(
                gens.is_empty(),
                "round {round}: no snapshot, but generations {gens:?} were logged"
            );
            tally.no_snapshot_yet += 1;
            continue;
        }
        let s = check_snapshot(&snapshot, last);
        if s == last {
            tally.at_log += 1;
        } else {
            tally.ahead_of_log += 1;
        }
    }
    let elapsed = started.elapsed();

    let strays = stray_temporaries(&dir);
    let tmp_left = entries(&child_tmp);
    let mut ms = tally.save_ms.clone();
    ms.sort_by(f64::total_cmp);
    let median = ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{KILLS} kills in {:.1} s; last logged generation {}",
        elapsed.as_secs_f64(),
        logged(&dir).last().copied().unwrap_or(0)
    );
    println!(
        "snapshot = last logged generation: {}; one ahead of the log (killed between rename and log line): {}; no snapshot yet: {}",
        tally.at_log, tally.ahead_of_log, tally.no_snapshot_yet
    );
    println!(
        "killed during start-up (load or initial build): {}; while the temporary file existed (mid-write): {}; after waiting for a logged save: {}",
        tally.during_startup, tally.mid_write, tally.after_wait_for_log
    );
    println!(
        "save: median {median:.1} ms over {} timed saves, {} bytes",
        ms.len(),
        tally.save_bytes
    );
    println!(
        "stray temporary files in the snapshot folder: {}",
        strays.len()
    );
    for s in &strays {
        println!("  {s}");
    }
    println!(
        "entries left in the child's TMPDIR (hnsw_rs dump folders): {} ({} kills left one, {} of them in a load at start-up, the others in a save's graph dump; {} bytes in all)",
        tmp_left.len(),
        tally.tmpdir_leaks,
        tally.tmpdir_leaks_at_startup,
        tree_bytes(&child_tmp)
    );
    for s in tmp_left.iter().take(3) {
        let sub = child_tmp.join(s);
        println!("  {s}: {:?}, {} bytes", entries(&sub), tree_bytes(&sub));
    }
    assert_eq!(
        tally.at_log + tally.ahead_of_log + tally.no_snapshot_yet,
        KILLS
    );
    assert!(
        tally.no_snapshot_yet < KILLS,
        "no snapshot was ever completed"
    );
    // Leftovers do not pile up: every save (and every graph load) removes
    // those of dead processes, so only the last few kills' remain (a child
    // killed before its first save or load sweeps nothing).
    assert!(
        strays.len() <= 3,
        "{} stray temporary files: {strays:?}",
        strays.len()
    );
    assert!(
        tmp_left.len() <= 3,
        "{} scratch folders left: {tmp_left:?}",
        tmp_left.len()
    );
}
