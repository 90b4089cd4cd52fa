#!/usr/bin/env python3
"""Train and export the groupwise reference user encoder (PPMI-SVD item embeddings).

The reference encoder maps a user's interaction history to a unit-norm embedding:

    user = L2-normalise( sum_j w_j * E[item_j] )

where ``E`` is an item-embedding table learned without any deep-learning
framework (numpy only):

1. Co-occurrence.  Every user's history is a set of items that co-occur.
   ``--cooc user`` (default) counts each ordered pair of distinct items in a
   user's history once (``--user-norm`` can down-weight long histories);
   ``--cooc window`` counts only pairs that are at most ``--window``
   positions apart in the time-ordered sequence.  Whole-history ("user")
   co-occurrence beat every window size on MovieLens 100K, because many
   users rated dozens of films in one sitting, so the within-day order
   carries little signal.
2. PPMI.  ``PMI(i, j) = log( P(i, j) / (P(i) * P_alpha(j)) ) - log(shift)``
   where ``P_alpha`` is the context distribution smoothed with exponent
   ``--alpha`` (default 0.5; word2vec uses 0.75); negative values are
   clipped to 0.
3. Truncated SVD.  ``PPMI ~= U S V^T``; ``E_items = U_d * S_d ** eig_power``
   (default 0, i.e. plain ``U_d``; 0.5 gives the usual ``U sqrt(S)``), then
   every row is L2-normalised.  The defaults (user co-occurrence, no length
   normalisation, alpha 0.5, shift 1, eig_power 0) gave the best held-out
   numbers in a small sweep on MovieLens 100K (see MODEL_CARD.md).  Vocabularies below 5000 items use the exact
   ``numpy.linalg.svd`` on the dense matrix; larger ones use a seeded
   randomized SVD (Halko et al.) on a sparse (COO) PPMI matrix.  Singular
   vector signs are fixed (largest-magnitude entry of each column positive)
   so that results do not depend on the LAPACK build.

Vocabulary / model index layout (the contract read by the Rust loader):

* index 0 = padding (zero row), index 1 = unknown item (row = L2-normalised
  mean of all item rows), known items from index 2 (``vocab_offset``).
* Items seen fewer than ``--min-count`` times are left out (they map to the
  unknown id at inference time).
* Known items are sorted numerically when every id parses as an integer,
  lexicographically (as strings) otherwise.  Ids are always kept as strings.

Input file: a delimited text file with a header row.  Header names may carry a
type suffix (``user_id:token``); a column matches either its full name or the
part before ':'.  Histories are ordered by ``--time-col`` (ascending, ties
broken by file order) or by file order when no time column is given.  A
malformed row (wrong number of fields, unparsable weight/time) aborts with an
error naming the file and line number.

Evaluation protocol (printed and written to ``<out-dir>/<name>-metrics.json``):

* Each user's time-ordered history is split: the first ``1 - holdout`` share
  goes to train, the rest to test (``n_test = max(1, round(holdout * n))``);
  users with fewer than 5 interactions stay entirely in train.
* ``E`` is trained on the train part only.  Each user is embedded from their
  train items (keep_last ``--max-len``); all vocabulary items not in the
  user's train part are ranked by cosine to the user embedding.
* Targets are the distinct test items not already in the user's train part;
  targets that are not in the train vocabulary can never be ranked and count
  as misses.  HR@10, Recall@20 (hits / #targets) and NDCG@10 are averaged over
  users with at least one target, for the model, a popularity baseline (train
  counts) and a seeded random ranking.
* With ``--items``: each user's dominant category (most frequent over their
  train items, ties broken alphabetically); the share of each user's 10
  nearest users (cosine between train-part user embeddings) with the same
  dominant category, versus 10 random other users.

Finally ``E`` is re-trained on ALL interactions and exported as two ONNX
models (opset 17, IR version 8):

* ``<name>-seq.onnx``: ``item_ids`` int64 [batch, seq], ``weights`` float32
  [batch, seq] -> ``embedding`` float32 [batch, D].
* ``<name>-bag.onnx``: ``features`` float32 [batch, F] (F = vocab size incl.
  the two reserved rows; column i = model index i) -> ``embedding``.

Everything is deterministic for a given ``--seed``: running the script twice
produces byte-identical ``.onnx`` files.

``--out-dir`` has no default: the files go where the caller says (a default
of ``models/`` once wrote into the checkout whenever the script was run from
the repository root).  Results go to standard output; progress goes to
standard error: a line when each stage starts and ends (with its time), and
while a stage runs, at most one line every ``--progress-every`` seconds with
how far it is and the estimated time left.  The method has no epochs: the
stages are reading, co-occurrence counting, PPMI, SVD (whose "loss" is
reported as the share of the PPMI matrix's squared norm the rank-``dim``
approximation keeps), embedding and ranking users, and export.

Example (MovieLens 100K, the committed reference)::

    python3 models/train_encoder.py \\
        --interactions .groupwise/data/ml-100k/ml-100k.inter \\
        --weight-col rating --time-col timestamp \\
        --items .groupwise/data/ml-100k/ml-100k.item --name ml100k --out-dir models
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

PRODUCER = "models/train_encoder.py"
PAD_ID = 0
UNK_ID = 1
VOCAB_OFFSET = 2
EPS = 1e-12
DENSE_LIMIT = 5000  # vocabularies below this size use the exact dense SVD
MIN_SPLIT_LEN = 5  # users with fewer interactions stay whole in train
OPSET = 17
IR_VERSION = 8


class DataError(Exception):
    """A problem with an input file; the message names the file and line."""


# --------------------------------------------------------------------------
# Progress (standard error)
# --------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Progress of one stage on standard error.

    A line when the stage starts, at most one line every ``Progress.every``
    seconds while it runs (done/total, elapsed time, estimated time left),
    and a line when it ends.  ``Progress.every`` < 0 silences everything.
    """

    every = 5.0

    def __init__(self, stage: str, total: int | None = None, unit: str = ""):
        self.stage, self.total, self.unit = stage, total, unit
        self.start = self.last = time.monotonic()
        size = f" ({total} {unit})" if total is not None and unit else ""
        self._say(f"{stage}{size} ...")

    @staticmethod
    def _say(message: str) -> None:
        if Progress.every >= 0:
            print(f"[train_encoder] {message}", file=sys.stderr, flush=True)

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if Progress.every < 0 or now - self.last < Progress.every:
            return
        self.last = now
        elapsed = now - self.start
        line = f"{self.stage}: {done}"
        if self.total:
            line += f"/{self.total} {self.unit} ({100.0 * done / self.total:.0f} %)"
        elif self.unit:
            line += f" {self.unit}"
        line += f", {_duration(elapsed)} elapsed"
        if self.total and done > 0:
            line += f", ETA {_duration(elapsed * (self.total - done) / done)}"
        if note:
            line += f"; {note}"
        self._say(line)

    def done(self, note: str = "") -> None:
        line = f"{self.stage}: done in {_duration(time.monotonic() - self.start)}"
        self._say(line + (f"; {note}" if note else ""))


