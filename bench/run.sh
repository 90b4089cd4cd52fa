#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md, side by side with the named peers
# in one run, on this machine. Not part of CI.
#
#   bench/run.sh                  # everything at MovieLens + 100k scale (about 15 min)
#   bench/run.sh --full           # also 1M synthetic users (about 90 more min)
#   bench/run.sh --huge           # also the 10M-user index (i8 graph; hours on 2 cores)
#   bench/run.sh --only segments  # one part: encode, index, lookalike, segments, slates or engine
#
# Parts: encoder throughput (vs Python onnxruntime); index build / recall / QPS
# (vs hnswlib, faiss); lookalike at 1M (vs exact brute force); segments (vs
# leidenalg and scikit-learn, on the same embeddings and kNN graph).
# Writes bench/out/* (git-ignored): *.jsonl, report.md, segments-*.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FULL=0
HUGE=0
ONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --full) FULL=1 ;;
    --huge) HUGE=1 ;;
    --only) ONLY="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ -z "$ONLY" || "$ONLY" == "$1" ]]; }
OUT=bench/out
mkdir -p "$OUT"

bash scripts/setup.sh
cargo build --release --quiet -p groupwise-cli
GW=target/release/groupwise

# Python peers, pinned, in their own virtual environment.
VENV=.groupwise/bench-venv
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet numpy==2.4.6 onnxruntime==1.31.1 hnswlib==0.8.0 faiss-cpu==1.15.1 \
  scikit-learn==1.5.2 igraph==0.11.8 leidenalg==0.10.2 obp==0.4.1 mabwiser==2.7.4
PY="$VENV/bin/python"

if want encode; then
  : > "$OUT/encode.jsonl"
  for model in ml100k-seq ml100k-bag; do
    for threads in 1 2; do
      "$GW" bench encode --model "models/$model.onnx" --threads "$threads" --inputs-out "$OUT/$model-inputs.json" >> "$OUT/encode.jsonl"
      "$PY" bench/peers_encode.py --model "models/$model.onnx" --threads "$threads" --inputs "$OUT/$model-inputs.json" >> "$OUT/encode.jsonl"
    done
  done
fi

if want index; then
  : > "$OUT/index.jsonl"
  # MovieLens: every user's embedding is both a point and a query.
  "$GW" encode --interactions .groupwise/data/ml-100k/ml-100k.inter --time-col timestamp --out "$OUT/ml100k.npy"
  EFS=16,24,32,48,64,96,128
  run_index() { # name vectors queries "backend precision"... -- peers
    local name=$1 x=$2 q=$3; shift 3
    while [[ $# -gt 0 && $1 != -- ]]; do
      read -r backend precision <<< "$1"
      "$GW" bench index --dataset "$name" --vectors "$x" --queries "$q" --efs "$EFS" \
        --backend "$backend" --graph-precision "$precision" --snapshot-dir "$OUT/snap" >> "$OUT/index.jsonl"
      shift
    done
    shift
    "$PY" bench/peers_index.py --dataset "$name" --vectors "$x" --queries "$q" --efs "$EFS" \
      --impls "$1" >> "$OUT/index.jsonl"
  }
  run_index ml100k "$OUT/ml100k.npy" "$OUT/ml100k.npy" "usearch f16" -- hnswlib,faiss
  "$GW" synth --n 100000 --queries 1000 --seed 7 --out "$OUT/synth100k.npy" --queries-out "$OUT/synth100k-q.npy"
  run_index synth100k "$OUT/synth100k.npy" "$OUT/synth100k-q.npy" \
    "usearch f16" "usearch f32" "usearch i8" "hnsw_rs f32" -- hnswlib,faiss
  if [[ $FULL == 1 ]]; then
    "$GW" synth --n 1000000 --queries 1000 --seed 7 --out "$OUT/synth1m.npy" --queries-out "$OUT/synth1m-q.npy"
    run_index synth1m "$OUT/synth1m.npy" "$OUT/synth1m-q.npy" "usearch f16" -- hnswlib
  fi
  if [[ $HUGE == 1 ]]; then
    "$GW" synth --n 10000000 --queries 1000 --seed 7 --out "$OUT/synth10m.npy" --queries-out "$OUT/synth10m-q.npy"
    "$GW" bench index --dataset synth10m --vectors "$OUT/synth10m.npy" --queries "$OUT/synth10m-q.npy" \
      --efs 64,96,128,192 --backend usearch --graph-precision i8 >> "$OUT/index.jsonl"
  fi
fi

if want lookalike; then
  # Lookalike on 1M synthetic users: every scorer next to an exact brute force.
  "$GW" bench lookalike > "$OUT/lookalike.jsonl"
  cat "$OUT/lookalike.jsonl"
fi

if want segments; then
  # Quality, stability and time on MovieLens (5 seeds), then scale on
  # synthetic clusters: at 100k overlapping ones (spread 2.0, so quality
  # differs between methods), at 1M spread 1.0 (hnsw_rs needs hours to index
  # 1M vectors that noisy).
  "$GW" eval segments --movielens --peers "$PY" --out "$OUT/segments-ml100k.md"
  runs=("100000 2.0 3")
  [[ $FULL == 1 ]] && runs+=("1000000 1.0 2")
  for run in "${runs[@]}"; do
    read -r n spread seeds <<< "$run"
    "$GW" synth --n "$n" --queries 1 --seed 7 --spread "$spread" --out "$OUT/seg$n.npy" \
      --queries-out "$OUT/seg$n-q.npy" --labels-out "$OUT/seg$n.labels"
    "$GW" eval segments --embeddings "$OUT/seg$n.npy" --truth "$OUT/seg$n.labels" --seeds "$seeds" \
      --clusters 100 --skip-served --peers "$PY" --out "$OUT/segments-$n.md"
  done
fi

if want slates; then
  # Slate decisions: groupwise, then obp BernoulliTS, MABWiser TS and numpy
  # references choosing the same slates from the same warmed posteriors.
  "$GW" bench slates > "$OUT/slates.jsonl"
  "$PY" bench/peers_slates.py >> "$OUT/slates.jsonl"
  "$PY" bench/report_slates.py "$OUT/slates.jsonl" | tee "$OUT/slates.md"
fi

if want engine; then
  # Engine snapshots (graph stored vs rebuilt on load) and the mixed load.
  # No peer: the ratio that matters is load with the graph vs without, in one run.
  "$GW" bench engine --n 100000 > "$OUT/engine-100k.jsonl"
  if [[ $FULL == 1 ]]; then
    "$GW" bench engine --n 1000000 --decisions 200000 --ops 2000 --threads 2 > "$OUT/engine-1m.jsonl"
  fi
fi

if want encode || want index; then
  "$PY" bench/report.py "$OUT/encode.jsonl" "$OUT/index.jsonl" | tee "$OUT/report.md"
fi
