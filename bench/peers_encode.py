#!/usr/bin/env python3
"""Peer benchmark: encoder throughput of onnxruntime (Python) on a groupwise ONNX model.

Counterpart of the `groupwise` CLI encode benchmark; prints JSON lines with the
same schema so that bench/report.py can join them:

  {"bench":"encode","impl":"onnxruntime-python","model":"<file name>","batch":64,
   "threads":1,"rows_per_s":float,"ms_per_batch":float}

Usage:
  python3 bench/peers_encode.py --model models/ml100k-seq.onnx --inputs rows.json \
      [--batches 1,64,1024] [--threads 1] [--seconds 3]

The model kind is detected from its inputs:
  * item-sequence model: `item_ids` int64 [B,L] + `weights` float32 [B,L];
    --inputs is {"item_ids": [[...],...], "weights": [[...],...]} (already mapped
    to model ids and padded to a common length L).
  * features model: `features` float32 [B,F]; --inputs is {"features": [[...],...]}.
Both sides must encode the same rows: batch b takes rows 0..b-1 of the inputs
cyclically.

What is timed: only `session.run` (repeated until about --seconds have passed,
after a warm-up). The numpy input batches are prebuilt outside the timed loop.
Session: CPUExecutionProvider, intra_op_num_threads=--threads, inter_op=1,
graph optimisation ORT_ENABLE_ALL.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def load_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("peers_encode.py: onnxruntime is not installed (pip install onnxruntime)")
    return ort


def make_session(ort, model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def input_spec(session):
    """Return {input name: numpy dtype} after checking the model kind."""
    names = {i.name for i in session.get_inputs()}
    if names == {"item_ids", "weights"}:
        return {"item_ids": np.int64, "weights": np.float32}
    if names == {"features"}:
        return {"features": np.float32}
    sys.exit(f"peers_encode.py: unrecognised model inputs {sorted(names)}")


def build_batch(rows, spec, b):
    """Take b rows cyclically from the inputs JSON (not timed)."""
    feed = {}
    for name, dtype in spec.items():
        data = np.asarray(rows[name], dtype=dtype)
        idx = np.arange(b) % data.shape[0]
        feed[name] = np.ascontiguousarray(data[idx])
    return feed


def bench_one(session, feed, seconds):
    outputs = [o.name for o in session.get_outputs()]
    # Warm-up: a few runs or ~10% of the budget, whichever is longer.
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < 0.1 * seconds:
        session.run(outputs, feed)
        n += 1
    # Timed loop: session.run only.
    iters = 0
    t0 = time.perf_counter()
    while True:
        session.run(outputs, feed)
        iters += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and iters >= 3:
            return iters, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help="JSON file of input rows")
    ap.add_argument("--batches", default="1,64,1024")
    ap.add_argument("--threads", default="1", help="comma list, e.g. 1,2")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    ort = load_ort()
    with open(args.inputs) as f:
        rows = json.load(f)
    batches = [int(x) for x in args.batches.split(",")]
    for threads in (int(x) for x in args.threads.split(",")):
        session = make_session(ort, args.model, threads)
        spec = input_spec(session)
        missing = [k for k in spec if k not in rows]
        if missing:
            sys.exit(f"peers_encode.py: inputs JSON lacks {missing}")
        for b in batches:
            feed = build_batch(rows, spec, b)
            iters, elapsed = bench_one(session, feed, args.seconds)
            print(json.dumps({
                "bench": "encode", "impl": "onnxruntime-python",
                "model": os.path.basename(args.model), "batch": b, "threads": threads,
                "rows_per_s": b * iters / elapsed,
                "ms_per_batch": 1000.0 * elapsed / iters,
            }), flush=True)


if __name__ == "__main__":
    main()