# --------------------------------------------------------------------------
# Input parsing
# --------------------------------------------------------------------------


def default_sep(path: str) -> str:
    """Tab for .tsv/.tab and RecBole atomic files (.inter/.item/.user), comma otherwise."""
    ext = os.path.splitext(path)[1].lower()
    return "\t" if ext in (".tsv", ".tab", ".inter", ".item", ".user") else ","


def parse_sep(sep: str | None, path: str) -> str:
    """Resolve a --sep value; accepts a literal character, '\\t' or 'tab'."""
    if sep is None:
        return default_sep(path)
    if sep in ("\\t", "tab", "TAB"):
        return "\t"
    if len(sep) != 1:
        raise DataError(f"--sep must be a single character, got {sep!r}")
    return sep


def iter_rows(path: str, sep: str):
    """Yield (line_number, fields) for every non-empty line, header included.

    Tab-separated files are split verbatim (no quoting, so titles containing
    quote characters survive); other separators use the csv module so that
    quoted fields containing the separator work.
    """
    try:
        fh = open(path, "r", encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        if sep == "\t":
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line.split("\t")
        else:
            reader = csv.reader(fh, delimiter=sep)
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    yield reader.line_num, fields


def resolve_column(header: list[str], name: str, path: str) -> int:
    """Index of column `name`, matching the full header name or the part before ':'."""
    for i, col in enumerate(header):
        if col.strip() == name:
            return i
    for i, col in enumerate(header):
        if col.strip().split(":", 1)[0] == name:
            return i
    raise DataError(
        f"{path}:1: column {name!r} not found in header {[c.strip() for c in header]}"
    )


def parse_float(value: str, what: str, path: str, lineno: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DataError(f"{path}:{lineno}: cannot parse {what} {value!r} as a number") from None
    if not math.isfinite(x):
        raise DataError(f"{path}:{lineno}: {what} {value!r} is not finite")
    return x


@dataclass
class Histories:
    """Time-ordered per-user histories, users sorted like item ids."""

    users: list[str]
    items: list[list[str]]  # per user, external item ids in time order
    weights: list[np.ndarray]  # per user, float64 weights (1.0 if unused)
    n_interactions: int


def load_interactions(path, sep, user_col, item_col, weight_col=None, time_col=None) -> Histories:
    rows = iter_rows(path, sep)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: file is empty") from None
    n_fields = len(header)
    ui = resolve_column(header, user_col, path)
    ii = resolve_column(header, item_col, path)
    wi = resolve_column(header, weight_col, path) if weight_col else None
    ti = resolve_column(header, time_col, path) if time_col else None

    per_user: dict[str, list[tuple[float, int, str, float]]] = {}
    n = 0
    progress = Progress(f"reading {os.path.basename(path)}", unit="rows")
    for lineno, fields in rows:
        progress.update(n)
        if len(fields) != n_fields:
            raise DataError(
                f"{path}:{lineno}: expected {n_fields} fields, got {len(fields)}"
            )
        user = fields[ui].strip()
        item = fields[ii].strip()
        if not user or not item:
            raise DataError(f"{path}:{lineno}: empty user or item id")
        w = parse_float(fields[wi], "weight", path, lineno) if wi is not None else 1.0
        t = parse_float(fields[ti], "time", path, lineno) if ti is not None else 0.0
        per_user.setdefault(user, []).append((t, n, item, w))
        n += 1
    if n == 0:
        raise DataError(f"{path}: no interactions after the header")
    progress.done(f"{n} rows, {len(per_user)} users")

    users = sort_ids(per_user.keys())
    items, weights = [], []
    for u in users:
        events = sorted(per_user[u], key=lambda e: (e[0], e[1]))  # time, then file order
        items.append([e[2] for e in events])
        weights.append(np.array([e[3] for e in events], dtype=np.float64))
    return Histories(users, items, weights, n)


def load_item_categories(path, sep, item_col, cat_col, cat_sep) -> dict[str, list[str]]:
    rows = iter_rows(path, sep)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: file is empty") from None
    ii = resolve_column(header, item_col, path)
    ci = resolve_column(header, cat_col, path)
    cats: dict[str, list[str]] = {}
    for lineno, fields in rows:
        if len(fields) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} fields, got {len(fields)}")
        parts = fields[ci].split(cat_sep) if cat_sep else [fields[ci]]
        cats[fields[ii].strip()] = [p.strip() for p in parts if p.strip()]
    return cats


def sort_ids(ids) -> list[str]:
    """Numeric order if every id parses as an integer, else lexicographic."""
    ids = list(ids)
    try:
        keyed = [(int(x), x) for x in ids]
    except ValueError:
        return sorted(ids)
    return [x for _, x in sorted(keyed)]


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


@dataclass
class Config:
    dim: int = 64
    cooc: str = "user"  # "user" | "window"
    window: int = 10
    user_norm: str = "none"  # "none" | "log" | "inv"  (user mode pair weight)
    alpha: float = 0.5
    shift: float = 1.0
    eig_power: float = 0.0
    svd: str = "auto"  # "auto" | "exact" | "randomized"
    seed: int = 42


def build_vocab(histories: list[list[str]], min_count: int) -> list[str]:
    counts: dict[str, int] = {}
    for seq in histories:
        for it in seq:
            counts[it] = counts.get(it, 0) + 1
    return sort_ids(k for k, c in counts.items() if c >= min_count)


def map_ids(seq: list[str], index: dict[str, int]) -> np.ndarray:
    """External ids -> model indices (unknown items -> UNK_ID)."""
    return np.array([index.get(it, UNK_ID) for it in seq], dtype=np.int64)


class CoocAccumulator:
    """Accumulates weighted (row, col) pair counts, densely or as sorted COO."""

    FLUSH = 4_000_000

    def __init__(self, n: int, dense: bool):
        self.n = n
        self.dense = dense
        self.buf_k: list[np.ndarray] = []
        self.buf_v: list[np.ndarray] = []
        self.buffered = 0
        self.mat = np.zeros((n, n), dtype=np.float64) if dense else None
        self.keys = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros(0, dtype=np.float64)

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        if rows.size == 0:
            return
        self.buf_k.append(rows.astype(np.int64) * self.n + cols.astype(np.int64))
        self.buf_v.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape))
        self.buffered += rows.size
        if self.buffered >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self.buf_k:
            return
        k = np.concatenate(self.buf_k)
        v = np.concatenate(self.buf_v)
        self.buf_k, self.buf_v, self.buffered = [], [], 0
        if self.dense:
            self.mat += np.bincount(k, weights=v, minlength=self.n * self.n).reshape(self.n, self.n)
        else:
            k = np.concatenate([self.keys, k])
            v = np.concatenate([self.vals, v])
            self.keys, inv = np.unique(k, return_inverse=True)
            self.vals = np.bincount(inv, weights=v)

    def result(self):
        self.flush()
        if self.dense:
            return self.mat
        return self.keys // self.n, self.keys % self.n, self.vals


