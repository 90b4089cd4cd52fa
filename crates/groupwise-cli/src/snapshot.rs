//! `groupwise snapshot inspect FILE`: what a snapshot holds, after checking
//! its checksum; and `groupwise snapshot check FILE`: load it fully.

use std::path::PathBuf;
use std::time::Instant;

use groupwise::engine::{inspect, LoadOptions, SnapshotInfo};
use groupwise::Engine;

/// Snapshot tools.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the version, checksum status and contents of a snapshot file.
    Inspect {
        /// The snapshot.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a snapshot into an engine (without opening its encoders) and
    /// report how long it took.
    Check {
        /// The snapshot.
        file: PathBuf,
    },
}

pub fn run(c: &Command) -> Result<(), Box<dyn std::error::Error>> {
    match c {
        Command::Inspect { file, json } => {
            let info = inspect(file)?;
            if *json {
                println!("{}", to_json(&info));
            } else {
                print!("{}", describe(&info));
            }
            Ok(())
        }
        Command::Check { file } => {
            let t = Instant::now();
            let engine = Engine::load_with(
                file,
                LoadOptions {
                    load_encoders: false,
                    ..LoadOptions::default()
                },
            )?;
            let s = engine.stats();
            println!(
                "{}: loaded in {:.2} s: {} users, {} segments, {} bandit decisions",
                file.display(),
                t.elapsed().as_secs_f64(),
                s.users,
                s.segments,
                s.bandit.decisions
            );
            Ok(())
        }
    }
}

fn to_json(i: &SnapshotInfo) -> serde_json::Value {
    serde_json::json!({
        "path": i.path,
        "version": i.version,
        "bytes": i.bytes,
        "checksum": format!("{:016x}", i.checksum),
        "checksum_ok": true,
        "groupwise_version": i.groupwise_version,
        "created_unix_ms": i.created_unix_ms,
        "dim": i.dim,
        "encoders": i.encoders,
        "users": i.users,
        "graph_stored": i.graph_stored,
        "backend": i.backend.name(),
        "segments": i.segments,
        "bandit_items": i.bandit_items,
        "bandit_users": i.bandit_users,
        "pending_decisions": i.pending_decisions,
        "decisions": i.bandit_stats.decisions,
        "feedback_applied": i.bandit_stats.feedback_applied,
        "replica_id": i.replica_id,
    })
}

/// The text `inspect` prints.
pub fn describe(i: &SnapshotInfo) -> String {
    let s = &i.bandit_stats;
    format!(
        "{path}\n  format version {v}, {mb:.1} MB, written by groupwise {gv} at {when}\n  \
         checksum XXH3-64 {sum:016x}: OK\n  \
         users {users} (dimension {dim}; {backend} HNSW graph {graph})\n  \
         segments {segments}\n  \
         encoders {encoders}\n  \
         bandit: {items} items with counts, {busers} users with their own state, {pending} decisions awaiting feedback\n  \
         bandit counters: {dec} decisions, {fb} feedback events, {clicks} clicks, {merged} replica deltas merged\n  \
         replica {replica}\n",
        path = i.path.display(),
        v = i.version,
        mb = i.bytes as f64 / 1e6,
        gv = i.groupwise_version,
        when = utc(i.created_unix_ms),
        sum = i.checksum,
        users = i.users,
        dim = i.dim,
        backend = i.backend,
        graph = if i.graph_stored { "stored" } else { "rebuilt on load" },
        segments = i.segments.map_or("not built".to_string(), |n| n.to_string()),
        encoders = if i.encoders.is_empty() { "-".to_string() } else { i.encoders.join(", ") },
        items = i.bandit_items,
        busers = i.bandit_users,
        pending = i.pending_decisions,
        dec = s.decisions,
        fb = s.feedback_applied,
        clicks = s.clicks,
        merged = s.merged_deltas,
        replica = i.replica_id.map_or("-".to_string(), |r| r.to_string()),
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` for milliseconds since the Unix epoch (the
/// proleptic Gregorian calendar, by the days-from-civil inversion).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates_are_right() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_795_759_564_757), "2026-11-27 06:06:04 UTC");
    }
}
