#!/bin/sh
# Runs every libFuzzer target of a `make fuzz` build for a bounded time.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS [NAME...]
#   Each target starts from its committed seeds (tests/fuzz/corpus/NAME, read only)
#   plus what earlier runs found (BUILD_DIR/fuzz-corpus/NAME, where new inputs go),
#   and runs SECONDS (make fuzz: FUZZ_SECONDS, default 60).  A crash, leak, timeout
#   (10 s per input) or out-of-memory (2 GiB) leaves the input in
#   BUILD_DIR/fuzz-artifacts/NAME/ and fails the run; its log is BUILD_DIR/fuzz-logs/NAME.log.
#   Minimise one with `BUILD_DIR/fuzz/NAME -minimize_crash=1 -runs=10000 FILE`, fix
#   the bug, and commit the input to tests/fuzz/corpus/NAME with a unit test.
# Last line: N targets, N failed.
set -u
[ $# -ge 2 ] || { echo "usage: tests/fuzz/run.sh BUILD_DIR SECONDS [NAME...]" >&2; exit 2; }
O=$1; secs=$2; shift 2
cd "$(dirname "$0")/../.." || exit 1
names=${*:-$(for f in tests/fuzz/*.cpp; do basename "$f" .cpp; done)}
n=0; failed=""
for name in $names; do
    bin=$O/fuzz/$name
    [ -x "$bin" ] || { echo "fuzz: $bin not built (make fuzz)" >&2; exit 1; }
    mkdir -p "$O/fuzz-corpus/$name" "$O/fuzz-artifacts/$name" "$O/fuzz-logs" "tests/fuzz/corpus/$name"
    log=$O/fuzz-logs/$name.log
    n=$((n + 1))
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$O/fuzz-artifacts/$name/" "$O/fuzz-corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        printf 'fuzz: %-14s ok   %s runs in %ss, %s\n' "$name" "${runs:-?}" "$secs" "${cov:-cov: ?}"
    else
        failed="$failed $name"
        printf 'fuzz: %-14s FAIL (exit %d): %s\n' "$name" "$rc" "$(ls "$O/fuzz-artifacts/$name" | head -n 3 | tr '\n' ' ')"
        grep -m 3 'ERROR:\|SUMMARY:\|runtime error' "$log" | sed 's/^/    /'
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$n targets, $(echo $failed | wc -w) failed"
[ -z "$failed" ]