def accumulate_cooccurrence(seqs: list[np.ndarray], n: int, cfg: Config, dense: bool):
    """Item-item co-occurrence over users' histories (item indices 0..n-1, -1 = skip)."""
    acc = CoocAccumulator(n, dense)
    progress = Progress(f"co-occurrence ({cfg.cooc})", len(seqs), "users")
    for done, seq in enumerate(seqs):
        progress.update(done)
        seq = seq[seq >= 0]
        if cfg.cooc == "user":
            u = np.unique(seq)
            m = u.size
            if m < 2:
                continue
            if cfg.user_norm == "inv":
                w = 1.0 / (m - 1)
            elif cfg.user_norm == "log":
                w = 1.0 / math.log2(m + 1)
            else:
                w = 1.0
            r = np.repeat(u, m)
            c = np.tile(u, m)
            keep = r != c
            acc.add(r[keep], c[keep], w)
        elif cfg.cooc == "window":
            for off in range(1, min(cfg.window, seq.size - 1) + 1):
                a, b = seq[:-off], seq[off:]
                keep = a != b
                a, b = a[keep], b[keep]
                acc.add(np.concatenate([a, b]), np.concatenate([b, a]), 1.0)
        else:
            raise ValueError(f"unknown co-occurrence mode {cfg.cooc!r}")
    result = acc.result()
    progress.done()
    return result


