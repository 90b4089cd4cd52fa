#!/usr/bin/env python3
"""Peer benchmark: ANN index build time / recall@k / QPS of hnswlib and faiss.

Counterpart of the `groupwise` CLI index benchmark; prints JSON lines with the
same schema so that bench/report.py can join them:

  {"bench":"index","impl":"hnswlib"|"faiss-hnsw"|"faiss-flat","dataset":NAME,
   "n":int,"dim":int,"m":int,"ef_construction":int,"build_s":float,
   "build_threads":int,"ef":int,"recall_at_10":float,"qps":float,"query_threads":1,
   "rss_bytes_per_user":float}

Usage:
  python3 bench/peers_index.py --vectors X.npy --queries Q.npy --dataset NAME \
      [--m 24] [--ef-construction 200] [--efs 16,32,64,128,256] [--k 10] \
      [--build-threads 2] [--min-time 0.5] [--impls hnswlib,faiss]

Inputs are float32 .npy matrices [n,d] and [q,d]; both are L2-normalised again
defensively and searched by inner product. Ground truth is exact top-k by a
blocked numpy matmul. recall_at_10 = mean over queries of |approx ∩ exact| / k
(the field keeps its name whatever --k is).

What is timed:
  * build_s: hnswlib `add_items(num_threads=build_threads)` / faiss `add` with
    omp threads = build_threads (index allocation excluded).
  * qps: one batched, single-threaded search call over all queries
    (hnswlib `knn_query(Q, k, num_threads=1)`, faiss `search(Q, k)` with
    omp threads = 1), repeated until --min-time seconds have elapsed;
    qps = queries * repeats / time. A per-query Python loop is avoided because
    interpreter overhead would dominate.
  * faiss-flat: exact IndexFlatIP, batched search of all queries (ef 0, m 0).
  * rss_bytes_per_user: growth of the process's resident set (VmRSS) from
    just before the index is created to just after the build, per vector
    (the input matrix is loaded before; each index is freed before the next
    is built, and glibc is asked to return freed memory first).
A peer library that is not installed is skipped with a message on stderr.
"""
import argparse
import json
import sys
import time

import numpy as np


def normalise(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def exact_topk(x, q, k):
    """Exact top-k ids by inner product, computed in query blocks (~128 MB each)."""
    block = max(1, (1 << 25) // x.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], block):
        scores = q[s:s + block] @ x.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[s:s + block] = np.take_along_axis(part, order, axis=1)
    return out


def recall(approx, exact):
    k = exact.shape[1]
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact))
    return hits / (k * exact.shape[0])


def timed_search(search, nq, min_time):
    """Run search() (all queries) until min_time elapses; return (labels, qps)."""
    reps, t0 = 0, time.perf_counter()
    while True:
        labels = search()
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return labels, nq * reps / elapsed


def rss_bytes():
    """Resident set size of this process (Linux), after returning free heap."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def try_import(name):
    try:
        return __import__(name)
    except ImportError:
        print(f"peers_index.py: {name} is not installed; skipping it "
              f"(pip install {'faiss-cpu' if name == 'faiss' else name})", file=sys.stderr)
        return None


def run_hnswlib(x, q, gt, a, emit):
    hnswlib = try_import("hnswlib")
    if hnswlib is None:
        return
    rss0 = rss_bytes()
    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=x.shape[0], ef_construction=a.ef_construction,
                     M=a.m, random_seed=100)
    t0 = time.perf_counter()
    index.add_items(x, np.arange(x.shape[0]), num_threads=a.build_threads)
    build_s = time.perf_counter() - t0
    a.rss = (rss_bytes() - rss0) / x.shape[0]
    index.set_num_threads(1)
    for ef in a.efs:
        index.set_ef(ef)
        labels, qps = timed_search(lambda: index.knn_query(q, k=a.k, num_threads=1)[0],
                                   q.shape[0], a.min_time)
        emit("hnswlib", a.m, a.ef_construction, build_s, ef, recall(labels, gt), qps)
    del index


def run_faiss(x, q, gt, a, emit):
    faiss = try_import("faiss")
    if faiss is None:
        return
    d = x.shape[1]
    # HNSW
    faiss.omp_set_num_threads(a.build_threads)
    rss0 = rss_bytes()
    index = faiss.IndexHNSWFlat(d, a.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.ef_construction
    t0 = time.perf_counter()
    index.add(x)
    build_s = time.perf_counter() - t0
    a.rss = (rss_bytes() - rss0) / x.shape[0]
    faiss.omp_set_num_threads(1)
    for ef in a.efs:
        index.hnsw.efSearch = ef
        labels, qps = timed_search(lambda: index.search(q, a.k)[1], q.shape[0], a.min_time)
        emit("faiss-hnsw", a.m, a.ef_construction, build_s, ef, recall(labels, gt), qps)
    del index
    # Exact flat baseline
    faiss.omp_set_num_threads(a.build_threads)
    rss0 = rss_bytes()
    flat = faiss.IndexFlatIP(d)
    t0 = time.perf_counter()
    flat.add(x)
    build_s = time.perf_counter() - t0
    a.rss = (rss_bytes() - rss0) / x.shape[0]
    faiss.omp_set_num_threads(1)
    labels, qps = timed_search(lambda: flat.search(q, a.k)[1], q.shape[0], a.min_time)
    emit("faiss-flat", 0, 0, build_s, 0, recall(labels, gt), qps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--m", type=int, default=24)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--efs", default="16,32,64,128,256")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--impls", default="hnswlib,faiss",
                    help="peers to run (comma-separated: hnswlib, faiss)")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="minimum seconds of repeated batched search per ef")
    a = ap.parse_args()
    a.efs = [int(e) for e in a.efs.split(",")]

    x = normalise(np.load(a.vectors))
    q = normalise(np.load(a.queries))
    if x.shape[1] != q.shape[1]:
        sys.exit(f"peers_index.py: dim mismatch {x.shape} vs {q.shape}")
    gt = exact_topk(x, q, a.k)

    def emit(impl, m, efc, build_s, ef, rec, qps):
        print(json.dumps({
            "bench": "index", "impl": impl, "dataset": a.dataset,
            "n": int(x.shape[0]), "dim": int(x.shape[1]), "m": m, "ef_construction": efc,
            "build_s": build_s, "build_threads": a.build_threads, "ef": ef,
            "recall_at_10": rec, "qps": qps, "query_threads": 1,
            "rss_bytes_per_user": a.rss,
        }), flush=True)

    impls = a.impls.split(",")
    if "hnswlib" in impls:
        run_hnswlib(x, q, gt, a, emit)
    if "faiss" in impls:
        run_faiss(x, q, gt, a, emit)


if __name__ == "__main__":
    main()
