#!/bin/sh
# routerd: the function's concurrency limit gives 429 TooManyRequestsException, not a
# failure: with concurrency 1 and one slow invoke running, a second invoke is refused
# (after --acquire-wait-ms) while the first one succeeds; afterwards invokes succeed.
. "$(dirname "$0")/../lib.sh"
need_kvm
python3 -c 'import botocore' 2>/dev/null || skip "python3 with botocore is needed to sign requests"
[ -x "$BIN/routerd" ] || skip "routerd not built"

# lam.py ADDR METHOD PATH [BODY]: one SigV4-signed request as alice; prints the status,
# X-Amz-Function-Error, X-Amzn-ErrorType (- when absent) and the body, one per line.
# call(..., unsigned={name: value}) adds header fields after signing.
cat >"$T/lam.py" <<'PY'
import http.client, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
def call(addr, method, path, body=b"", headers=None, timeout=60, unsigned=None):
    r = AWSRequest(method=method, url="http://%s%s" % (addr, path), data=body, headers=headers or {})
    SigV4Auth(Credentials("AKIDALICE0000000", "alice-secret"), "lambda", "us-east-1").add_auth(r)
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    c.request(method, path, body=body, headers=dict(r.headers, **(unsigned or {})))
    resp = c.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode(errors="replace")
def show(res):
    s, h, b = res
    print("%d\n%s\n%s\n%s" % (s, h.get("x-amz-function-error", "-"), h.get("x-amzn-errortype", "-"), b))
if __name__ == "__main__":
    show(call(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode() if len(sys.argv) > 4 else b""))
PY
printf 'AKIDALICE0000000 alice-secret 111111111111\n' >"$T/creds"

# The real assignd when built (ROUTERD_FAKE_ASSIGND=1: tests/helpers/fake_assignd.py).
start_assignd() {
    if [ "${ROUTERD_FAKE_ASSIGND:-0}" != 1 ] && [ -x "$BIN/assignd" ]; then
        bg "$BIN/assignd" --socket "$T/assignd.sock" --journal "file:$T/journal" --run-dir "$T/run" >"$T/assignd.out" 2>"$T/assignd.err"
    else
        mkdir -p "$T/run"
        bg python3 "$ROOT/tests/helpers/fake_assignd.py" "$T/assignd.sock" "$T/run" "$BIN/fc-launch" >"$T/assignd.out" 2>"$T/assignd.err"
    fi
    wait_for_file "$T/assignd.sock" 10 || fail "assignd did not start: $(cat "$T/assignd.err")"
}
# start_routerd [OPTION...]: sets ADDR and RPID.
start_routerd() {
    bg "$BIN/routerd" -v --listen 127.0.0.1:0 --functions "$T/functions.json" --credentials "$T/creds" \
        --assignd "$T/assignd.sock" "$@" >"$T/routerd.out" 2>"$T/routerd.err"
    RPID=$!
    i=0; while [ ! -s "$T/routerd.out" ]; do i=$((i+1)); [ $i -gt 500 ] && fail "routerd: $(cat "$T/routerd.err")"; sleep 0.01; done
    ADDR=$(head -1 "$T/routerd.out")
}
invoke() { python3 "$T/lam.py" "$ADDR" POST "/2015-03-31/functions/$1/invocations" "$2"; }
sandboxes() { curl -s --unix-socket "$T/assignd.sock" http://assignd/v1/sandboxes; }

# init-heavy with a 64 MiB table: "chase 0 16777216" is 16M cache misses, seconds long.
"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 96 --boot-args table=64 --out "$T/snap" >"$T/snap.log" 2>&1 ||
    fail "snap-make: $(cat "$T/snap.log")"
SLOW="chase 0 16777216"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "heavy", "tenant": "111111111111", "memory": 96, "timeout": 60, "concurrency": 1,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
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
