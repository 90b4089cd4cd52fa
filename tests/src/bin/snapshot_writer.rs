//! Child process of the crash-safety test (`tests/tests/crash.rs`): saves
//! engine snapshots in an endless loop until it is killed.
//!
//! `snapshot_writer DIR`
//!
//! * If `DIR/engine.gw` exists it is loaded (a failure exits with code 3 and
//!   the error on stderr); otherwise a new engine of dimension [`DIM`] is
//!   built with [`INITIAL`] users (ids `0..INITIAL`).
//! * The generation `g` is the number of users beyond the initial ones. Each
//!   turn of the loop: `g += 1`; user `BASE + g` is upserted with
//!   `vector_of(BASE + g)`; one bandit observation `(g % 7, 1 success,
//!   1 failure)` is recorded; the snapshot is saved to `DIR/engine.gw`; and
//!   only once the save returned `Ok`, the line `g` is appended to `DIR/log`
//!   and fsynced.
//!
//! So the snapshot of generation `g` holds exactly the users `0..INITIAL`
//! and `BASE + 1 ..= BASE + g`, every one with vector `vector_of(id)`, and
//! pooled bandit counts over items `0..7` summing to `g` successes and `g`
//! failures. The constants and `vector_of` are shared with the test through
//! `groupwise_e2e::crash`.
//!
//! Exit codes: 2 usage, 3 the existing snapshot does not load, 4 any other
//! error (on stderr).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use groupwise::{Engine, EngineConfig};
use groupwise_e2e::crash::{vector_of, BASE, DIM, INITIAL, ITEMS};

type Failure = (u8, String);

fn fail(code: u8) -> impl FnOnce(groupwise::Error) -> Failure {
    move |e| (code, e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir] = args.as_slice() else {
        eprintln!("usage: snapshot_writer DIR");
        return ExitCode::from(2);
    };
    match run(Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("snapshot_writer: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(dir: &Path) -> Result<(), Failure> {
    let snapshot = dir.join("engine.gw");
    let log_path = dir.join("log");
    let started = Instant::now();
    let (engine, mut g) = if snapshot.exists() {
        let engine = Engine::load(&snapshot).map_err(fail(3))?;
        let users = engine.index().len() as u64;
        let g = users.checked_sub(INITIAL).ok_or_else(|| {
            (
                3,
                format!("the snapshot holds {users} users, fewer than the {INITIAL} initial ones"),
            )
        })?;
        println!(
            "loaded generation {g} in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        (engine, g)
    } else {
        let engine = Engine::new(EngineConfig::new(DIM)).map_err(fail(4))?;
        let ids: Vec<u64> = (0..INITIAL).collect();
        let vectors: Vec<f32> = ids.iter().flat_map(|&id| vector_of(id, DIM)).collect();
        engine.upsert_embeddings(&ids, &vectors).map_err(fail(4))?;
        println!(
            "built {INITIAL} users in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        (engine, 0)
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io_failure(&log_path, &e))?;
    let mut timed = 0;
    loop {
        g += 1;
        let user = BASE + g;
        engine
            .upsert_embedding(user, &vector_of(user, DIM))
            .map_err(fail(4))?;
        engine
            .bandit()
            .record(Some(1), None, &[(g % ITEMS, 1.0, 1.0)], None)
            .map_err(fail(4))?;
        let t = Instant::now();
        let info = engine.save(&snapshot).map_err(fail(4))?;
        if timed < 3 {
            timed += 1;
            println!(
                "save of generation {g}: {} bytes in {:.2} ms",
                info.bytes,
                t.elapsed().as_secs_f64() * 1e3
            );
            std::io::stdout()
                .flush()
                .map_err(|e| io_failure(Path::new("<stdout>"), &e))?;
        }
        log.write_all(format!("{g}\n").as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(|e| io_failure(&log_path, &e))?;
    }
}

fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    (4, format!("{}: {e}", path.display()))
}
