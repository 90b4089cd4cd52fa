//! A service built on the engine facade: one `Arc<Engine>` shared by
//!
//! * an ingest thread that encodes MovieLens users from their histories and
//!   upserts them (`upsert_sequence`),
//! * reader threads that answer "users like this one" (`neighbors`) and
//!   serve slates of 10 out of 1,000 candidate movies (`decide`),
//! * a feedback thread that records the clicks the readers pass it over a
//!   channel (`feedback`).
//!
//! Once every user is in, it builds the segments and serves a second round,
//! now per segment. Then it prints throughput and latency, the engine's
//! counters, and saves a snapshot and loads it back.
//!
//! Clicks are simulated from the log: each user's first 80 % of ratings
//! (in time order) are its history, the last 20 % are the movies it will
//! click, and it scans a slate top-down and clicks the first of those it
//! sees (the cascade model the config names).
//!
//! ```text
//! scripts/setup.sh   # ONNX Runtime + MovieLens 100K into .groupwise/
//! cargo run --release -p groupwise --example engine_service -- \
//!     .groupwise/data/ml-100k/ml-100k.inter models/ml100k-seq.onnx [examples/groupwise.json]
//! ```

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use groupwise::bandit::{Feedback, Request};
use groupwise::data::{Interactions, InteractionsSpec};
use groupwise::engine::EncoderSpec;
use groupwise::{Engine, EngineConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const USAGE: &str = "usage: engine_service [interactions.tsv] [encoder.onnx] [config.json]";
/// Reader threads.
const READERS: usize = 2;
/// Requests each reader serves after the segments are built.
const REQUESTS_PER_READER: usize = 2_500;
/// Candidate movies per slate request (the most rated ones) and slate size.
const CANDIDATES: usize = 1_000;
const SLATE: usize = 10;
/// The encoder's name in the engine.
const ENCODER: &str = "seq";

/// A user as the simulation sees it.
struct Viewer {
    user: u64,
    /// What the service is told (oldest first).
    history: Vec<u64>,
    /// What the user will click when shown.
    future: HashSet<u64>,
}

/// A slate's outcome, on its way from a reader to the feedback thread.
struct Click {
    decision: u64,
    /// The clicked slot, if any (cascade: at most one).
    slot: Option<usize>,
}

/// Latencies of each kind of call.
#[derive(Default)]
struct Timings {
    upsert: Vec<Duration>,
    neighbors: Vec<Duration>,
    decide: Vec<Duration>,
    feedback: Vec<Duration>,
}

impl Timings {
    fn merge(&mut self, other: Timings) {
        self.upsert.extend(other.upsert);
        self.neighbors.extend(other.neighbors);
        self.decide.extend(other.decide);
        self.feedback.extend(other.feedback);
    }
}

/// What a reader did.
#[derive(Default)]
struct Served {
    timings: Timings,
    slates: usize,
    slates_clicked: usize,
}

type BoxError = Box<dyn Error + Send + Sync>;
type ThreadResult<T> = Result<T, BoxError>;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let log_path = args
        .next()
        .unwrap_or_else(|| ".groupwise/data/ml-100k/ml-100k.inter".into());
    let model = args
        .next()
        .unwrap_or_else(|| "models/ml100k-seq.onnx".into());
    let config_path = args
        .next()
        .unwrap_or_else(|| "examples/groupwise.json".into());
    if args.next().is_some() {
        return Err(USAGE.into());
    }

    // The engine: settings from the config file, the encoder from the
    // command line (replacing the encoders the file lists).
    let mut config = EngineConfig::from_file(&config_path)?;
    config.encoders = vec![EncoderSpec {
        name: ENCODER.into(),
        path: model.into(),
    }];
    let engine = Arc::new(Engine::new(config)?);

    // The traffic: users, what they will click, and the candidate movies.
    let log = Interactions::load(&log_path, &InteractionsSpec::movielens())
        .map_err(|e| format!("{e} (scripts/setup.sh downloads MovieLens 100K)"))?;
    let viewers: Arc<Vec<Viewer>> = Arc::new(
        log.histories()
            .into_iter()
            .filter(|h| h.items.len() >= 5)
            .map(|h| {
                let cut = h.items.len() * 4 / 5;
                Viewer {
                    user: h.user,
                    history: h.items[..cut].to_vec(),
                    future: h.items[cut..].iter().copied().collect(),
                }
            })
            .collect(),
    );
    let candidates: Arc<Vec<u64>> = Arc::new(most_rated(&log, CANDIDATES));
    println!(
        "{} users, {} candidate movies, {READERS} readers, slates of {SLATE}",
        viewers.len(),
        candidates.len()
    );

    // The feedback thread lives for the whole run; it stops when every
    // reader has dropped its sender.
    let (clicks_tx, clicks_rx) = channel::bounded::<Click>(4_096);
    let feedback = {
        let engine = engine.clone();
        std::thread::spawn(move || record_feedback(&engine, &clicks_rx))
    };

    // Round 1: users arrive while readers already serve those that are in.
    let ingested = Arc::new(AtomicUsize::new(0));
    let ingest_done = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let ingest = {
        let (engine, viewers) = (engine.clone(), viewers.clone());
        let (ingested, ingest_done) = (ingested.clone(), ingest_done.clone());
        std::thread::spawn(move || -> ThreadResult<Timings> {
            let mut timings = Timings::default();
            // Stop the readers even when an upsert fails.
            let result: ThreadResult<()> = viewers.iter().try_for_each(|v| {
                let t = Instant::now();
                engine.upsert_sequence(ENCODER, v.user, &v.history)?;
                timings.upsert.push(t.elapsed());
                ingested.fetch_add(1, Ordering::Release);
                Ok(())
            });
            ingest_done.store(true, Ordering::Release);
            result.map(|()| timings)
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (engine, viewers, candidates) =
                (engine.clone(), viewers.clone(), candidates.clone());
            let (ingested, ingest_done, tx) =
                (ingested.clone(), ingest_done.clone(), clicks_tx.clone());
            std::thread::spawn(move || -> ThreadResult<Served> {
                let mut rng = SmallRng::seed_from_u64(r as u64);
                let mut served = Served::default();
                while !ingest_done.load(Ordering::Acquire) {
                    let n = ingested.load(Ordering::Acquire);
                    if n == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let v = &viewers[rng.random_range(0..n)];
                    serve(&engine, v, &candidates, &tx, &mut served)?;
                }
                Ok(served)
            })
        })
        .collect();
    let mut timings = join(ingest, "ingest")?;
    let round1 = join_all(readers)?;
    let round1_s = t.elapsed().as_secs_f64();

    // Segments, now that everyone is in. Decisions then use the user's
    // segment's evidence as well as the pooled and the user's own.
    let report = engine.build_segments()?;
    println!(
        "segments: {} by {} (cohesion {:.2}, modularity {:.2}) in {:.2} s",
        report.build.segments,
        report.build.method,
        report.build.cohesion,
        report.build.modularity.unwrap_or(f64::NAN),
        report.build.graph_seconds + report.build.cluster_seconds
    );

    // Round 2: readers serve a fixed number of requests each.
    let t = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (engine, viewers, candidates, tx) = (
                engine.clone(),
                viewers.clone(),
                candidates.clone(),
                clicks_tx.clone(),
            );
            std::thread::spawn(move || -> ThreadResult<Served> {
                let mut rng = SmallRng::seed_from_u64(100 + r as u64);
                let mut served = Served::default();
                for _ in 0..REQUESTS_PER_READER {
                    let v = &viewers[rng.random_range(0..viewers.len())];
                    serve(&engine, v, &candidates, &tx, &mut served)?;
                }
                Ok(served)
            })
        })
        .collect();
    let round2 = join_all(readers)?;
    drop(clicks_tx);
    timings.feedback = join(feedback, "feedback")?;
    let round2_s = t.elapsed().as_secs_f64();

    println!(
        "round 1 (ingest while serving): {round1_s:.2} s, {} requests, {:.1} % of slates clicked",
        round1.slates,
        pct(round1.slates_clicked, round1.slates)
    );
    println!(
        "round 2 (segments built):       {round2_s:.2} s, {} requests, {:.1} % of slates clicked",
        round2.slates,
        pct(round2.slates_clicked, round2.slates)
    );
    let wall = round1_s + round2_s;
    timings.merge(round1.timings);
    timings.merge(round2.timings);
    println!("call        calls   per s (wall)   p50 µs   p99 µs");
    for (name, d) in [
        ("upsert", &mut timings.upsert),
        ("neighbors", &mut timings.neighbors),
        ("decide", &mut timings.decide),
        ("feedback", &mut timings.feedback),
    ] {
        // Upserts ran in round 1 only; the others across both rounds.
        let seconds = if name == "upsert" { round1_s } else { wall };
        d.sort_unstable();
        println!(
            "{name:<10} {:>6} {:>14.0} {:>8.0} {:>8.0}",
            d.len(),
            d.len() as f64 / seconds,
            micros(quantile(d, 0.5)),
            micros(quantile(d, 0.99))
        );
    }

    let stats = engine.stats();
    let b = &stats.bandit;
    println!(
        "stats: {} users, {} segments, {} upserts, {} decisions, {} feedback ({} rejected), {} clicks / {} impressions",
        stats.users,
        stats.segments,
        stats.upserts,
        b.decisions,
        b.feedback_applied,
        b.rejected_unknown_decision + b.rejected_bad_position,
        b.clicks,
        b.impressions
    );

    // A snapshot, and a restart from it: same users, segments, counters and
    // neighbours.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("engine.gw");
    let t = Instant::now();
    let info = engine.save(&path)?;
    let save_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let restored = Engine::load(&path)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let probe: Vec<u64> = viewers.iter().step_by(10).map(|v| v.user).collect();
    let same = probe
        .iter()
        .filter(|&&u| engine.neighbors(u, 10).ok() == restored.neighbors(u, 10).ok())
        .count();
    let r = restored.stats();
    println!(
        "snapshot: {:.1} MB saved in {save_ms:.0} ms, loaded in {load_ms:.0} ms: {} users, {} segments, {} feedback events, neighbours of {same}/{} users unchanged",
        info.bytes as f64 / 1e6,
        r.users,
        r.segments,
        r.bandit.feedback_applied,
        probe.len()
    );
    if r.users != stats.users || r.bandit.feedback_applied != b.feedback_applied {
        return Err("the restored engine differs from the saved one".into());
    }
    Ok(())
}

