#!/bin/sh
# routerd: a guest ERR answer is a function error: 200 with X-Amz-Function-Error:
# Unhandled and a Lambda error JSON ({"errorMessage", "errorType"}), counted in
# /metrics; the sandbox goes back to idle and the next invoke is answered warm.
# A hostile ERR answer (JSON nested 100k levels deep, from the hostile guest's
# echo-error mode) is an error like any other, its text the errorMessage; routerd
# stays up for every tenant.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem 16 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
"$BIN/snap-make" --nano "$GUEST/hostile.elf" --boot-args mode=echo-error --mem 16 --out "$T/echo" >"$T/snap.log" 2>&1 ||
    fail "snap-make hostile: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "uuid", "tenant": "111111111111", "memory": 16, "timeout": 3, "concurrency": 2,
                "snapshot": {"dir": "$T/snap"}},
               {"name": "echo", "tenant": "111111111111", "memory": 16, "timeout": 3, "concurrency": 1,
                "snapshot": {"dir": "$T/echo"}}]}
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

# The guest's error object is passed on as it is; one nested 100k levels deep (too
# deep to re-serialise safely) is its text.  (The payload is built in python: it is
# over the 128 KiB a single argv string may hold.)
echo_error() {  # PAYLOAD-EXPRESSION (python, bytes): prints what lam.py shows
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); from lam import call, show
show(call(sys.argv[2], "POST", "/2015-03-31/functions/echo/invocations", eval(sys.argv[3])))' "$T" "$ADDR" "$1"
}
out=$(echo_error 'b"{\"errorMessage\": \"m\", \"errorType\": \"E\", \"stackTrace\": [[\"a\", 1]]}"') ||
    fail "invoke echo: $out"
assert_eq "$(echo "$out" | sed -n 2p)" Unhandled "X-Amz-Function-Error of an error object"
assert_eq "$(echo "$out" | sed -n '4,$p')" '{"errorMessage":"m","errorType":"E","stackTrace":[["a",1]]}' "error object"
deep='b"{\"errorMessage\": \"m\", \"n\": " + b"[" * 100000 + b"]" * 100000 + b"}"'
out=$(echo_error "$deep") || fail "deep invoke: $out"
kill -0 "$RPID" 2>/dev/null || fail "routerd died on a deeply nested ERR answer: $(tail -3 "$T/routerd.err")"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "status of a deeply nested error"
assert_eq "$(echo "$out" | sed -n 2p)" Unhandled "X-Amz-Function-Error of a deeply nested error"
echo "$out" | sed -n '4,$p' | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["errorMessage"].encode() == eval(sys.argv[1]), d["errorMessage"][:80]
assert d["errorType"] == "Unhandled", d' "$deep" || fail "deep error JSON: $(echo "$out" | cut -c1-200)"
out=$(invoke uuid 1) || fail "invoke after the deep error: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "uuid after the deep error"
assert_eq "$(echo "$out" | sed -n 2p)" - "uuid after the deep error"
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_errors_total{kind="function"} 3' "three function errors"
exit 0
