//! `groupwise bench slates`: decisions per second and latency of a slate of
//! `slate` from 100 / 1,000 / 10,000 candidates, per policy, on 1 and 2
//! threads; and feedback events per second while decisions run. The
//! posteriors are warmed first exactly as bench/peers_slates.py warms the
//! Python peers: each item gets a click rate drawn from Beta(2, 40) and 200
//! impressions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use groupwise::bandit::{BanditConfig, Feedback, Policy, Request, SlateBandit};
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use serde_json::json;

use crate::bench::emit;

/// Arguments of `groupwise bench slates`.
#[derive(clap::Args, Debug)]
pub struct SlatesArgs {
    /// Candidate counts.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub candidates: Vec<usize>,
    /// Slots per slate.
    #[arg(long, default_value_t = 10)]
    pub slate: usize,
    /// Thread counts for decisions.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Random seed of the warm-up data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

fn warmed(n: usize, seed: u64) -> Result<SlateBandit, Box<dyn std::error::Error>> {
    let bandit = SlateBandit::new(BanditConfig::default())?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let prior = rand_distr::Beta::new(2.0, 40.0)?;
    for item in 0..n as u64 {
        let ctr: f64 = prior.sample(&mut rng);
        let clicks = (0..200).filter(|_| rng.random::<f64>() < ctr).count() as f64;
        bandit.record(Some(0), None, &[(item, clicks, 200.0 - clicks)], None)?;
    }
    Ok(bandit)
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e3
}

pub fn slates(a: &SlatesArgs) -> Result<(), Box<dyn std::error::Error>> {
    for &n in &a.candidates {
        let bandit = Arc::new(warmed(n, a.seed)?);
        let candidates: Arc<Vec<u64>> = Arc::new((0..n as u64).collect());
        for policy in [Policy::InSlateThompson, Policy::Thompson, Policy::Greedy] {
            for &threads in &a.threads {
                let deadline = Duration::from_secs_f64(a.seconds);
                let started = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let bandit = Arc::clone(&bandit);
                        let candidates = Arc::clone(&candidates);
                        let slate = a.slate;
                        std::thread::spawn(move || -> groupwise::Result<Vec<u64>> {
                            let mut lat = Vec::new();
                            let begin = Instant::now();
                            let mut i = 0u64;
                            while begin.elapsed() < deadline {
                                let mut req = Request::new(
                                    Some(t as u64 * 1_000_000 + i % 1000),
                                    Some(0),
                                    &candidates,
                                    slate,
                                );
                                req.policy = policy;
                                let t0 = Instant::now();
                                let d = bandit.decide(&req)?;
                                lat.push(t0.elapsed().as_nanos() as u64);
                                std::hint::black_box(d);
                                i += 1;
                            }
                            Ok(lat)
                        })
                    })
                    .collect();
                let mut lat: Vec<u64> = Vec::new();
                for h in handles {
                    lat.extend(h.join().map_err(|_| "a benchmark thread panicked")??);
                }
                let wall = started.elapsed().as_secs_f64();
                lat.sort_unstable();
                emit(&json!({
                    "bench": "slates", "impl": "groupwise", "policy": policy.name(),
                    "candidates": n, "slate": a.slate, "threads": threads,
                    "decisions": lat.len(), "decisions_per_s": lat.len() as f64 / wall,
                    "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
                }))?;
            }
        }
        // Feedback while another thread keeps deciding: decisions made first,
        // then their feedback applied as fast as possible while a second
        // thread decides (and takes read locks) all the time.
        let mut ids = Vec::new();
        let begin = Instant::now();
        while begin.elapsed() < Duration::from_secs_f64(a.seconds) {
            ids.push(
                bandit
                    .decide(&Request::new(
                        Some(ids.len() as u64 % 1000),
                        Some(0),
                        &candidates,
                        a.slate,
                    ))?
                    .id,
            );
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let decider = {
            let bandit = Arc::clone(&bandit);
            let candidates = Arc::clone(&candidates);
            let stop = Arc::clone(&stop);
            let slate = a.slate;
            std::thread::spawn(move || -> groupwise::Result<u64> {
                let mut made = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::black_box(bandit.decide(&Request::new(
                        Some(made % 1000),
                        Some(0),
                        &candidates,
                        slate,
                    ))?);
                    made += 1;
                }
                Ok(made)
            })
        };
        let begin = Instant::now();
        for (n, &id) in ids.iter().enumerate() {
            bandit.feedback(&Feedback {
                decision: id,
                clicks: if n % 5 == 0 { &[1] } else { &[] },
                visible: None,
                now: None,
            })?;
        }
        let secs = begin.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let made = decider
            .join()
            .map_err(|_| "the decision thread panicked")??;
        emit(&json!({
            "bench": "slates-feedback", "impl": "groupwise", "candidates": n, "slate": a.slate,
            "feedback_per_s": ids.len() as f64 / secs,
            "concurrent_decisions_per_s": made as f64 / secs,
            "note": "one thread applying feedback (one event = one slate's clicks) while another decides",
        }))?;
    }
    Ok(())
}
