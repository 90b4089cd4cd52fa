#!/usr/bin/env python3
"""Peers for `groupwise eval segments`: leidenalg (igraph) and scikit-learn
KMeans on the files that command writes, with the same metrics, as JSON lines.

Input folder (written by `groupwise eval segments --peers PY [--export DIR]`):
  vectors.npy   float32 [n, d], unit rows, in graph node order
  edges.u32     little-endian u32 pairs (a, b), one per undirected edge
  weights.npy   float32 [e, 1], edge weights (cosine similarities)
  truth.txt     optional, one known label per row
  genres.npy    optional float32 [n, g], interactions per genre per row

Rows printed (schema of the Rust `Row`):
  {"system": "leidenalg", "method": "leiden", ...}  RBConfigurationVertexPartition,
      resolution 1, n_iterations 2 (as groupwise), seeds 0..S-1
  {"system": "igraph", "method": "leiden (C)", ...}  Graph.community_leiden,
      objective modularity, resolution 1, n_iterations 2 (seeded via `random`)
  {"system": "scikit-learn", "method": "kmeans (k=K)", ...}  KMeans(k, k-means++,
      n_init=1, lloyd) on the unit rows; objective = mean cosine of rows to
      their normalised cluster mean (groupwise's spherical objective)
  {"system": "hnswlib", "method": "graph build", "seconds": ...}  index
      (M 24, efConstruction 200, 2 threads) + k-NN query of every row, if
      hnswlib is installed
Timed: the clustering call only (igraph graph construction excluded), as for
groupwise. Metrics: igraph modularity (weights, resolution 1), scikit-learn
silhouette (cosine, on the same seeded sample size), NMI (arithmetic), ARI.
"""
import argparse
import itertools
import json
import pathlib
import sys
import time

import numpy as np


def top_genre_lift(genres, labels):
    pop = genres.sum(axis=0)
    pop_total = pop.sum()
    weighted = 0.0
    for s in np.unique(labels):
        rows = labels == s
        counts = genres[rows].sum(axis=0)
        total = counts.sum()
        if total == 0:
            continue
        ok = (counts >= 5) & (pop > 0)
        best = ((counts[ok] / total) / (pop[ok] / pop_total)).max(initial=0.0)
        weighted += best * rows.sum()
    return float(weighted / len(labels))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--clusters", type=int, required=True)
    ap.add_argument("--knn", type=int, default=15)
    ap.add_argument("--silhouette-sample", type=int, default=2000)
    a = ap.parse_args()
    d = pathlib.Path(a.dir)

    import igraph as ig
    import leidenalg
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    x = np.load(d / "vectors.npy").astype(np.float32)
    n = x.shape[0]
    edges = np.fromfile(d / "edges.u32", dtype="<u4").reshape(-1, 2)
    w = np.load(d / "weights.npy").reshape(-1).astype(np.float64)
    truth = np.loadtxt(d / "truth.txt", dtype=np.int64) if (d / "truth.txt").exists() else None
    genres = np.load(d / "genres.npy") if (d / "genres.npy").exists() else None
    g = ig.Graph(n=n, edges=edges.tolist())
    weights = w.tolist()

    def quality(labels, seed):
        labels = np.asarray(labels)
        k = len(np.unique(labels))
        sample = min(a.silhouette_sample, n)
        sil = silhouette_score(x, labels, metric="cosine", sample_size=sample, random_state=seed) if k > 1 else 0.0
        return {
            "segments": float(labels.max() + 1),
            "modularity": g.modularity(labels.tolist(), weights=weights, resolution=1.0),
            "silhouette": float(sil),
            "nmi_truth": None if truth is None else float(normalized_mutual_info_score(truth, labels)),
            "top_genre_lift": None if genres is None else top_genre_lift(genres, labels),
        }

    def report(system, method, runs, extra=None):
        keys = ["segments", "modularity", "silhouette", "nmi_truth", "top_genre_lift"]
        row = {"system": system, "method": method}
        for key in keys:
            vals = [q[key] for _, q, _ in runs]
            row[key] = None if vals[0] is None else float(np.mean(vals))
        row["seconds"] = float(np.mean([t for _, _, t in runs]))
        pairs = list(itertools.combinations([l for l, _, _ in runs], 2))
        row["stability_ari"] = float(np.mean([adjusted_rand_score(p, q) for p, q in pairs])) if pairs else None
        row["stability_nmi"] = float(np.mean([normalized_mutual_info_score(p, q) for p, q in pairs])) if pairs else None
        row["objective"] = extra
        print(json.dumps(row), flush=True)

    runs = []
    for seed in range(a.seeds):
        t = time.perf_counter()
        part = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights=weights,
                                        resolution_parameter=1.0, n_iterations=2, seed=seed)
        elapsed = time.perf_counter() - t
        labels = np.asarray(part.membership)
        runs.append((labels, quality(labels, seed), elapsed))
    report("leidenalg", "leiden", runs)

    # igraph's own C implementation of Leiden (modularity, same resolution and passes).
    import random
    runs = []
    for seed in range(a.seeds):
        random.seed(seed)
        t = time.perf_counter()
        part = g.community_leiden(objective_function="modularity", weights=weights, resolution=1.0,
                                  n_iterations=2)
        elapsed = time.perf_counter() - t
        labels = np.asarray(part.membership)
        runs.append((labels, quality(labels, seed), elapsed))
    report("igraph", "leiden (C)", runs)

    runs = []
    objectives = []
    for seed in range(a.seeds):
        t = time.perf_counter()
        km = KMeans(n_clusters=a.clusters, init="k-means++", n_init=1, algorithm="lloyd", random_state=seed).fit(x)
        elapsed = time.perf_counter() - t
        labels = km.labels_
        centres = np.zeros((a.clusters, x.shape[1]))
        np.add.at(centres, labels, x)
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        objectives.append(float(np.mean(np.sum(x * centres[labels], axis=1))))
        runs.append((labels, quality(labels, seed), elapsed))
    report("scikit-learn", f"kmeans (k={a.clusters})", runs, float(np.mean(objectives)))

    try:
        import hnswlib
    except ImportError:
        print("hnswlib not installed: no graph build comparison", file=sys.stderr)
        return
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=n, M=24, ef_construction=200, random_seed=1)
    index.add_items(x, num_threads=2)
    index.set_ef(max(64, a.knn + 1))
    index.knn_query(x, k=a.knn + 1, num_threads=2)
    print(json.dumps({"system": "hnswlib", "method": "graph build", "segments": 0, "modularity": 0,
                      "silhouette": 0, "seconds": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
