#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md for the foundation: encoder
# throughput (groupwise vs Python onnxruntime) and index build / recall /
# queries per second (groupwise vs hnswlib and faiss HNSW), side by side in one
# run, on this machine. Not part of CI.
#
#   bench/run.sh            # MovieLens embeddings + 100k synthetic (about 5 min)
#   bench/run.sh --full     # also 1M synthetic vectors (about 40 more min)
#
# Writes bench/out/*.jsonl and bench/out/report.md (git-ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FULL=0
[[ "${1:-}" == "--full" ]] && FULL=1
OUT=bench/out
mkdir -p "$OUT"

bash scripts/setup.sh
cargo build --release --quiet -p groupwise-cli
GW=target/release/groupwise

# Python peers, pinned, in their own virtual environment.
VENV=.groupwise/bench-venv
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet numpy==2.4.6 onnxruntime==1.31.1 hnswlib==0.8.0 faiss-cpu==1.15.1
fi
PY="$VENV/bin/python"

: > "$OUT/encode.jsonl"
for model in ml100k-seq ml100k-bag; do
  for threads in 1 2; do
    "$GW" bench encode --model "models/$model.onnx" --threads "$threads" --inputs-out "$OUT/$model-inputs.json" >> "$OUT/encode.jsonl"
    "$PY" bench/peers_encode.py --model "models/$model.onnx" --threads "$threads" --inputs "$OUT/$model-inputs.json" >> "$OUT/encode.jsonl"
  done
done

: > "$OUT/index.jsonl"
# MovieLens: every user's embedding is both a point and a query.
"$GW" encode --interactions .groupwise/data/ml-100k/ml-100k.inter --time-col timestamp --out "$OUT/ml100k.npy"
run_index() { # name vectors queries
  "$GW" bench index --dataset "$1" --vectors "$2" --queries "$3" >> "$OUT/index.jsonl"
  "$PY" bench/peers_index.py --dataset "$1" --vectors "$2" --queries "$3" >> "$OUT/index.jsonl"
}
run_index ml100k "$OUT/ml100k.npy" "$OUT/ml100k.npy"
"$GW" synth --n 100000 --queries 1000 --seed 7 --out "$OUT/synth100k.npy" --queries-out "$OUT/synth100k-q.npy"
run_index synth100k "$OUT/synth100k.npy" "$OUT/synth100k-q.npy"
if [[ $FULL == 1 ]]; then
  "$GW" synth --n 1000000 --queries 1000 --seed 7 --out "$OUT/synth1m.npy" --queries-out "$OUT/synth1m-q.npy"
  run_index synth1m "$OUT/synth1m.npy" "$OUT/synth1m-q.npy"
fi

# Lookalike on 1M synthetic users: every scorer next to an exact brute force.
"$GW" bench lookalike > "$OUT/lookalike.jsonl"
cat "$OUT/lookalike.jsonl"

"$PY" bench/report.py "$OUT/encode.jsonl" "$OUT/index.jsonl" | tee "$OUT/report.md"
