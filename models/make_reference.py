#!/usr/bin/env python3
"""Produce reference inputs/outputs of the groupwise reference encoders with onnxruntime.

The Rust side loads the same ``.onnx`` files and must reproduce these outputs
(to ~1e-5), so the files below pin down both the preprocessing (id mapping,
unknown ids, keep_last truncation, right padding) and the model arithmetic.

Usage (from the repository root, after ``models/train_encoder.py``)::

    python3 models/make_reference.py --name ml100k

Needs numpy and onnxruntime (CPUExecutionProvider).  Deterministic for a given
``--seed``.  Outputs, in ``<models-dir>/reference/``:

``<name>-seq.ref.json`` / ``<name>-bag.ref.json``::

    {
      "format": "groupwise-reference", "version": 1,
      "model": "ml100k-seq.onnx",          # file name, relative to models/
      "model_sha256": "<hex>",
      "input_kind": "item_sequence" | "features",
      "embedding_dim": 64, "padding_id": 0, "unknown_id": 1,
      "vocab_offset": 2, "max_len": 200, "truncation": "keep_last",
      "feature_dim": 1684,                 # bag file only
      "onnxruntime": "1.31.1", "seed": 42,
      "cases": [
        {
          "name": "real_users",
          "description": "...",
          "users": ["196", ...] | null,    # MovieLens user ids, null if synthetic
          "external_ids": [["242", ...], ...],
                # per row: raw external item ids, time-ordered, BEFORE mapping
                # and BEFORE keep_last truncation (so truncation can be tested)
          "weights": [[1.0, ...], ...],    # per row, same length as external_ids
          "lengths": [L0, L1, ...],        # row lengths after keep_last truncation
          "ids": [[i00, i01, ...], ...],   # int64 [B, Lmax]: mapped model indices
                # after truncation, right padded with padding_id (0)
          "weights_matrix": [[...], ...],  # float32 [B, Lmax]: truncated weights,
                # 0.0 at padding positions (exactly what was fed as `weights`)
          "features": [[[col, value], ...], ...],
                # bag file only: sparse rows of the float32 [B, feature_dim]
                # input; features[b, ids[b, j]] += weights_matrix[b, j] over the
                # non-padding positions (column = model index)
          "embeddings": [[e00, ..., e0,63], ...],
                # float32 [B, D] model output; each value is the exact float32
                # written as a (double) JSON number
          "max_abs_diff_vs_seq": 1.2e-7    # bag file only
        }, ...
      ]
    }

All float values are float32 numbers written exactly (``float(np.float32)``),
so parsing them as f64 and casting to f32 is lossless.

The inputs are synthetic (seeded draws from the vocabulary), so no MovieLens
history is committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnxruntime as ort


UNKNOWN_EXTERNAL = ["999999", "not-an-item", "0"]  # "0" is a real string id, not padding


def f32_list(a) -> list:
    """Exact float32 values as Python floats (JSON numbers)."""
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def f32_matrix(a) -> list:
    a = np.asarray(a, dtype=np.float32)
    return [f32_list(row) for row in a]


class Encoder:
    """Thin wrapper around an onnxruntime session plus its groupwise metadata."""

    def __init__(self, path: str):
        self.path = path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # fixed reduction order -> reproducible outputs
        self.sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.meta = dict(self.sess.get_modelmeta().custom_metadata_map)
        self.offset = int(self.meta["groupwise.vocab_offset"])
        self.unknown_id = int(self.meta["groupwise.unknown_id"])
        vocab = self.meta["groupwise.vocab"].split("\n")
        self.index = {it: i + self.offset for i, it in enumerate(vocab)}
        with open(path, "rb") as fh:
            self.sha256 = hashlib.sha256(fh.read()).hexdigest()

    def run(self, feeds: dict) -> np.ndarray:
        return self.sess.run([self.meta["groupwise.output"]], feeds)[0]


def prepare(rows: list[list[str]], weights: list[list[float]], seq: Encoder, max_len: int):
    """Map, truncate (keep_last) and right-pad a batch; returns ids, weights, lengths."""
    mapped, wts = [], []
    for items, w in zip(rows, weights):
        ids = [seq.index.get(it, seq.unknown_id) for it in items]
        w = np.asarray(w, dtype=np.float32)
        if len(ids) > max_len:
            ids, w = ids[-max_len:], w[-max_len:]
        mapped.append(ids)
        wts.append(w)
    lengths = [len(r) for r in mapped]
    L = max(1, max(lengths))
    ids = np.zeros((len(rows), L), dtype=np.int64)
    wm = np.zeros((len(rows), L), dtype=np.float32)
    for b, (r, w) in enumerate(zip(mapped, wts)):
        ids[b, : len(r)] = r
        wm[b, : len(r)] = w
    return ids, wm, lengths


def bag_features(ids: np.ndarray, wm: np.ndarray, feature_dim: int, padding_id: int) -> np.ndarray:
    feats = np.zeros((ids.shape[0], feature_dim), dtype=np.float32)
    for b in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[b, j] != padding_id:
                feats[b, ids[b, j]] += wm[b, j]
    return feats


def build_cases(vocab: list[str], rng: np.random.Generator, max_len: int) -> list[dict]:
    """Deterministic reference batches of *synthetic* histories.

    Rows are seeded random draws from the model's item vocabulary (ids only), so
    the committed fixtures contain no user's real history: MovieLens terms do
    not allow redistributing the data, and parity needs only valid inputs.
    """
    cases = []

    def draw(n):
        return [vocab[int(i)] for i in rng.integers(0, len(vocab), size=n)]

    def case(name, desc, rows, weights):
        cases.append({"name": name, "description": desc, "users": None,
                      "external_ids": [list(r) for r in rows],
                      "weights": [f32_list(w) for w in weights]})

    lens = [int(x) for x in rng.integers(5, 120, size=16)]
    rows = [draw(n) for n in lens]
    case("random_histories",
         "16 seeded synthetic histories of 5-120 vocabulary items, weights 1.0; "
         "rows have different lengths, right padded", rows, [np.ones(n) for n in lens])

    case("single_item", "one history of a single item", [draw(1)], [np.ones(1)])

    base = draw(20)
    mixed = base[:5] + [UNKNOWN_EXTERNAL[0]] + base[5:12] + [UNKNOWN_EXTERNAL[1]] + base[12:] + [UNKNOWN_EXTERNAL[2]]
    case("unknown_items",
         "row 0: a history with unknown external ids inserted (they map to unknown_id; "
         "note that the external id '0' is unknown, not padding); row 1: only unknown ids",
         [mixed, UNKNOWN_EXTERNAL[:2]], [np.ones(len(mixed)), np.ones(2)])

    lens = [int(x) for x in rng.integers(10, 80, size=4)]
    case("rating_weights", "4 histories, weights = rating / 5 with ratings drawn from 1..5",
         [draw(n) for n in lens],
         [rng.integers(1, 6, size=n).astype(np.float32) / np.float32(5.0) for n in lens])

    n = 2 * max_len + 37
    case("long_sequence", f"a history of {n} items -> keep the last {max_len}",
         [draw(n)], [np.ones(n)])

    sizes = [1, 3, 10, 50, max_len]
    case("ragged_batch", "5 histories of 1, 3, 10, 50 and max_len items; right padded with 0",
         [draw(k) for k in sizes], [np.ones(k) for k in sizes])

    case("empty_row",
         "row 0 has no items at all (all padding) -> zero vector; row 1 has 30 items",
         [[], draw(30)], [np.ones(0), np.ones(30)])
    return cases


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models-dir", default="models/")
    p.add_argument("--name", default="ml100k")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    seq = Encoder(os.path.join(args.models_dir, f"{args.name}-seq.onnx"))
    bag = Encoder(os.path.join(args.models_dir, f"{args.name}-bag.onnx"))
    assert seq.meta["groupwise.input_kind"] == "item_sequence"
    assert bag.meta["groupwise.input_kind"] == "features"
    assert seq.meta["groupwise.vocab"] == bag.meta["groupwise.vocab"]
    max_len = int(seq.meta["groupwise.max_len"])
    pad = int(seq.meta["groupwise.padding_id"])
    fdim = int(bag.meta["groupwise.feature_dim"])
    dim = int(seq.meta["groupwise.embedding_dim"])

    vocab = [v for v in seq.meta["groupwise.vocab"].split("\n") if v]
    cases = build_cases(vocab, np.random.default_rng(args.seed), max_len)

    seq_cases, bag_cases, worst = [], [], 0.0
    for c in cases:
        ids, wm, lengths = prepare(c["external_ids"], c["weights"], seq, max_len)
        out_seq = seq.run({seq.meta["groupwise.input.ids"]: ids,
                           seq.meta["groupwise.input.weights"]: wm})
        feats = bag_features(ids, wm, fdim, pad)
        out_bag = bag.run({bag.meta["groupwise.input.features"]: feats})
        diff = float(np.abs(out_seq - out_bag).max())
        worst = max(worst, diff)
        norms = np.linalg.norm(out_seq.astype(np.float64), axis=1)
        empty = np.array(lengths) == 0
        assert np.all(np.abs(norms[~empty] - 1.0) < 1e-5), (c["name"], norms)
        assert np.all(norms[empty] == 0.0), (c["name"], norms)
        common = dict(c, lengths=lengths, ids=ids.tolist(), weights_matrix=f32_matrix(wm))
        seq_cases.append(dict(common, embeddings=f32_matrix(out_seq)))
        sparse = [[[int(j), float(row[j])] for j in np.flatnonzero(row)] for row in feats]
        bag_cases.append(dict(common, features=sparse, embeddings=f32_matrix(out_bag),
                              max_abs_diff_vs_seq=diff))
        print(f"case {c['name']:<15} batch {ids.shape[0]:>2} x {ids.shape[1]:>3}  "
              f"|seq - bag| max {diff:.2e}")

    ref_dir = os.path.join(args.models_dir, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    header = {"format": "groupwise-reference", "version": 1,
              "embedding_dim": dim, "padding_id": pad, "unknown_id": seq.unknown_id,
              "vocab_offset": seq.offset, "max_len": max_len,
              "truncation": seq.meta["groupwise.truncation"]}
    for enc, kind, kc in ((seq, "seq", seq_cases), (bag, "bag", bag_cases)):
        doc = {**header, "model": os.path.basename(enc.path), "model_sha256": enc.sha256,
               "input_kind": enc.meta["groupwise.input_kind"]}
        if kind == "bag":
            doc["feature_dim"] = fdim
        doc.update({"onnxruntime": ort.__version__, "seed": args.seed, "cases": kc})
        path = os.path.join(ref_dir, f"{args.name}-{kind}.ref.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.write("\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")

    print(f"max |seq - bag| over all cases: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
