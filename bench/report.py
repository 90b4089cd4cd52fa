#!/usr/bin/env python3
"""Join benchmark JSON lines (groupwise CLI + bench/peers_*.py) into Markdown tables.

Usage:
  python3 bench/report.py FILE.jsonl [FILE2.jsonl ...] [--target 0.95]

Lines that are not JSON objects with "bench" in {"encode","index"} are ignored.
If a key is measured twice, the last line read wins, so pass files of one run.

Tables:
  (a) encode: rows/s of groupwise and onnxruntime-python per (model, batch,
      threads) and the ratio groupwise / python (>1 = groupwise faster).
  (b) index, per dataset: build time and the operating point of every impl
      (smallest ef with recall@10 >= --target; exact impls use their ef-0 row),
      ratios groupwise vs each peer (qps at each one's own operating point,
      build time), and a full table of every (impl, ef, recall, qps).
Missing impls or operating points print "n/a".
"""
import argparse
import json
import os
import sys

ENCODE_IMPLS = ["groupwise", "onnxruntime-python"]
INDEX_IMPLS = ["groupwise-usearch-f16", "hnswlib", "faiss-hnsw", "groupwise-exact", "faiss-flat"]
EXACT_IMPLS = {"groupwise-exact", "faiss-flat"}
# (ours, peer) pairs for the ratio table.
# groupwise rows are named groupwise-<backend>-<graph precision>; each is
# compared with both HNSW peers.
PEERS = ["hnswlib", "faiss-hnsw"]
NA = "n/a"


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    print(f"report.py: skipping bad line in {path}: {line[:80]}", file=sys.stderr)
                    continue
                if row.get("bench") in ("encode", "index"):
                    rows.append(row)
    return rows


def num(x, digits=0):
    return NA if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return NA if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def encode_report(rows):
    by = {}
    for r in rows:
        by[(os.path.basename(r["model"]), r["batch"], r["threads"], r["impl"])] = r["rows_per_s"]
    keys = sorted({k[:3] for k in by})
    if not keys:
        return "_no encode rows_"
    body = []
    for model, batch, threads in keys:
        g = by.get((model, batch, threads, "groupwise"))
        p = by.get((model, batch, threads, "onnxruntime-python"))
        body.append([model, batch, threads, num(g), num(p), ratio(g, p)])
    return table(["model", "batch", "threads", "groupwise rows/s",
                  "onnxruntime-python rows/s", "groupwise / python"], body)


def operating_point(impl_rows, impl, target):
    """Smallest-ef row reaching the recall target (exact impls: the ef-0 row)."""
    ok = [r for r in impl_rows if (r["ef"] == 0 if impl in EXACT_IMPLS
                                   else r["recall_at_10"] >= target)]
    return min(ok, key=lambda r: r["ef"]) if ok else None


def index_report(rows, target):
    latest = {}
    for r in rows:
        latest[(r["dataset"], r["impl"], r["ef"])] = r
    datasets = sorted({k[0] for k in latest})
    if not datasets:
        return "_no index rows_"
    out = []
    for ds in datasets:
        ds_rows = [r for k, r in latest.items() if k[0] == ds]
        impls = INDEX_IMPLS + sorted({r["impl"] for r in ds_rows} - set(INDEX_IMPLS))
        per = {i: sorted((r for r in ds_rows if r["impl"] == i), key=lambda r: r["ef"])
               for i in impls}
        ops = {i: operating_point(per[i], i, target) for i in impls}
        build = {i: (per[i][-1]["build_s"] if per[i] else None) for i in impls}
        any_row = ds_rows[0]
        out.append(f"### {ds} (n={any_row['n']:,}, dim={any_row['dim']}, "
                   f"operating point: smallest ef with recall@10 >= {target})\n")

        body = []
        for i in impls:
            rs, op = per[i], ops[i]
            if not rs:
                body.append([i] + [NA] * 7)
                continue
            best = max(r["recall_at_10"] for r in rs)
            body.append([i, rs[-1]["m"], rs[-1]["ef_construction"], rs[-1]["build_threads"],
                         f"{build[i]:.3f}", op["ef"] if op else NA,
                         f"{op['recall_at_10']:.4f}" if op else f"{NA} (max {best:.4f})",
                         num(op["qps"]) if op else NA])
        out.append(table(["impl", "m", "ef_c", "build threads", "build s", "ef",
                          "recall@10", "qps (1 thread)"], body))

        qps = {i: (ops[i]["qps"] if ops[i] else None) for i in impls}
        rss = {i: (per[i][-1].get("rss_bytes_per_user") if per[i] else None) for i in impls}
        ours_all = [i for i in impls if i.startswith("groupwise-") and i not in EXACT_IMPLS]
        pairs = [(o, p) for o in ours_all for p in PEERS] + [("groupwise-exact", "faiss-flat")]
        body = [[f"{ours} vs {peer}", ratio(qps.get(ours), qps.get(peer)),
                 ratio(build.get(ours), build.get(peer)), ratio(rss.get(ours), rss.get(peer))]
                for ours, peer in pairs]
        out.append("\n" + table(["comparison", "qps ratio (>1 = groupwise faster)",
                                 "build time ratio (<1 = groupwise faster)",
                                 "resident bytes per user ratio"], body))

        body = [[i, r["ef"], f"{r['recall_at_10']:.4f}", num(r["qps"])]
                for i in impls for r in per[i]]
        out.append("\n" + table(["impl", "ef", "recall@10", "qps (1 thread)"], body) + "\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 target")
    a = ap.parse_args()
    rows = load(a.files)
    print("## Encode throughput\n")
    print(encode_report([r for r in rows if r["bench"] == "encode"]))
    print("\n## Index build / search\n")
    print(index_report([r for r in rows if r["bench"] == "index"], a.target))


if __name__ == "__main__":
    main()
