# 20 clones restored concurrently from one snapshot of the uuid function all
# answer; their UUIDs are all distinct (fresh generation id + entropy before the
# vCPUs resume); under uffd their guest memory is private anonymous, nothing
# file-backed or shared.
. "$(dirname "$0")/../lib.sh"
need_kvm
C="python3 $ROOT/tests/cli/nano_client.py"
N=20

"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
i=0
while [ $i -lt $N ]; do
    "$BIN/fc-launch" --restore "$T/snap" --vsock "$T/c$i.sock" >/dev/null 2>"$T/c$i.err" &
    echo $! >"$T/c$i.pid"
    PIDS="$PIDS $!"
    i=$((i + 1))
done
printf '' >"$T/empty"
i=0
while [ $i -lt $N ]; do
    $C "$T/c$i.sock" invoke "$T/empty" >"$T/c$i.uuid" || fail "clone $i did not answer: $(cat "$T/c$i.err")"
    i=$((i + 1))
done

# Memory of every clone: the 32 MiB guest mapping is anonymous and private.
i=0
while [ $i -lt $N ]; do
    python3 "$ROOT/tests/cli/guest_ram_private.py" "$(cat "$T/c$i.pid")" $((32 * 1024)) ||
        fail "clone $i: guest memory not private anonymous"
    i=$((i + 1))
done

i=0
while [ $i -lt $N ]; do
    $C "$T/c$i.sock" exit 0 >/dev/null || fail "clone $i exit"
    i=$((i + 1))
done
for p in $(cat "$T"/c*.pid); do wait "$p" || fail "a clone exited non-zero"; done

python3 - "$T" $N <<'PY' || fail "UUIDs are not all distinct valid v4 UUIDs"
import re, sys
t, n = sys.argv[1], int(sys.argv[2])
ids = []
for i in range(n):
    line = open(f"{t}/c{i}.uuid").read().strip()
    kind, u = line.split(" ", 1)
    assert kind == "OK" and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u), line
    ids.append(u)
assert len(set(ids)) == n, ids
PY
exit 0
