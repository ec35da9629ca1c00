# REAP: a restore with --record-access writes the order the guest touched its
# pages; a restore with --prefetch of that log installs them before the vCPUs run,
# so the same invoke takes (almost) no page faults and answers the same.
. "$(dirname "$0")/../lib.sh"
need_kvm
C="python3 $ROOT/tests/cli/nano_client.py"
"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 64 --boot-args "table=8 touch=50" --out "$T/snap" >/dev/null ||
    fail "snap-make"
printf 'walk' >"$T/walk"

run() {  # NAME FLAGS...: restore, one walk invoke, EXIT; JSON in $T/NAME.json
    name=$1; shift
    "$BIN/fc-launch" --restore "$T/snap" --vsock "$T/$name.sock" --json "$@" >"$T/$name.json" 2>"$T/$name.err" &
    pid=$!
    $C "$T/$name.sock" invoke "$T/walk" exit 0 >"$T/$name.answer" || fail "$name: $(cat "$T/$name.err")"
    wait $pid || fail "$name: exit status: $(cat "$T/$name.err")"
}
run record --record-access "$T/access.log"
[ -s "$T/access.log" ] || fail "no access log written"
run replay --prefetch "$T/access.log"
cmp -s "$T/record.answer" "$T/replay.answer" || fail "answers differ: $(cat "$T/record.answer") / $(cat "$T/replay.answer")"
python3 - "$T/record.json" "$T/replay.json" <<'PY' || fail "prefetch did not remove the faults"
import json, sys
a = json.load(open(sys.argv[1]))["memory"]; b = json.load(open(sys.argv[2]))["memory"]
assert a["faults"] > 500 and a["prefetched_pages"] == 0, a
assert b["prefetched_pages"] >= a["faults"] * 0.9, (a, b)
assert b["faults"] < a["faults"] / 10, (a, b)
PY
# A log for another machine size is refused by name.
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/other" >/dev/null
"$BIN/fc-launch" --restore "$T/other" --vsock "$T/o.sock" --prefetch "$T/access.log" 2>"$T/err"; rc=$?
assert_eq "$rc" 65 "prefetch log of another machine"
grep -q "access.log" "$T/err" || fail "error does not name the log: $(cat "$T/err")"
exit 0
