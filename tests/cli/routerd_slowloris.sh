#!/bin/sh
# routerd cuts off slowloris clients: 20 connections trickling a request's header a
# byte every 100 ms are closed when --request-timeout-ms (1.5 s) runs out, and
# routerd keeps answering other clients meanwhile.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

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
