#!/bin/sh
# routerd: a guest ERR answer is a function error: 200 with X-Amz-Function-Error:
# Unhandled and a Lambda error JSON ({"errorMessage", "errorType"}), counted in
# /metrics; the sandbox goes back to idle and the next invoke is answered warm.
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
