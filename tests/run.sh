#!/bin/sh
# Runs the unit tests and every tests/cli/*.sh; last line: N passed, N failed, N skipped.
# Usage: tests/run.sh [-j N] [-x EXCLUDE] [BUILD_DIR] [PATTERN]
#   BUILD_DIR  where the binaries are (default build)
#   PATTERN    run only the tests whose name matches this grep pattern
#   -x EXCLUDE skip the tests whose name matches this grep pattern
#   -j N       run N tests at a time (default 1, one after the other).  Each test's
#              PASS/FAIL/SKIP block is printed whole when it ends.  A test with a line
#              "# serial: REASON" (heavy, or timing that other tests would disturb)
#              runs alone, after the others.
# Exits non-zero if any test failed.  With KINDLING_TALLY=FILE set, also appends
# "PASSED FAILED SKIPPED" to FILE (make check sums its runs into one last line).
usage() { echo "usage: tests/run.sh [-j N] [-x EXCLUDE] [BUILD_DIR] [PATTERN]" >&2; exit 2; }
jobs=1
exclude=""
while getopts j:x: opt; do
    case $opt in
    j) jobs=$OPTARG ;;
    x) exclude=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
case $jobs in '' | *[!0-9]* | 0*) echo "tests/run.sh: -j wants a positive number, not '$jobs'" >&2; usage ;; esac
[ $# -le 2 ] || usage
O=${1:-build}
PATTERN=${2:-}
export O
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0; skipn=0; failed=""

# Each test runs in the background, its output in $R/ID.log; when it ends, its result
# (pass, fail or skip) and its printable block go to $R/ID.out and its ID to the fifo
# on fd 3, where finish_one reads it.  $R/ID.job is the pid of the job's shell until
# finish_one has reaped it, $R/ID.pid the test's pid while it runs.
R=$(mktemp -d "${TMPDIR:-/tmp}/kindling-run.XXXXXX") || exit 1
mkfifo "$R/done" || exit 1
exec 3<>"$R/done"
running=0; next_id=0

# On exit (normally nothing is left running): stop the job shells, then the tests.
stop_all() {
    for f in "$R"/*.job "$R"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    rm -rf "$R"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_one NAME CMD...: start one test in the background.
start_one() {
    name=$1; shift
    next_id=$((next_id + 1)); id=$next_id
    (
        start=$(date +%s.%N)
        "$@" >"$R/$id.log" 2>&1 3>&- &
        echo $! >"$R/$id.pid"
        wait $!; rc=$?
        rm -f "$R/$id.pid"
        secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
        case $rc in
        0) echo pass; echo "PASS $name (${secs}s)" ;;
        77) echo skip; echo "SKIP $name: $(grep -m1 'SKIP' "$R/$id.log" | sed 's/^SKIP: //')" ;;
        *) echo "fail $name"; echo "FAIL $name (exit $rc, ${secs}s)"
           tail -n 30 "$R/$id.log" | sed 's/^/    /' ;;
        esac >"$R/$id.out"
        echo "$id" >&3
    ) &
    echo $! >"$R/$id.job"
    running=$((running + 1))
}

# finish_one: wait until a test ends, print its block and count it.
finish_one() {
    read -r id <&3 || exit 1
    wait "$(cat "$R/$id.job")"; rm -f "$R/$id.job"
    running=$((running - 1))
    result=$(head -n 1 "$R/$id.out")
    tail -n +2 "$R/$id.out"
    case $result in
    pass) pass=$((pass + 1)) ;;
    skip) skipn=$((skipn + 1)) ;;
    *) fail=$((fail + 1)); failed="$failed ${result#fail }" ;;
    esac
}

# run NAME CMD...: run a test in a free slot (waiting for one while all N are busy).
run() {
    while [ "$running" -ge "$jobs" ]; do finish_one; done
    start_one "$@"
}
drain() { while [ "$running" -gt 0 ]; do finish_one; done; }

is_serial() { head -n 20 "$1" | grep -q '^# serial'; }

# selected NAME: matches PATTERN (if any) and not EXCLUDE (if any).
selected() {
    { [ -z "$PATTERN" ] || echo "$1" | grep -q "$PATTERN"; } && { [ -z "$exclude" ] || ! echo "$1" | grep -q "$exclude"; }
}

if selected unit; then
    run unit "$O/tests/unit-tests"
fi
serial=""
for t in tests/cli/*.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .sh)
    selected "$name" || continue
    if [ "$jobs" -gt 1 ] && is_serial "$t"; then serial="$serial $t"; continue; fi
    run "$name" timeout 600 sh "$t"
done
drain
for t in $serial; do
    run "$(basename "$t" .sh)" timeout 600 sh "$t"
    drain
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skipn skipped"
[ -n "${KINDLING_TALLY:-}" ] && echo "$pass $fail $skipn" >>"$KINDLING_TALLY"
[ "$fail" -eq 0 ]
