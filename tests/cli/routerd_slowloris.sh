#!/bin/sh
# routerd cuts off slowloris clients: 20 connections trickling a request's header a
# byte every 100 ms are closed when --request-timeout-ms (1.5 s) runs out, and
# routerd keeps answering other clients meanwhile.
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

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 3, "concurrency": 2,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
start_assignd
start_routerd --request-timeout-ms 1500
python3 - "$T" "$ADDR" >"$T/py.out" 2>&1 <<'PY' || fail "$(cat "$T/py.out")"
import socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import lam
addr = sys.argv[2]
host, port = addr.rsplit(":", 1)
header = ("POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: %s\r\n" % addr +
          "X-Pad: " + "z" * 200 + "\r\n\r\n").encode()
cut = [None] * 20
def slow(i):
    s = socket.create_connection((host, int(port)))
    t0 = time.monotonic()
    try:
        for b in header:
            s.send(bytes([b]))
            time.sleep(0.1)
        cut[i] = "sent the whole header"
    except OSError:
        cut[i] = time.monotonic() - t0
        return
    cut[i] = "not cut off"
threads = [threading.Thread(target=slow, args=(i,)) for i in range(20)]
for t in threads:
    t.start()
time.sleep(0.3)
for n in range(5):  # others are served meanwhile, promptly
    t0 = time.monotonic()
    s, h, b = lam.call(addr, "POST", "/2015-03-31/functions/hello/invocations", b'{"n":%d}' % n)
    assert s == 200 and '"request":"{\\"n\\":%d}"' % n in b, (s, b)
    assert time.monotonic() - t0 < 1.0 or n == 0, "invoke %d took %.2f s" % (n, time.monotonic() - t0)
for t in threads:
    t.join(30)
for i, c in enumerate(cut):
    assert isinstance(c, float) and 1.4 < c < 5, "slow client %d: %r" % (i, c)
print("ok")
PY
kill -0 "$RPID" || fail "routerd died"
out=$(invoke hello '{}')
assert_eq "$(echo "$out" | sed -n 1p)" 200 "invoke after the slowloris clients"
exit 0
