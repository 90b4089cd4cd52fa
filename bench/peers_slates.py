#!/usr/bin/env python3
"""Peer benchmark: Beta-Bernoulli Thompson-sampling slate decisions and feedback.

Counterpart of the engine's slate benchmark (choose an ordered slate of K
distinct items out of N candidates, learn from clicks); prints JSON lines, one
per (impl, N):

  {"bench":"slates","impl":"obp-BernoulliTS"|"mabwiser-TS"|"numpy-inslate-TS"|
   "numpy-standard-TS","policy":"standard TS"|"in-slate TS","candidates":N,
   "slate":K,"threads":1,"decisions":int,"decisions_per_s":float,
   "p50_us":float,"p99_us":float,"feedback_per_s":float,"note":str}

Usage:
  python3 bench/peers_slates.py [--candidates 100,1000,10000] [--slate 10] \
      [--seed 7] [--max-seconds 20]

Peers:
  * obp-BernoulliTS: obp.policy.BernoulliTS(n_actions=N, len_list=K,
    batch_size=1); select_action() returns the ranked slate, update_params()
    learns one (item, click) at a time.
  * mabwiser-TS: MAB(LearningPolicy.ThompsonSampling()); predict_expectations()
    draws one Beta sample per arm, the slate is the top K arms by sample
    (np.argpartition, then sorted; included in the timing); partial_fit()
    learns the K (item, click) pairs of a slate in one call.
  * numpy-standard-TS: one draw of N Betas, argpartition top K, then sort.
  * numpy-inslate-TS: for each of the K slots a fresh draw of N Betas, items
    already placed masked out, argmax (the in-slate TS policy of the engine).
obp, MABWiser and numpy-standard are standard (one-draw) TS.

Posterior state: every item i gets a true CTR drawn from Beta(2, 40) and 200
synthetic impressions (seeded by --seed), so alpha = 1 + clicks and
beta = 1 + misses. obp gets these as its alpha/beta prior arrays, numpy uses
them directly, MABWiser is fit() on the equivalent log (N * 200 rows, giving
the same counts).

What is timed, single-threaded (OMP/BLAS threads = 1), one decision at a time:
  * each decision with time.perf_counter_ns; p50_us / p99_us over all timed
    decisions; decisions_per_s = decisions / sum of decision times.
  * after each decision, clicks are simulated from the true CTRs (not timed)
    and applying the K (item, click) updates is timed;
    feedback_per_s = K * decisions / sum of update times.
A few decisions are run first as warm-up. Timed decisions go on until both
2000 decisions and 2 s are reached, but stop at --max-seconds once at least
200 decisions were made (slow peers at large N).
A peer library that cannot be imported is skipped with a message on stderr.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import importlib
import importlib.metadata
import json
import sys
import time

import numpy as np

IMPRESSIONS_PER_ITEM = 200
WARMUP_DECISIONS = 50
WARMUP_SECONDS = 1.0
MIN_DECISIONS = 2000
MIN_SECONDS = 2.0
FLOOR_DECISIONS = 200


def synthetic_posterior(n, seed):
    """True CTRs and Beta posterior parameters after IMPRESSIONS_PER_ITEM each."""
    rng = np.random.default_rng(seed)
    ctr = rng.beta(2.0, 40.0, n)
    clicks = rng.binomial(IMPRESSIONS_PER_ITEM, ctr)
    alpha = 1.0 + clicks
    beta = 1.0 + (IMPRESSIONS_PER_ITEM - clicks)
    return ctr, alpha, beta


def top_k(values, k):
    """Indices of the k largest values, largest first."""
    part = np.argpartition(values, -k)[-k:]
    return part[np.argsort(values[part])[::-1]]


def measure(decide, learn, ctr, k, seed, max_seconds):
    """Alternate timed decide() and timed learn(slate, clicks).

    Returns (decision latencies in ns, total feedback time in ns).
    """
    sim = np.random.default_rng(seed + 1)

    def step():
        t0 = time.perf_counter_ns()
        slate = decide()
        t1 = time.perf_counter_ns()
        clicks = (sim.random(k) < ctr[slate]).astype(np.int64)
        t2 = time.perf_counter_ns()
        learn(slate, clicks)
        t3 = time.perf_counter_ns()
        return t1 - t0, t3 - t2

    start = time.perf_counter()
    for _ in range(WARMUP_DECISIONS):
        step()
        if time.perf_counter() - start >= WARMUP_SECONDS:
            break

    latencies, feedback_ns = [], 0
    start = time.perf_counter()
    while True:
        decision_ns, update_ns = step()
        latencies.append(decision_ns)
        feedback_ns += update_ns
        n, elapsed = len(latencies), time.perf_counter() - start
        if n >= MIN_DECISIONS and elapsed >= MIN_SECONDS:
            break
        if n >= FLOOR_DECISIONS and elapsed >= max_seconds:
            break
    return np.array(latencies, dtype=np.float64), feedback_ns


def try_import(module):
    """importlib.import_module(module), or None (with a message) if that fails."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # a broken dependency stack fails in many ways
        print(f"peers_slates.py: cannot import {module} ({e!r}); skipping it",
              file=sys.stderr)
        return None


