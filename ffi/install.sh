#!/usr/bin/env bash
# Builds the groupwise C library (release) and installs it under PREFIX:
#
#   PREFIX/lib/libgroupwise.so          shared library
#   PREFIX/lib/libgroupwise.a           static library
#   PREFIX/include/groupwise.h          the header
#   PREFIX/lib/pkgconfig/groupwise.pc   for pkg-config
#
# Usage: ffi/install.sh PREFIX          (e.g. /usr/local or "$HOME/.local")
#
# Then compile against it with
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs groupwise
# (add --static, and link libgroupwise.a, for a static build).
set -euo pipefail
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"

cd "$root"
cargo build --release -p groupwise-ffi
version="$(cargo pkgid -p groupwise-ffi | sed 's/.*[#@]//')"

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libgroupwise.so" "$prefix/lib/libgroupwise.so"
install -m 0644 "$target/libgroupwise.a" "$prefix/lib/libgroupwise.a"
install -m 0644 ffi/include/groupwise.h "$prefix/include/groupwise.h"
# `|` as the sed delimiter: PREFIX is a path. A prefix containing `|`, `&` or
# `\` is refused rather than written wrongly.
case "$prefix" in
    *'|'* | *'&'* | *'\'*) echo "install.sh: unsupported character in PREFIX: $prefix" >&2; exit 2 ;;
esac
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" ffi/groupwise.pc.in \
    > "$prefix/lib/pkgconfig/groupwise.pc"
chmod 0644 "$prefix/lib/pkgconfig/groupwise.pc"
echo "installed groupwise $version into $prefix"