def ppmi_dense(C: np.ndarray, alpha: float, shift: float) -> np.ndarray:
    row = C.sum(axis=1)
    ctx = row ** alpha
    p_ctx = ctx / max(ctx.sum(), EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(C) - np.log(row)[:, None] - np.log(p_ctx)[None, :] - math.log(shift)
    pmi[~(C > 0)] = 0.0
    return np.maximum(pmi, 0.0)


def ppmi_sparse(rows, cols, vals, n: int, alpha: float, shift: float):
    row = np.bincount(rows, weights=vals, minlength=n)
    ctx = row ** alpha
    p_ctx = ctx / max(ctx.sum(), EPS)
    pmi = np.log(vals) - np.log(row[rows]) - np.log(p_ctx[cols]) - math.log(shift)
    keep = pmi > 0
    return rows[keep], cols[keep], pmi[keep]


def _coo_matmul(rows, cols, vals, n_out, X, transpose=False):
    """(M @ X) or (M^T @ X) for a COO matrix M, in chunks to bound memory."""
    out = np.zeros((n_out, X.shape[1]), dtype=np.float64)
    src, dst = (rows, cols) if transpose else (cols, rows)
    step = 1_000_000
    for s in range(0, vals.size, step):
        np.add.at(out, dst[s:s + step], vals[s:s + step, None] * X[src[s:s + step]])
    return out


def randomized_svd_coo(rows, cols, vals, n: int, k: int, seed: int, oversample=10, n_iter=5):
    """Seeded randomized SVD (Halko, Martinsson & Tropp 2011) of an n x n COO matrix."""
    rng = np.random.default_rng(seed)
    p = min(n, k + oversample)
    progress = Progress("randomized SVD", n_iter + 2, "passes over the matrix")
    Q = rng.standard_normal((n, p))
    Q, _ = np.linalg.qr(_coo_matmul(rows, cols, vals, n, Q))
    for it in range(n_iter):
        progress.update(it + 1)
        Z, _ = np.linalg.qr(_coo_matmul(rows, cols, vals, n, Q, transpose=True))
        Q, _ = np.linalg.qr(_coo_matmul(rows, cols, vals, n, Z))
    progress.update(n_iter + 1)
    B = _coo_matmul(rows, cols, vals, n, Q, transpose=True).T  # Q^T M, shape p x n
    Ub, S, _ = np.linalg.svd(B, full_matrices=False)
    progress.done()
    return (Q @ Ub)[:, :k], S[:k]


def fix_signs(U: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive."""
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[idx, np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    return U * signs


def l2_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, EPS)


def exact_svd_estimate(n: int, probe: int = 400) -> str:
    """A note such as ``", roughly 3 min (...)"`` on how long the exact SVD of
    an n x n matrix (one LAPACK call, which reports no progress) will take,
    to within a few times on a busy machine:
    the best of two timed SVDs of a random probe x probe matrix (after a
    warm-up), scaled by (n / probe)^3.  Empty for small matrices."""
    if n < 2 * probe or Progress.every < 0:
        return ""
    rng = np.random.default_rng(0)
    np.linalg.svd(rng.standard_normal((64, 64)))  # warm-up: library and threads
    m = rng.standard_normal((probe, probe))
    best = math.inf
    for _ in range(2):
        start = time.monotonic()
        np.linalg.svd(m)
        best = min(best, time.monotonic() - start)
    guess = best * (n / probe) ** 3
    return f", roughly {_duration(guess)} (one LAPACK call, no progress until it ends)"


def train_embeddings(seqs: list[np.ndarray], n: int, cfg: Config) -> np.ndarray:
    """Return the full table E [n + 2, dim] (rows 0 = padding, 1 = unknown).

    `seqs` hold item indices 0..n-1 (i.e. model index - VOCAB_OFFSET; -1 = not in vocab).
    """
    method = cfg.svd
    if method == "auto":
        method = "exact" if n < DENSE_LIMIT else "randomized"
    k = min(cfg.dim, n)
    if method == "exact":
        C = accumulate_cooccurrence(seqs, n, cfg, dense=True)
        M = ppmi_dense(C, cfg.alpha, cfg.shift)
        progress = Progress(f"exact SVD of the {n} x {n} PPMI matrix{exact_svd_estimate(n)}")
        U, S, _ = np.linalg.svd(M)
        norm2 = float((S ** 2).sum())
        U, S = U[:, :k], S[:k]
    elif method == "randomized":
        r, c, v = accumulate_cooccurrence(seqs, n, cfg, dense=False)
        r, c, v = ppmi_sparse(r, c, v, n, cfg.alpha, cfg.shift)
        norm2 = float((v ** 2).sum())
        progress = Progress(f"SVD of the {n} x {n} PPMI matrix ({v.size} non-zeros)")
        U, S = randomized_svd_coo(r, c, v, n, k, cfg.seed)
    else:
        raise ValueError(f"unknown svd method {cfg.svd!r}")
    kept = float((S ** 2).sum()) / norm2 if norm2 > 0 else 1.0
    progress.done(
        f"the rank-{k} approximation keeps {100 * kept:.1f} % of the PPMI matrix's squared norm "
        f"(reconstruction loss {100 * (1 - kept):.1f} %)"
    )
    U = fix_signs(U)
    items = l2_rows(U * (S ** cfg.eig_power)[None, :])
    if k < cfg.dim:  # tiny vocabularies: pad with zero columns
        items = np.hstack([items, np.zeros((n, cfg.dim - k))])
    E = np.zeros((n + VOCAB_OFFSET, cfg.dim), dtype=np.float64)
    E[VOCAB_OFFSET:] = items
    E[UNK_ID] = l2_rows(items.mean(axis=0, keepdims=True))[0]
    return E.astype(np.float32)


def keep_last(seq: np.ndarray, weights: np.ndarray, max_len: int):
    if seq.size > max_len:
        return seq[-max_len:], weights[-max_len:]
    return seq, weights


def embed_users(E: np.ndarray, seqs: list[np.ndarray], weights: list[np.ndarray], max_len: int) -> np.ndarray:
    """Reference (numpy) implementation of the seq model: model indices -> unit vectors."""
    out = np.zeros((len(seqs), E.shape[1]), dtype=np.float64)
    E64 = E.astype(np.float64)
    progress = Progress("embedding users", len(seqs), "users")
    for u, (s, w) in enumerate(zip(seqs, weights)):
        progress.update(u)
        s, w = keep_last(s, w, max_len)
        mask = (s != PAD_ID).astype(np.float64) * w
        out[u] = mask @ E64[s]
    progress.done()
    return l2_rows(out)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def split_histories(h: Histories, holdout: float):
    """Per-user time split: first (1 - holdout) share -> train, rest -> test."""
    train_items, train_w, test_items = [], [], []
    for items, w in zip(h.items, h.weights):
        n = len(items)
        if n < MIN_SPLIT_LEN or holdout <= 0:
            n_test = 0
        else:
            n_test = min(n - 1, max(1, int(round(holdout * n))))
        cut = n - n_test
        train_items.append(items[:cut])
        train_w.append(w[:cut])
        test_items.append(items[cut:])
    return train_items, train_w, test_items


def rank_metrics(scores: np.ndarray, excluded: list[np.ndarray], targets: list[set], index_to_id: list[str], n_targets: list[int],
                 name: str = "model"):
    """HR@10, Recall@20, NDCG@10 for a [users, n_items] score matrix (item columns)."""
    hr, rec, ndcg = [], [], []
    progress = Progress(f"ranking items for every user ({name})", scores.shape[0], "users")
    for u in range(scores.shape[0]):
        progress.update(u)
        if n_targets[u] == 0:
            continue
        s = scores[u].copy()
        s[excluded[u]] = -np.inf
        top = np.argsort(-s, kind="stable")[:20]
        hits = np.array([index_to_id[i] in targets[u] for i in top], dtype=bool)
        hr.append(float(hits[:10].any()))
        rec.append(hits.sum() / n_targets[u])
        gains = hits[:10] / np.log2(np.arange(2, 12))
        idcg = (1.0 / np.log2(np.arange(2, 2 + min(n_targets[u], 10)))).sum()
        ndcg.append(gains.sum() / idcg)
    progress.done()
    return {"hr@10": float(np.mean(hr)), "recall@20": float(np.mean(rec)), "ndcg@10": float(np.mean(ndcg)), "users": len(hr)}


def dominant_categories(train_items: list[list[str]], cats: dict[str, list[str]]) -> list[str | None]:
    dom = []
    for items in train_items:
        counts: dict[str, int] = {}
        for it in items:
            for c in cats.get(it, ()):
                counts[c] = counts.get(c, 0) + 1
        dom.append(min(counts, key=lambda c: (-counts[c], c)) if counts else None)
    return dom


def category_agreement(user_emb: np.ndarray, dom: list, k: int, seed: int) -> dict:
    """Share of each user's k nearest (cosine) / k random users with the same dominant category."""
    valid = np.array([d is not None for d in dom])
    idx = np.flatnonzero(valid)
    U = user_emb[idx]
    labels = np.array([dom[i] for i in idx])
    sims = U @ U.T
    np.fill_diagonal(sims, -np.inf)
    rng = np.random.default_rng(seed + 1)
    nn_share, rnd_share = [], []
    progress = Progress("category agreement of nearest users", len(idx), "users")
    for a in range(len(idx)):
        progress.update(a)
        nn = np.argsort(-sims[a], kind="stable")[:k]
        nn_share.append(float(np.mean(labels[nn] == labels[a])))
        others = np.delete(np.arange(len(idx)), a)
        rnd = rng.choice(others, size=min(k, others.size), replace=False)
        rnd_share.append(float(np.mean(labels[rnd] == labels[a])))
    progress.done()
    values, counts = np.unique(labels, return_counts=True)
    return {
        "k": k,
        "users": int(len(idx)),
        "nearest_users_same_category": float(np.mean(nn_share)),
        "random_users_same_category": float(np.mean(rnd_share)),
        "categories": {str(v): int(c) for v, c in zip(values, counts)},
    }


def evaluate(h: Histories, cfg: Config, args, cats=None) -> dict:
    train_items, train_w, test_items = split_histories(h, args.holdout)
    vocab = build_vocab(train_items, args.min_count)
    index = {it: i + VOCAB_OFFSET for i, it in enumerate(vocab)}
    seqs = [map_ids(s, index) for s in train_items]
    E = train_embeddings([s - VOCAB_OFFSET for s in seqs], len(vocab), cfg)
    weights = train_w if args.eval_weights == "column" else [np.ones(len(s)) for s in seqs]
    U = embed_users(E, seqs, weights, args.max_len)

    excluded, targets, n_targets = [], [], []
    for tr, te, s in zip(train_items, test_items, seqs):
        seen = set(tr)
        t = set(te) - seen
        targets.append(t)
        n_targets.append(len(t))
        excluded.append(np.unique(s[s >= VOCAB_OFFSET]) - VOCAB_OFFSET)

    item_E = E[VOCAB_OFFSET:].astype(np.float64)
    model_scores = U @ item_E.T
    counts = np.zeros(len(vocab))
    for s in seqs:
        np.add.at(counts, s[s >= VOCAB_OFFSET] - VOCAB_OFFSET, 1.0)
    pop_scores = np.broadcast_to(counts, model_scores.shape)
    rand_scores = np.random.default_rng(cfg.seed).random(model_scores.shape)

    res = {
        "protocol": {
            "split": "per-user time-ordered; first (1-holdout) -> train, rest -> test",
            "holdout": args.holdout,
            "min_interactions_to_split": MIN_SPLIT_LEN,
            "targets": "distinct test items not in the user's train part; out-of-vocabulary targets count as misses",
            "candidates": "all train-vocabulary items not in the user's train part",
            "user_weights": args.eval_weights,
            "train_interactions": int(sum(len(s) for s in train_items)),
            "test_interactions": int(sum(len(s) for s in test_items)),
            "train_vocab": len(vocab),
        },
        "model": rank_metrics(model_scores, excluded, targets, vocab, n_targets, "model"),
        "popularity": rank_metrics(pop_scores, excluded, targets, vocab, n_targets, "popularity"),
        "random": rank_metrics(rand_scores, excluded, targets, vocab, n_targets, "random"),
    }
    if cats is not None:
        dom = dominant_categories(train_items, cats)
        res["category_agreement"] = category_agreement(U, dom, 10, cfg.seed)
    return res


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------


def _normalise_nodes(helper, src: str, out: str):
    """Nodes computing out = src / max(sqrt(sum(src^2, axis=1, keepdims)), eps)."""
    return [
        helper.make_node("Mul", [src, src], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes1"], ["sumsq"], keepdims=1),
        helper.make_node("Sqrt", ["sumsq"], ["norm"]),
        helper.make_node("Max", ["norm", "eps"], ["denom"]),
        helper.make_node("Div", [src, "denom"], [out]),
    ]


def _common_initializers(numpy_helper, E: np.ndarray):
    return [
        numpy_helper.from_array(np.ascontiguousarray(E, dtype=np.float32), "item_embeddings"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"),
        numpy_helper.from_array(np.array(EPS, dtype=np.float32), "eps"),
    ]


def _finish_model(onnx, helper, graph, meta: list[tuple[str, str]], doc: str):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="groupwise",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    for k, v in meta:
        p = model.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(model)
    return model


def export_models(E: np.ndarray, vocab: list[str], args, trained_on: str) -> dict[str, list[tuple[str, str]]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    V, D = E.shape
    common = [
        ("groupwise.contract", "1"),
        ("groupwise.embedding_dim", str(D)),
        ("groupwise.normalized", "l2"),
        ("groupwise.output", "embedding"),
    ]
    tail = [
        ("groupwise.trained_on", trained_on),
        ("groupwise.seed", str(args.seed)),
        ("groupwise.producer", PRODUCER),
    ]
    vocab_str = "\n".join(vocab)

    # (a) item-sequence model
    nodes = [
        helper.make_node("Gather", ["item_embeddings", "item_ids"], ["emb"], axis=0),
        helper.make_node("Equal", ["item_ids", "pad_id"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["not_pad"]),
        helper.make_node("Cast", ["not_pad"], ["valid"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["valid", "weights"], ["mask"]),
        helper.make_node("Unsqueeze", ["mask", "axes_last"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes1"], ["pooled"], keepdims=0),
    ] + _normalise_nodes(helper, "pooled", "embedding")
    inits = _common_initializers(numpy_helper, E) + [
        numpy_helper.from_array(np.array(PAD_ID, dtype=np.int64), "pad_id"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes_last"),
    ]
    graph = helper.make_graph(
        nodes,
        "groupwise_seq_encoder",
        [
            helper.make_tensor_value_info("item_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D])],
        initializer=inits,
    )
    seq_meta = (
        [("groupwise.contract", "1"), ("groupwise.input_kind", "item_sequence")]
        + common[1:]
        + [
            ("groupwise.input.ids", "item_ids"),
            ("groupwise.input.weights", "weights"),
            ("groupwise.padding_id", str(PAD_ID)),
            ("groupwise.unknown_id", str(UNK_ID)),
            ("groupwise.max_len", str(args.max_len)),
            ("groupwise.truncation", "keep_last"),
            ("groupwise.vocab_offset", str(VOCAB_OFFSET)),
            ("groupwise.vocab", vocab_str),
        ]
        + tail
    )
    seq_doc = (
        "groupwise reference user encoder (item_sequence). embedding = L2-normalise(sum_j "
        "weights[j] * E[item_ids[j]]) over non-padding positions; E = PPMI-SVD item "
        f"embeddings ({V} rows incl. padding=0 and unknown=1, dim {D}). Map external item ids "
        "with groupwise.vocab (model index = position + vocab_offset), unknown -> 1, pad with 0, "
        f"keep the last {args.max_len} items. Produced by {PRODUCER}."
    )
    seq_model = _finish_model(onnx, helper, graph, seq_meta, seq_doc)

    # (b) bag-of-items model
    nodes = [helper.make_node("MatMul", ["features", "item_embeddings"], ["pooled"])]
    nodes += _normalise_nodes(helper, "pooled", "embedding")
    graph = helper.make_graph(
        nodes,
        "groupwise_bag_encoder",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", V])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D])],
        initializer=_common_initializers(numpy_helper, E),
    )
    bag_meta = (
        [("groupwise.contract", "1"), ("groupwise.input_kind", "features")]
        + common[1:]
        + [
            ("groupwise.input.features", "features"),
            ("groupwise.feature_dim", str(V)),
            ("groupwise.feature_layout", "item_bag"),
            ("groupwise.unknown_id", str(UNK_ID)),
            ("groupwise.vocab_offset", str(VOCAB_OFFSET)),
            ("groupwise.vocab", vocab_str),
        ]
        + tail
    )
    bag_doc = (
        "groupwise reference user encoder (features, item_bag layout). embedding = "
        f"L2-normalise(features @ E) with features[b, i] = summed weight of model index i "
        f"(F = {V}; column 0 = padding is ignored by construction, column 1 = unknown items); "
        f"same E as the item_sequence model. Produced by {PRODUCER}."
    )
    bag_model = _finish_model(onnx, helper, graph, bag_meta, bag_doc)

    os.makedirs(args.out_dir, exist_ok=True)
    paths = {}
    for kind, model in (("seq", seq_model), ("bag", bag_model)):
        path = os.path.join(args.out_dir, f"{args.name}-{kind}.onnx")
        with open(path, "wb") as fh:
            fh.write(model.SerializeToString())
        paths[kind] = path
    return {"paths": paths, "seq": seq_meta, "bag": bag_meta}


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the groupwise reference user encoder (PPMI-SVD) and export it to ONNX.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("input")
    g.add_argument("--interactions", required=True, help="interaction log with a header row")
    g.add_argument("--sep", default=None,
                   help="field separator; '\\t' or 'tab' for tab; unset: tab for .tsv/.tab/.inter/.item/.user, comma otherwise")
    g.add_argument("--user-col", default="user_id")
    g.add_argument("--item-col", default="item_id")
    g.add_argument("--weight-col", default=None, help="optional per-interaction weight column (e.g. rating)")
    g.add_argument("--time-col", default=None, help="optional time column used to order histories")
    g.add_argument("--items", default=None, help="optional item metadata file (category report only)")
    g.add_argument("--items-sep", default=None, help="field separator of --items; unset: same rule as --sep")
    g.add_argument("--item-meta-item-col", default="item_id")
    g.add_argument("--item-meta-cat-col", default="class")
    g.add_argument("--cat-sep", default=" ", help="separator between categories in --item-meta-cat-col")

    g = p.add_argument_group("model")
    g.add_argument("--dim", type=int, default=64)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--max-len", type=int, default=200, help="keep the most recent N items per user")
    g.add_argument("--min-count", type=int, default=1, help="drop items seen fewer times from the vocabulary")
    g.add_argument("--cooc", choices=["user", "window"], default="user", help="co-occurrence context")
    g.add_argument("--window", type=int, default=10, help="window size for --cooc window")
    g.add_argument("--user-norm", choices=["none", "log", "inv"], default="none",
                   help="--cooc user: weight of each pair in a history of m items (1, 1/log2(m+1), 1/(m-1))")
    g.add_argument("--alpha", type=float, default=0.5, help="context-distribution smoothing exponent")
    g.add_argument("--shift", type=float, default=1.0, help="PMI shift k (subtract log k)")
    g.add_argument("--eig-power", type=float, default=0.0, help="E = U * S**p before row normalisation")
    g.add_argument("--svd", choices=["auto", "exact", "randomized"], default="auto")

    g = p.add_argument_group("evaluation / output")
    g.add_argument("--holdout", type=float, default=0.2, help="most recent share of each history held out")
    g.add_argument("--eval-weights", choices=["ones", "column"], default="ones",
                   help="user-embedding weights in the evaluation: 1.0 or the --weight-col values")
    g.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    g.add_argument("--out-dir", required=True,
                   help="folder for <name>-seq.onnx, <name>-bag.onnx and <name>-metrics.json (created if "
                        "missing); required, so that no run writes into the checkout unasked (the committed "
                        "reference was written with --out-dir models)")
    g.add_argument("--name", default="ml100k")
    g.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="progress on standard error: stage start/end lines, and at most one line every "
                        "SECONDS with the estimated time left; negative: no progress")
    return p


def config_from_args(args) -> Config:
    return Config(
        dim=args.dim, cooc=args.cooc, window=args.window, user_norm=args.user_norm,
        alpha=args.alpha, shift=args.shift, eig_power=args.eig_power, svd=args.svd, seed=args.seed,
    )


def _fmt(m: dict) -> str:
    return f"HR@10 {m['hr@10']:.4f}  Recall@20 {m['recall@20']:.4f}  NDCG@10 {m['ndcg@10']:.4f}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.eval_weights == "column" and not args.weight_col:
        args.eval_weights = "ones"
    if not 0.0 <= args.holdout < 1.0:
        print("error: --holdout must be in [0, 1)", file=sys.stderr)
        return 2
    if args.dim < 1 or args.max_len < 1 or args.min_count < 1:
        print("error: --dim, --max-len and --min-count must be >= 1", file=sys.stderr)
        return 2
    cfg = config_from_args(args)
    Progress.every = args.progress_every
    try:
        sep = parse_sep(args.sep, args.interactions)
        h = load_interactions(args.interactions, sep, args.user_col, args.item_col, args.weight_col, args.time_col)
        cats = None
        if args.items:
            cats = load_item_categories(args.items, parse_sep(args.items_sep, args.items), args.item_meta_item_col,
                                        args.item_meta_cat_col, args.cat_sep)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    fname = os.path.basename(args.interactions)
    print(f"loaded {fname}: {len(h.users)} users, {h.n_interactions} interactions")

    metrics = {
        "name": args.name,
        "data": {"file": fname, "users": len(h.users), "interactions": h.n_interactions},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__} | {
            "max_len": args.max_len, "min_count": args.min_count,
            "weight_col": args.weight_col, "time_col": args.time_col,
        },
    }
    if not args.no_eval:
        Progress._say(f"held-out evaluation (holdout {args.holdout}): training on the earlier part of each history")
        ev = evaluate(h, cfg, args, cats)
        metrics["evaluation"] = ev
        print(f"held-out evaluation ({ev['model']['users']} users, holdout {args.holdout}):")
        for k in ("model", "popularity", "random"):
            print(f"  {k:<10} {_fmt(ev[k])}")
        if "category_agreement" in ev:
            ca = ev["category_agreement"]
            print(f"  category agreement of 10 nearest users: {ca['nearest_users_same_category']:.4f} "
                  f"(random users: {ca['random_users_same_category']:.4f})")

    Progress._say("final model: training on all interactions")
    vocab = build_vocab(h.items, args.min_count)
    index = {it: i + VOCAB_OFFSET for i, it in enumerate(vocab)}
    seqs = [map_ids(s, index) for s in h.items]
    E = train_embeddings([s - VOCAB_OFFSET for s in seqs], len(vocab), cfg)
    trained_on = f"{fname}: {len(h.users)} users, {len(vocab)} items, {h.n_interactions} interactions"
    progress = Progress(f"export to {args.out_dir}")
    out = export_models(E, vocab, args, trained_on)
    progress.done()
    metrics["export"] = {
        "vocab_size": len(vocab),
        "feature_dim": int(E.shape[0]),
        "files": {k: os.path.basename(v) for k, v in out["paths"].items()},
        "trained_on": trained_on,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    mpath = os.path.join(args.out_dir, f"{args.name}-metrics.json")
    with open(mpath, "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2, sort_keys=False)
        fh.write("\n")
    for kind, path in out["paths"].items():
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    print(f"wrote {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
