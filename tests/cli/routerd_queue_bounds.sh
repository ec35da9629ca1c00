#!/bin/sh
# routerd's queues and a tenant's concurrency are bounded, with 429
# TooManyRequestsException beyond, counted in /metrics
# (kindling_routerd_rejections_total{reason}):
#   --tenant-concurrency 1: a second invoke of the tenant while one runs -> 429
#     ConcurrentInvocationLimitExceeded (the function's own limit is 4);
#   --workers 1 --max-queued-invokes 1: one Log-Type: Tail invoke running, one
#     queued, a third -> 429 CallerRateLimitExceeded;
#   --max-pending-events 1: an Event invoke while one is pending -> 429.
# serial: slow invokes hold the limits
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

heavy_function 60 4
start_assignd
cat >"$T/calls.py" <<'PY'
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import lam
addr, slow, case = sys.argv[2], sys.argv[3], sys.argv[4]
path = "/2015-03-31/functions/heavy/invocations"
res = {}
def bg(name, body, headers=None):
    t = threading.Thread(target=lambda: res.__setitem__(name, lam.call(addr, "POST", path, body, headers=headers)))
    t.start()
    return t
def metric(name):
    import urllib.request
    for line in urllib.request.urlopen("http://%s/metrics" % addr).read().decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.split(" ")[1])
    return None
def wait(pred, what, secs=10):
    for _ in range(secs * 100):
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)
def check_429(r, reason):
    s, h, b = r
    assert s == 429 and h.get("x-amzn-errortype") == "TooManyRequestsException" and reason in b, r
tail = {"X-Amz-Log-Type": "Tail"}
if case == "tenant":
    t = bg("slow", slow.encode())
    wait(lambda: metric('kindling_routerd_invocations_total{type="RequestResponse"}') == 2, "the slow invoke")
    check_429(lam.call(addr, "POST", path, b"info"), "ConcurrentInvocationLimitExceeded")
    t.join()
    assert res["slow"][0] == 200, res["slow"]
    assert lam.call(addr, "POST", path, b"info")[0] == 200
elif case == "workers":
    a = bg("a", slow.encode(), tail)
    wait(lambda: metric('kindling_routerd_invocations_total{type="RequestResponse"}') == 2, "the first on the worker")
    b = bg("b", b"info", tail)
    wait(lambda: metric("kindling_routerd_queued_invokes") == 1, "the second queued")
    check_429(lam.call(addr, "POST", path, b"info", headers=tail), "CallerRateLimitExceeded")
    a.join(); b.join()
    assert res["a"][0] == 200 and res["b"][0] == 200, res
elif case == "events":
    ev = {"X-Amz-Invocation-Type": "Event"}
    assert lam.call(addr, "POST", path, slow.encode(), headers=ev)[0] == 202
    check_429(lam.call(addr, "POST", path, b"info", headers=ev), "CallerRateLimitExceeded")
    wait(lambda: metric("kindling_routerd_pending_events") == 0, "the event to finish", 60)
    assert lam.call(addr, "POST", path, b"info", headers=ev)[0] == 202
print("ok")
PY
run_case() {  # CASE REASON ROUTERD-OPTION...
    case=$1 reason=$2
    shift 2
    start_routerd "$@"
    out=$(invoke heavy info) || fail "warm-up invoke: $out"
    assert_eq "$(echo "$out" | sed -n 1p)" 200 "$case: warm-up invoke"
    python3 "$T/calls.py" "$T" "$ADDR" "$SLOW" "$case" >"$T/$case.out" 2>&1 || fail "$case: $(cat "$T/$case.out")"
    assert_eq "$(router_metric "kindling_routerd_rejections_total{reason=\"$reason\"}")" 1 "$case: rejection counted"
    kill "$RPID"; wait "$RPID" 2>/dev/null
}
run_case tenant tenant_concurrency --tenant-concurrency 1
run_case workers worker_queue --workers 1 --max-queued-invokes 1
run_case events event_queue --max-pending-events 1
exit 0
