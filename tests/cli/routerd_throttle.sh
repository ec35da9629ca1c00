#!/bin/sh
# routerd: the function's concurrency limit gives 429 TooManyRequestsException, not a
# failure: with concurrency 1 and one slow invoke running, a second invoke is refused
# (after --acquire-wait-ms) while the first one succeeds; afterwards invokes succeed.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

heavy_function 60 1
start_assignd
start_routerd --acquire-wait-ms 100
out=$(invoke heavy info) || fail "warm-up invoke: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "warm-up invoke"

# A slow invoke in one thread; 0.5 s later (it is still running) a second one.
python3 - "$T" "$ADDR" "$SLOW" >"$T/both" 2>&1 <<'PY' || fail "concurrent invokes: $(cat "$T/both")"
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import lam
addr, slow = sys.argv[2], sys.argv[3]
path = "/2015-03-31/functions/heavy/invocations"
res = {}
t = threading.Thread(target=lambda: res.__setitem__("slow", lam.call(addr, "POST", path, slow.encode())))
t0 = time.monotonic()
t.start()
time.sleep(0.5)
res["second"] = lam.call(addr, "POST", path, b"info")
second_done = time.monotonic() - t0
t.join()
s, h, b = res["slow"]
assert s == 200 and "x-amz-function-error" not in h and '"steps":16777216' in b, res["slow"]
s, h, b = res["second"]
assert s == 429 and h.get("x-amzn-errortype") == "TooManyRequestsException", res["second"]
assert "ReservedFunctionConcurrentInvocationLimitExceeded" in b, b
assert time.monotonic() - t0 > second_done + 0.2, "the slow invoke was not running when the 429 came"
print("ok")
PY
out=$(invoke heavy info) || fail "invoke after the throttle: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "invoke after the throttle"
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_throttles_total 1' "throttle counted"
assert_contains "$m" 'kindling_routerd_errors_total{kind="function"} 0' "a throttle is not a function error"
assert_contains "$m" 'kindling_routerd_errors_total{kind="service"} 0' "a throttle is not a service error"
assert_eq "$(sandboxes | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 1 "one sandbox (limit 1)"
exit 0
