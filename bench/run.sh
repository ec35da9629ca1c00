#!/bin/sh
# Runs every benchmark; figures only, never pass/fail.  Usage: bench/run.sh [BUILD_DIR]
# Each bench/*.sh gets the build dir as $1; the C++ benches are driven from them.
O=${1:-build}
cd "$(dirname "$0")/.." || exit 1
for b in bench/*.sh; do
    [ "$b" = bench/run.sh ] && continue
    echo "== $b"
    sh "$b" "$O" || echo "bench: $b exited $?" >&2
done
