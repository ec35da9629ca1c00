#!/bin/sh
# routerd: a sandbox killed mid-invoke (kill -9 its fc-launch) -> that client gets a
# function error (Runtime.ExitError), the sandbox is not reused, later invokes succeed.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

heavy_function 60 2
start_assignd
start_routerd
out=$(invoke heavy info) || fail "first invoke: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "first invoke"
set -- $(sandboxes | python3 -c 'import json,sys; s=json.load(sys.stdin); assert len(s)==1, s; print(s[0]["id"], s[0]["pid"])')
SB=$1; SBPID=$2

invoke heavy "$SLOW" >"$T/slow.out" 2>&1 &
CLIENT=$!
# Kill it once routerd has taken the slow invoke and the guest is into it (the
# sandbox shows busy while routerd merely holds its lease, so that is no sign).
wait_taken 2 || fail "routerd never took the slow invoke"
sleep 0.2
kill -9 "$SBPID"
wait "$CLIENT" || fail "client: $(cat "$T/slow.out")"
out=$(cat "$T/slow.out")
assert_eq "$(echo "$out" | sed -n 1p)" 200 "status after the kill"
assert_eq "$(echo "$out" | sed -n 2p)" Unhandled "X-Amz-Function-Error after the kill"
assert_contains "$(echo "$out" | sed -n 4p)" '"errorType":"Runtime.ExitError"' "error type after the kill"

for n in 1 2 3; do
    out=$(invoke heavy info) || fail "invoke $n after the kill: $out"
    assert_eq "$(echo "$out" | sed -n 1p)" 200 "invoke $n after the kill"
    assert_eq "$(echo "$out" | sed -n 2p)" - "invoke $n after the kill is not an error"
done
sandboxes | python3 -c '
import json, sys
live = [s for s in json.load(sys.stdin) if s["state"] != "dead"]
assert len(live) == 1 and live[0]["id"] != sys.argv[1], live' "$SB" || fail "sandboxes after the kill: $(sandboxes)"
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="cold"} 2' "one new sandbox after the kill"
exit 0
