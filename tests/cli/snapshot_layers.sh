# Diff layers: base (stage 1) + runtime (stage 2) + function (serving) restored as a
# stack answer exactly as a full snapshot of the same function; each diff layer
# holds only a fraction of memory.
. "$(dirname "$0")/../lib.sh"
need_kvm
C="python3 $ROOT/tests/cli/nano_client.py"
SM=$BIN/snap-make

"$SM" --nano "$GUEST/state.elf" --mem 64 --stage 1 --out "$T/base" --json >"$T/base.json" || fail "base layer"
"$SM" --base "$T/base" --stage 2 --out "$T/rt" --json >"$T/rt.json" || fail "runtime layer"
"$SM" --base "$T/rt" --out "$T/fn" --json >"$T/fn.json" || fail "function layer"
"$SM" --nano "$GUEST/state.elf" --mem 64 --out "$T/full" --json >"$T/full.json" || fail "full snapshot"
[ -e "$T/rt/mem.bitmap" ] && [ -e "$T/fn/mem.bitmap" ] || fail "diff layers lack mem.bitmap"

for s in fn full; do
    "$BIN/fc-launch" --restore "$T/$s" --vsock "$T/$s.sock" >/dev/null 2>"$T/$s.err" &
    pid=$!
    $C "$T/$s.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/$s.check" || fail "restore $s: $(cat "$T/$s.err")"
    wait $pid || fail "restored $s exit status: $(cat "$T/$s.err")"
done
python3 - "$T" <<'PY' || fail "layer stack differs from the full snapshot"
import json, sys
t = sys.argv[1]
a = json.loads(open(t + "/fn.check").readline()[3:])
b = json.loads(open(t + "/full.check").readline()[3:])
assert a["fingerprint"] == b["fingerprint"] and a["memory"] == b["memory"], (a, b)
assert a["registers"]["mismatches"] == 0 and b["registers"]["mismatches"] == 0
fn = json.load(open(t + "/fn.json")); full = json.load(open(t + "/full.json"))
assert fn["kind"] == "diff" and full["kind"] == "full"
# The function layer only holds what its init wrote after the runtime layer.
assert fn["mem_data_bytes"] < full["mem_data_bytes"] / 10, (fn, full)
PY

# A missing layer: restoring the top of a stack whose parent is gone fails clearly.
mv "$T/rt" "$T/rt.gone"
"$BIN/fc-launch" --restore "$T/fn" --vsock "$T/x.sock" 2>"$T/err"; rc=$?
assert_eq "$rc" 65 "restore with a missing parent layer"
grep -q "fc-launch: error: .*rt" "$T/err" || fail "error does not name the missing layer: $(cat "$T/err")"
exit 0
