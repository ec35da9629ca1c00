#!/bin/sh
# routerd: a guest ERR answer is a function error: 200 with X-Amz-Function-Error:
# Unhandled and a Lambda error JSON ({"errorMessage", "errorType"}), counted in
# /metrics; the sandbox goes back to idle and the next invoke is answered warm.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem 16 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "uuid", "tenant": "111111111111", "memory": 16, "timeout": 3, "concurrency": 2,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
start_assignd
start_routerd

out=$(invoke uuid abc) || fail "invoke: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "status of a function error"
assert_eq "$(echo "$out" | sed -n 2p)" Unhandled "X-Amz-Function-Error"
echo "$out" | sed -n '4,$p' | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["errorMessage"] == "request must be empty or a count from 1 to 1000", d
assert d["errorType"] == "Unhandled", d' || fail "error JSON: $out"

# The same sandbox answers the next (good) request.
out=$(invoke uuid 2) || fail "invoke: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "status after the error"
assert_eq "$(echo "$out" | sed -n 2p)" - "no function error on a good request"
assert_eq "$(echo "$out" | sed -n '4,$p' | grep -cE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')" 2 "two uuids"
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_errors_total{kind="function"} 1' "function errors counted"
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="warm"} 1' "second invoke was warm"
assert_eq "$(sandboxes | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 1 "one sandbox"
exit 0
