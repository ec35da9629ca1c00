#!/bin/sh
# Runs the unit tests and every tests/cli/*.sh; last line: N passed, N failed, N skipped.
# Usage: tests/run.sh [BUILD_DIR] [PATTERN]
O=${1:-build}
PATTERN=${2:-}
export O
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0; skipn=0; failed=""

run_one() {
    name=$1; shift
    start=$(date +%s.%N)
    out=$("$@" 2>&1); rc=$?
    secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
    case $rc in
    0) pass=$((pass + 1)); echo "PASS $name (${secs}s)" ;;
    77) skipn=$((skipn + 1)); echo "SKIP $name: $(echo "$out" | grep -m1 'SKIP' | sed 's/^SKIP: //')" ;;
    *) fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name (exit $rc, ${secs}s)"
       echo "$out" | tail -n 30 | sed 's/^/    /' ;;
    esac
}

if [ -z "$PATTERN" ] || echo unit | grep -q "$PATTERN"; then
    run_one unit "$O/tests/unit-tests"
fi
for t in tests/cli/*.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .sh)
    if [ -n "$PATTERN" ] && ! echo "$name" | grep -q "$PATTERN"; then continue; fi
    run_one "$name" timeout 600 sh "$t"
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skipn skipped"
[ "$fail" -eq 0 ]
