#!/bin/sh
# routerd reads no body it will refuse, and one client cannot hold every connection:
# a request of an unknown access key (403 UnrecognizedClientException), or whose
# Content-Length is past Lambda's limit (413 RequestTooLargeException: 6291456
# bytes, 262144 for Event), is answered as soon as its header has arrived, with
# none of the body sent; past --max-connections-per-client (3) a client's next
# connection is closed at once while another client address is still served.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 3, "concurrency": 2,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
start_assignd
start_routerd --max-connections-per-client 3
python3 - "$T" "$ADDR" >"$T/py.out" 2>&1 <<'PY' || fail "$(cat "$T/py.out")"
import socket, sys, time
sys.path.insert(0, sys.argv[1])
import lam
addr = sys.argv[2]
host, port = addr.rsplit(":", 1)
path = "/2015-03-31/functions/hello/invocations"

def head_only(key, length, extra=""):
    """Sends only a request's header; returns (status, error type, seconds) of the answer."""
    s = socket.create_connection((host, int(port)))
    s.settimeout(5)
    auth = ("AWS4-HMAC-SHA256 Credential=%s/20261203/us-east-1/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (key, "0" * 64))
    t0 = time.monotonic()
    s.sendall(("POST %s HTTP/1.1\r\nHost: %s\r\nX-Amz-Date: 20261203T120000Z\r\nAuthorization: %s\r\n"
               "Content-Length: %d\r\n%s\r\n" % (path, addr, auth, length, extra)).encode())
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None, None, time.monotonic() - t0
    head = data.split(b"\r\n\r\n")[0].decode()
    status = int(head.split()[1])
    etype = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("x-amzn-errortype:")]
    return status, (etype or [None])[0], time.monotonic() - t0

st, et, dt = head_only("AKIDNOBODY000000", 5 << 20)
assert (st, et) == (403, "UnrecognizedClientException") and dt < 2, ("unknown key", st, et, dt)
st, et, dt = head_only("AKIDALICE0000000", 6291457)
assert (st, et) == (413, "RequestTooLargeException") and dt < 2, ("7 MB", st, et, dt)
st, et, dt = head_only("AKIDALICE0000000", 262145, "X-Amz-Invocation-Type: Event\r\n")
assert (st, et) == (413, "RequestTooLargeException") and dt < 2, ("Event 256 KiB", st, et, dt)

# Per-client connection cap: three held connections, the fourth is closed at once.
held = [socket.create_connection((host, int(port))) for _ in range(3)]
time.sleep(0.2)
extra = socket.create_connection((host, int(port)))
extra.settimeout(3)
try:
    closed = extra.recv(1) == b""
except ConnectionResetError:
    closed = True
except socket.timeout:
    closed = False
assert closed, "a 4th connection from one address was kept"
# Another client address is served meanwhile.
other = socket.socket()
other.bind(("127.0.0.2", 0))
other.connect((host, int(port)))
other.settimeout(5)
other.sendall(("GET /metrics HTTP/1.1\r\nHost: %s\r\n\r\n" % addr).encode())
assert other.recv(64).startswith(b"HTTP/1.1 200"), "another address was not served"
for s in held:
    s.close()
# Then the first address is served again.
for i in range(50):
    try:
        s, h, b = lam.call(addr, "POST", path, b'{"n":1}', timeout=5)
        break
    except OSError:
        time.sleep(0.1)
assert s == 200, (s, b)
print("ok")
PY
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_errors_total{kind="auth"} 1' "the unknown key counted"
assert_contains "$m" 'kindling_routerd_errors_total{kind="too_large"} 2' "the oversize requests counted"
grep -q "connections open from 127.0.0.1, refusing one" "$T/routerd.err" || fail "no refusal line: $(tail -5 "$T/routerd.err")"
exit 0