/// One request: the user's look-alikes, then a slate, whose outcome goes to
/// the feedback thread.
fn serve(
    engine: &Engine,
    v: &Viewer,
    candidates: &[u64],
    clicks: &Sender<Click>,
    served: &mut Served,
) -> ThreadResult<()> {
    let t = Instant::now();
    // A real service would return these to its caller.
    let _similar = engine.neighbors(v.user, 10)?;
    served.timings.neighbors.push(t.elapsed());

    let t = Instant::now();
    let slate = engine.decide(&Request::new(Some(v.user), None, candidates, SLATE))?;
    served.timings.decide.push(t.elapsed());
    let slot = slate.items.iter().position(|i| v.future.contains(i));
    served.slates += 1;
    served.slates_clicked += usize::from(slot.is_some());
    // The channel closes only if the feedback thread stopped on an error.
    clicks
        .send(Click {
            decision: slate.id,
            slot,
        })
        .map_err(|_| "the feedback thread stopped")?;
    Ok(())
}

/// The feedback thread: records clicks until every sender is gone.
fn record_feedback(engine: &Engine, clicks: &Receiver<Click>) -> ThreadResult<Vec<Duration>> {
    let mut latencies = Vec::new();
    for c in clicks {
        let clicked: &[usize] = match &c.slot {
            Some(s) => std::slice::from_ref(s),
            None => &[],
        };
        let t = Instant::now();
        engine.feedback(&Feedback {
            decision: c.decision,
            clicks: clicked,
            // Cascade: the user looked down to its click, or at everything.
            visible: c.slot.map(|s| s + 1),
            now: None,
        })?;
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

/// The `n` most rated items.
fn most_rated(log: &Interactions, n: usize) -> Vec<u64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for r in &log.rows {
        *counts.entry(r.item).or_default() += 1;
    }
    let mut items: Vec<(u64, usize)> = counts.into_iter().collect();
    items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    items.into_iter().take(n).map(|(item, _)| item).collect()
}

fn join<T>(h: JoinHandle<ThreadResult<T>>, name: &str) -> ThreadResult<T> {
    h.join()
        .map_err(|_| format!("the {name} thread panicked"))?
}

fn join_all(readers: Vec<JoinHandle<ThreadResult<Served>>>) -> ThreadResult<Served> {
    let mut all = Served::default();
    for h in readers {
        let s = join(h, "reader")?;
        all.timings.merge(s.timings);
        all.slates += s.slates;
        all.slates_clicked += s.slates_clicked;
    }
    Ok(all)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pct(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}
