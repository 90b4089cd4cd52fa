#!/usr/bin/env bash
# Installs what groupwise needs at run time into the git-ignored folder .groupwise/
# of this checkout, idempotently and offline-friendly (only PyPI is contacted):
#
#   .groupwise/lib/libonnxruntime.so      ONNX Runtime, from the pinned PyPI wheel
#   .groupwise/data/ml-100k/              MovieLens 100K, from the pinned recbole wheel
#   .groupwise/data/obd/                  Open Bandit Dataset sample, from the pinned obp wheel
#
# Every wheel is checked against its sha256 before anything is unpacked. GroupLens
# terms forbid redistributing MovieLens, so the data is fetched, never committed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GW="${GROUPWISE_HOME:-$ROOT/.groupwise}"
WHEELS="$GW/wheels"
mkdir -p "$WHEELS" "$GW/lib" "$GW/data"

PY="${PYTHON:-python3}"

ORT_VERSION=1.31.1
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_SHA=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
RECBOLE_WHEEL=recbole-1.2.1-py3-none-any.whl
RECBOLE_SHA=9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407
OBP_WHEEL=obp-0.4.1-py3-none-any.whl
OBP_SHA=87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208

say() { printf 'setup: %s\n' "$*" >&2; }

# fetch_wheel SPEC FILE SHA [pip platform args...]
fetch_wheel() {
  local spec="$1" file="$2" sha="$3"
  shift 3
  if [[ -f "$WHEELS/$file" ]] && echo "$sha  $WHEELS/$file" | sha256sum --check --status; then
    return 0
  fi
  say "downloading $spec from PyPI"
  rm -f "$WHEELS/$file"
  "$PY" -m pip download --quiet --no-deps --disable-pip-version-check "$@" -d "$WHEELS" "$spec"
  if ! echo "$sha  $WHEELS/$file" | sha256sum --check --status; then
    say "sha256 mismatch for $file (expected $sha); refusing to use it"
    rm -f "$WHEELS/$file"
    exit 1
  fi
}

# unzip_members WHEEL DEST PREFIX: extract the files under PREFIX, flattened into DEST
unzip_members() {
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import os, sys, zipfile
wheel, dest, prefix = sys.argv[1:4]
os.makedirs(dest, exist_ok=True)
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith(prefix) and base and not base.startswith("."):
            target = os.path.join(dest, os.path.basename(name))
            tmp = target + ".part"
            with z.open(name) as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, target)
            n += 1
if n == 0:
    sys.exit(f"no member under {prefix} in {wheel}")
PYEOF
}

# ONNX Runtime shared library
if [[ ! -f "$GW/lib/libonnxruntime.so.$ORT_VERSION" ]]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) say "only Linux x86_64 is set up automatically; point ORT_DYLIB_PATH at libonnxruntime ${ORT_VERSION}"; exit 1 ;;
  esac
  fetch_wheel "onnxruntime==$ORT_VERSION" "$ORT_WHEEL" "$ORT_SHA" \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64
  unzip_members "$WHEELS/$ORT_WHEEL" "$GW/lib" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
  say "installed $GW/lib/libonnxruntime.so.$ORT_VERSION"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$GW/lib/libonnxruntime.so"

# MovieLens 100K
if [[ ! -f "$GW/data/ml-100k/ml-100k.inter" ]]; then
  fetch_wheel "recbole==1.2.1" "$RECBOLE_WHEEL" "$RECBOLE_SHA"
  unzip_members "$WHEELS/$RECBOLE_WHEEL" "$GW/data/ml-100k" "recbole/dataset_example/ml-100k/"
  say "installed MovieLens 100K into $GW/data/ml-100k"
fi

# Open Bandit Dataset sample (used by the slate evaluation)
if [[ ! -d "$GW/data/obd/random" ]]; then
  fetch_wheel "obp==0.4.1" "$OBP_WHEEL" "$OBP_SHA"
  for policy in random bts; do
    for campaign in all men women; do
      unzip_members "$WHEELS/$OBP_WHEEL" "$GW/data/obd/$policy/$campaign" "obp/dataset/obd/$policy/$campaign/"
    done
  done
  say "installed the Open Bandit Dataset sample into $GW/data/obd"
fi
