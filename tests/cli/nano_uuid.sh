#!/bin/sh
# The uuid nano guest answers RFC 4122 version-4 UUIDs: 1000 invokes on one
# connection and one invoke asking for 1000 more give 2000 well-formed, distinct
# UUIDs; a second VM's are different again; bad counts are refused.  The native
# build answers the same format.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

for n in a b; do
    "$BIN/fc-launch" --kernel "$GUEST/uuid.elf" --mem 16 --vsock "$T/$n.sock" >"$T/$n.console" 2>"$T/$n.err" &
    PIDS="$PIDS $!"
    eval "vm_$n=$!"
done

python3 - "$ROOT/tests/cli" "$T" >"$T/out" 2>&1 <<'PY' || fail "$(cat "$T/out") / a: $(cat "$T/a.err")"
import json, re, sys
sys.path.insert(0, sys.argv[1])
from nano_client import Conn
T = sys.argv[2]
V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

def call(c, req):
    c.send_invoke(req)
    return c.answer()

def uuids(c, req, n):
    kind, body = call(c, req)
    lines = body.decode().split("\n")
    if kind != "OK" or len(lines) != n or not all(V4.match(u) for u in lines):
        raise SystemExit("%r answered %s %r" % (req, kind, body[:200]))
    return lines

seen = {}
for name in ("a", "b"):
    c = Conn("%s/%s.sock" % (T, name), 9000, 10.0)
    mine = [uuids(c, b"", 1)[0] for _ in range(1000)] + uuids(c, b"1000", 1000) + uuids(c, b"2\n", 2)
    if len(set(mine)) != len(mine):
        raise SystemExit("VM %s repeated a UUID in %d" % (name, len(mine)))
    for req in (b"0", b"1001", b"x", b"-1", b" 1"):
        kind, body = call(c, req)
        if kind != "ERR" or b"count from 1 to 1000" not in body:
            raise SystemExit("%r answered %s %r" % (req, kind, body))
    c.s.sendall(b"STATS\n")
    stats = json.loads(c.answer()[1])
    if stats["reseeds"] != 1:  # seeded once at boot; no restore, so no reseed
        raise SystemExit("stats: %r" % stats)
    seen[name] = set(mine)
    c.s.sendall(b"EXIT 0\n")
    c.answer()
if seen["a"] & seen["b"]:
    raise SystemExit("two VMs answered the same UUID")
PY
for n in a b; do
    eval "wait \$vm_$n" || fail "fc-launch $n exited $?: $(cat "$T/$n.err")"
done

native=$ROOT/$O/guest/native/uuid
printf 3 | "$native" >"$T/native" || fail "native uuid exited $?"
n=$(grep -cE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' "$T/native")
assert_eq "$n" 3 "well-formed UUIDs from the native build"
