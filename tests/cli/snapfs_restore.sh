# The headline: VMs restore straight from a snapfs mount (uffd backend, copy-on-read).
# A base + function stack mounted side by side restores and answers `check` exactly
# like a restore from the original directories; a hello snapshot restored through the
# mount fetches only part of its memory (figure printed); two VMs restored from one
# uuid mount both answer, with different UUIDs.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_kvm
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
SC=$BIN/snap-chunk
C="python3 $ROOT/tests/cli/nano_client.py"

mkdir "$T/orig"
"$BIN/snap-make" --nano "$GUEST/state.elf" --mem 64 --stage 1 --out "$T/orig/base" >/dev/null || fail "base"
"$BIN/snap-make" --base "$T/orig/base" --out "$T/orig/fn" >/dev/null || fail "function"
b=$("$SC" put "$T/orig/base" --store "dir:$T/store" --layer base) || fail "put base"
f=$("$SC" put "$T/orig/fn" --store "dir:$T/store" --layer function --parent "$b") || fail "put function"
mount_snapfs "$T/stack" "base=$b" "fn=$f" --store "dir:$T/store"

for n in orig stack; do
    d=$T/$n/fn
    "$BIN/fc-launch" --restore "$d" --vsock "$T/$n.sock" >/dev/null 2>"$T/$n.err" &
    pid=$!
    $C "$T/$n.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/$n.check" || fail "restore from $d: $(cat "$T/$n.err")"
    wait $pid || fail "restore from $d: exit status: $(cat "$T/$n.err")"
done
python3 - "$T/orig.check" "$T/stack.check" <<'PY' || fail "the mount restores a different machine"
import json, sys
a = json.loads(open(sys.argv[1]).readline()[3:]); b = json.loads(open(sys.argv[2]).readline()[3:])
assert a["fingerprint"] == b["fingerprint"] and b["registers"]["mismatches"] == 0, (a, b)
PY

# Bytes fetched for a restore of a guest that touches little of its 64 MiB.
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 64 --out "$T/orig/hello" >/dev/null || fail "hello snapshot"
h=$("$SC" put "$T/orig/hello" --store "dir:$T/store" --layer function) || fail "put hello"
mount_snapfs "$T/hello" "$h" --store "dir:$T/store"
hpid=$SNAPFS_PID
"$BIN/fc-launch" --restore "$T/hello" --vsock "$T/h.sock" >/dev/null 2>"$T/h.err" &
pid=$!
$C "$T/h.sock" raw 'INVOKE 5\nworld' exit 0 >"$T/h.out" || fail "hello from the mount: $(cat "$T/h.err")"
wait $pid || fail "hello restore exit status: $(cat "$T/h.err")"
grep -q '^OK' "$T/h.out" || fail "hello answered: $(cat "$T/h.out")"
kill -TERM $hpid; wait $hpid
python3 - "$T/hello.out" "$T/orig/hello" <<'PY' || fail "bytes fetched"
import json, os, sys
j = json.load(open(sys.argv[1]))
d = sys.argv[2]
size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
used = sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in os.listdir(d))
print("snapfs: hello restore fetched %d chunks, %d stored bytes (%d plain) of a %d-byte snapshot (%d bytes allocated): %.1f%%"
      % (j["chunks_fetched"], j["fetched_bytes"], j["plain_bytes"], size, used, 100.0 * j["fetched_bytes"] / size), file=sys.stderr)
assert j["fetched_bytes"] < size / 4, j
PY

# Two VMs from one mount: both answer, different UUIDs.
"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem 16 --out "$T/orig/uuid" >/dev/null || fail "uuid snapshot"
u=$("$SC" put "$T/orig/uuid" --store "dir:$T/store" --layer function) || fail "put uuid"
mount_snapfs "$T/uuid" "$u" --store "dir:$T/store"
for n in a b; do
    "$BIN/fc-launch" --restore "$T/uuid" --vsock "$T/u$n.sock" >/dev/null 2>"$T/u$n.err" &
    PIDS="$PIDS $!"
done
ua=$($C "$T/ua.sock" raw 'INVOKE 0\n') || fail "VM a: $(cat "$T/ua.err")"
ub=$($C "$T/ub.sock" raw 'INVOKE 0\n') || fail "VM b: $(cat "$T/ub.err")"
case "$ua" in OK*-*) ;; *) fail "VM a answered: $ua" ;; esac
case "$ub" in OK*-*) ;; *) fail "VM b answered: $ub" ;; esac
[ "$ua" != "$ub" ] || fail "two VMs restored from one mount gave the same UUID: $ua"
exit 0
