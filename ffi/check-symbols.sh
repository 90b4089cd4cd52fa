#!/usr/bin/env bash
# Checks that the shared library exports only groupwise's own functions:
# every exported text symbol must start with `gw_`. Without the
# `--exclude-libs,ALL` link flag of ffi/build.rs, hnsw_rs's `#[no_mangle]`
# functions (init_hnsw_f32, insert_f32, ...) would be exported too.
#
# Usage: ffi/check-symbols.sh [path/to/libgroupwise.so]
#        (default: target/release/libgroupwise.so, or $CARGO_TARGET_DIR's)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lib="${1:-${CARGO_TARGET_DIR:-$root/target}/release/libgroupwise.so}"
[ -f "$lib" ] || { echo "check-symbols: $lib not found; run cargo build --release -p groupwise-ffi" >&2; exit 1; }

symbols="$(nm -D --defined-only "$lib")"
exported="$(awk '$2 == "T" { print $3 }' <<<"$symbols")"
foreign="$(grep -v '^gw_' <<<"$exported" || true)"
if [ -n "$foreign" ]; then
    echo "check-symbols: $lib exports text symbols without the gw_ prefix:" >&2
    sed 's/^/  /' <<<"$foreign" >&2
    echo "check-symbols: hide them (see ffi/build.rs) or rename them to gw_*" >&2
    exit 1
fi
count="$(grep -c '^gw_' <<<"$exported" || true)"
# A library exporting nothing would pass the prefix check: make sure the
# entry points are really there.
if ! grep -qx 'gw_version' <<<"$exported"; then
    echo "check-symbols: $lib does not export gw_version" >&2
    exit 1
fi
echo "check-symbols: $lib exports $count functions, all gw_-prefixed"
