#!/bin/sh
# routerd: an invoke running past the function's timeout (1 s) answers the "Task timed
# out after 1.00 seconds" function error; its sandbox is destroyed, never reused: the
# next invoke restores a new one.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

heavy_function 1 2
start_assignd
start_routerd
out=$(invoke heavy info) || fail "first invoke: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "first invoke"
first=$(sandboxes | python3 -c 'import json,sys; s=json.load(sys.stdin); assert len(s)==1, s; print(s[0]["id"], s[0]["pid"])')
set -- $first; SB=$1; SBPID=$2

start=$(date +%s%N)
out=$(invoke heavy "$SLOW") || fail "slow invoke: $out"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
assert_eq "$(echo "$out" | sed -n 1p)" 200 "status of a timeout"
assert_eq "$(echo "$out" | sed -n 2p)" Unhandled "X-Amz-Function-Error on a timeout"
assert_contains "$(echo "$out" | sed -n 4p)" "Task timed out after 1.00 seconds" "timeout message"
[ "$ms" -lt 5000 ] || fail "the timeout answer took $ms ms"

# The timed-out sandbox is gone (its fc-launch killed) and not handed out again.
i=0; while kill -0 "$SBPID" 2>/dev/null; do i=$((i+1)); [ $i -gt 500 ] && fail "sandbox $SB (pid $SBPID) still running"; sleep 0.01; done
sandboxes | python3 -c '
import json, sys
sb = sys.argv[1]
for s in json.load(sys.stdin):
    assert s["id"] != sb or s["state"] == "dead", s' "$SB" || fail "timed-out sandbox still listed as live: $(sandboxes)"
out=$(invoke heavy info) || fail "invoke after the timeout: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "invoke after the timeout"
assert_eq "$(echo "$out" | sed -n 2p)" - "invoke after the timeout is not an error"
now=$(sandboxes | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin) if s["state"] != "dead"))')
assert_eq "$(echo "$now" | grep -c "^$SB\$")" 0 "a new sandbox, not $SB"
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_errors_total{kind="timeout"} 1' "timeout counted"
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="cold"} 2' "the third invoke restored a new sandbox"
exit 0
