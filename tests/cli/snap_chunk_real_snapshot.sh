# snap-chunk on real snap-make snapshots: a base + runtime + function layer stack
# round-trips byte-exact through the store (every file), the reassembled stack
# restores, and the restored guest answers like one restored from the originals.
. "$(dirname "$0")/../lib.sh"
need_kvm
SC=$BIN/snap-chunk
C="python3 $ROOT/tests/cli/nano_client.py"
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000

mkdir "$T/orig" "$T/back"
"$BIN/snap-make" --nano "$GUEST/state.elf" --mem 64 --stage 1 --out "$T/orig/base" >/dev/null || fail "base"
"$BIN/snap-make" --base "$T/orig/base" --stage 2 --out "$T/orig/rt" >/dev/null || fail "runtime"
"$BIN/snap-make" --base "$T/orig/rt" --out "$T/orig/fn" >/dev/null || fail "function"

b=$("$SC" put "$T/orig/base" --store "dir:$T/store" --layer base) || fail "put base"
r=$("$SC" put "$T/orig/rt" --store "dir:$T/store" --layer runtime --parent "$b") || fail "put runtime"
f=$("$SC" put "$T/orig/fn" --store "dir:$T/store" --layer function --parent "$r") || fail "put function"
"$SC" verify "$f" --store "dir:$T/store" >/dev/null || fail "verify"
"$SC" get "$b" --store "dir:$T/store" --out "$T/back/base" || fail "get base"
"$SC" get "$r" --store "dir:$T/store" --out "$T/back/rt" || fail "get runtime"
"$SC" get "$f" --store "dir:$T/store" --out "$T/back/fn" || fail "get function"
for l in base rt fn; do
    for file in $(cd "$T/orig/$l" && ls); do
        cmp "$T/orig/$l/$file" "$T/back/$l/$file" || fail "$l/$file differs after the round trip"
    done
done

for d in orig back; do
    "$BIN/fc-launch" --restore "$T/$d/fn" --vsock "$T/$d.sock" >/dev/null 2>"$T/$d.err" &
    pid=$!
    $C "$T/$d.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/$d.check" || fail "restore $d: $(cat "$T/$d.err")"
    wait $pid || fail "restore $d exit status"
done
python3 - "$T/orig.check" "$T/back.check" <<'PY' || fail "reassembled snapshot restores a different machine"
import json, sys
a = json.loads(open(sys.argv[1]).readline()[3:]); b = json.loads(open(sys.argv[2]).readline()[3:])
assert a["fingerprint"] == b["fingerprint"] and b["registers"]["mismatches"] == 0, (a, b)
PY
exit 0