def obp_peer(n, k, alpha, beta, seed):
    obp_policy = try_import("obp.policy")
    if obp_policy is None:
        return None
    policy = obp_policy.BernoulliTS(n_actions=n, len_list=k, batch_size=1,
                                    random_state=seed, alpha=alpha.copy(), beta=beta.copy())

    def learn(slate, clicks):
        for item, click in zip(slate, clicks):
            policy.update_params(item, click)

    note = (f"obp {importlib.metadata.version('obp')}; select_action draws N Betas "
            "from a legacy np.random.RandomState (sklearn check_random_state), "
            "recomputing the alpha+clicks and beta+misses arrays each call, then a "
            "full argsort (O(N log N)) and keeps the first len_list; update_params "
            "with batch_size=1 copies both N-length count arrays per event")
    return policy.select_action, learn, note


def mabwiser_peer(n, k, alpha, beta, seed):
    mabwiser = try_import("mabwiser.mab")
    if mabwiser is None:
        return None
    mab = mabwiser.MAB(arms=list(range(n)),
                       learning_policy=mabwiser.LearningPolicy.ThompsonSampling(), seed=seed)
    # Equivalent log: item i shown IMPRESSIONS_PER_ITEM times, clicked alpha_i - 1
    # times. int32 decisions halve the cost of fit's per-arm `decisions == arm` scan.
    clicks = (alpha - 1).astype(np.int64)
    decisions = np.repeat(np.arange(n, dtype=np.int32), IMPRESSIONS_PER_ITEM)
    rewards = (np.arange(IMPRESSIONS_PER_ITEM)[None, :] < clicks[:, None]).astype(np.int64)
    mab.fit(decisions, rewards.ravel())

    def decide():
        draws = mab.predict_expectations()  # {arm: sample}, in arm order 0..N-1
        return top_k(np.fromiter(draws.values(), dtype=np.float64, count=n), k)

    note = (f"mabwiser {importlib.metadata.version('mabwiser')}; warm-up fit() on "
            f"the equivalent log ({n * IMPRESSIONS_PER_ITEM} rows, same counts as the "
            "others); predict_expectations makes N scalar rng.beta calls in a Python "
            "loop and returns a dict, top-K by np.argpartition (timed); partial_fit "
            "scans all N arms per call (joblib, n_jobs=1)")
    return decide, lambda slate, clicks: mab.partial_fit(slate, clicks), note


def numpy_learner(alpha, beta):
    def learn(slate, clicks):
        alpha[slate] += clicks
        beta[slate] += 1 - clicks
    return learn


def numpy_standard_peer(n, k, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    alpha, beta = alpha.copy(), beta.copy()
    note = (f"numpy {np.__version__}; one Generator.beta draw for all N, "
            "argpartition top K, then sort")
    return (lambda: top_k(rng.beta(alpha, beta), k)), numpy_learner(alpha, beta), note


def numpy_inslate_peer(n, k, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    alpha, beta = alpha.copy(), beta.copy()

    def decide():
        slate = np.empty(k, dtype=np.int64)
        for slot in range(k):
            draws = rng.beta(alpha, beta)
            draws[slate[:slot]] = -1.0
            slate[slot] = draws.argmax()
        return slate

    note = (f"numpy {np.__version__}; per slot a fresh Generator.beta draw for "
            "all N (K*N draws per decision), placed items masked, argmax")
    return decide, numpy_learner(alpha, beta), note


PEERS = [
    ("obp-BernoulliTS", "standard TS", obp_peer),
    ("mabwiser-TS", "standard TS", mabwiser_peer),
    ("numpy-inslate-TS", "in-slate TS", numpy_inslate_peer),
    ("numpy-standard-TS", "standard TS", numpy_standard_peer),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", default="100,1000,10000")
    ap.add_argument("--slate", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="cap on timed seconds per configuration (>= 200 decisions)")
    a = ap.parse_args()
    k = a.slate

    for impl, policy, make in PEERS:
        for n in (int(c) for c in a.candidates.split(",")):
            ctr, alpha, beta = synthetic_posterior(n, a.seed)
            peer = make(n, k, alpha, beta, a.seed)
            if peer is None:
                break
            decide, learn, note = peer
            latencies, feedback_ns = measure(decide, learn, ctr, k, a.seed, a.max_seconds)
            p50, p99 = np.percentile(latencies, [50, 99]) / 1e3
            print(json.dumps({
                "bench": "slates", "impl": impl, "policy": policy,
                "candidates": n, "slate": k, "threads": 1,
                "decisions": len(latencies),
                "decisions_per_s": len(latencies) / (latencies.sum() / 1e9),
                "p50_us": p50, "p99_us": p99,
                "feedback_per_s": k * len(latencies) / (feedback_ns / 1e9),
                "note": note,
            }), flush=True)


if __name__ == "__main__":
    main()
