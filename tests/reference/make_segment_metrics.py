"""Reference values for the segment metrics, from scikit-learn and igraph.

Writes tests/reference/segment_metrics.json, read by tests/tests/segments.rs:
two random labelings (NMI, ARI), unit vectors with labels (cosine silhouette),
and a planted-partition graph with a partition (modularity at two resolutions,
and leidenalg's modularity for comparison).

    python -m venv /tmp/v && /tmp/v/bin/pip install numpy scikit-learn==1.5.2 \
        igraph==0.11.8 leidenalg==0.10.2
    /tmp/v/bin/python tests/reference/make_segment_metrics.py
"""
import json
import pathlib

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
import igraph as ig
import leidenalg

rng = np.random.default_rng(7)
a = rng.integers(0, 6, 500)
b = np.where(rng.random(500) < 0.6, a, rng.integers(0, 9, 500))

x = rng.normal(size=(300, 8)) + np.repeat(rng.normal(size=(4, 8)) * 1.5, 75, axis=0)
x /= np.linalg.norm(x, axis=1, keepdims=True)
x = x.astype(np.float32)
sil_labels = np.repeat(np.arange(4), 75)
sil_labels[::7] = rng.integers(0, 4, len(sil_labels[::7]))

blocks, per = 5, 40
n = blocks * per
truth = np.repeat(np.arange(blocks), per)
edges = []
for i in range(n):
    for j in range(i + 1, n):
        p = 0.3 if truth[i] == truth[j] else 0.02
        if rng.random() < p:
            edges.append((i, j, float(np.round(rng.uniform(0.5, 1.0), 3))))
g = ig.Graph(n=n, edges=[(i, j) for i, j, _ in edges])
w = [e[2] for e in edges]
part = truth.copy()
part[:10] = 1  # a slightly wrong partition
la = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights=w,
                              resolution_parameter=1.0, seed=1, n_iterations=-1)

out = {
    "a": a.tolist(),
    "b": b.tolist(),
    "nmi": normalized_mutual_info_score(a, b),
    "ari": adjusted_rand_score(a, b),
    "dim": 8,
    "vectors": [float(v) for v in x.ravel()],
    "silhouette_labels": sil_labels.tolist(),
    "silhouette": float(silhouette_score(x.astype(np.float64), sil_labels, metric="cosine")),
    "graph_n": n,
    "graph_edges": edges,
    "graph_truth": truth.tolist(),
    "graph_partition": part.tolist(),
    "modularity_1": g.modularity(part.tolist(), weights=w, resolution=1.0),
    "modularity_2": g.modularity(part.tolist(), weights=w, resolution=2.0),
    "leidenalg_modularity": g.modularity(la.membership, weights=w, resolution=1.0),
    "leidenalg_communities": len(set(la.membership)),
}
path = pathlib.Path(__file__).with_name("segment_metrics.json")
path.write_text(json.dumps(out))
print(path, {k: out[k] for k in ("nmi", "ari", "silhouette", "modularity_1", "leidenalg_modularity")})
