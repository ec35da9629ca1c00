# External page-fault handler: fc-launch --mem-backend uffd:SOCKET hands the
# userfaultfd and the region layout to a handler written to Firecracker's
# documented message (tests/helpers/uffd_handler), which serves every page; the
# restored guest answers exactly like one restored by kindling's own handler.
. "$(dirname "$0")/../lib.sh"
need_kvm
H=$ROOT/$O/tests/helpers/uffd_handler
[ -x "$H" ] || fail "missing $H (make all builds it)"
C="python3 $ROOT/tests/cli/nano_client.py"

"$BIN/snap-make" --nano "$GUEST/state.elf" --mem 64 --out "$T/snap" >/dev/null || fail "snap-make"

"$H" "$T/h.sock" "$T/snap/mem" >"$T/h.out" 2>"$T/h.err" &
h=$!
PIDS="$PIDS $h"
wait_for_file "$T/h.sock" 5 || fail "handler did not listen: $(cat "$T/h.err")"
"$BIN/fc-launch" --restore "$T/snap" --mem-backend "uffd:$T/h.sock" --vsock "$T/v.sock" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
$C "$T/v.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/external" || fail "guest via external handler: $(cat "$T/err") $(cat "$T/h.err")"
wait $vm || fail "fc-launch exit status: $(cat "$T/err")"
wait $h || fail "handler exit status: $(cat "$T/h.err")"
grep -q "^served [1-9][0-9]* faults" "$T/h.out" || fail "handler served no faults: $(cat "$T/h.out")"

"$BIN/fc-launch" --restore "$T/snap" --vsock "$T/w.sock" >/dev/null 2>"$T/err2" &
vm=$!
$C "$T/w.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/internal" || fail "guest via internal handler: $(cat "$T/err2")"
wait $vm
python3 - "$T/external" "$T/internal" <<'PY' || fail "external and internal restores differ"
import json, sys
a = json.loads(open(sys.argv[1]).readline()[3:]); b = json.loads(open(sys.argv[2]).readline()[3:])
assert a["fingerprint"] == b["fingerprint"] and a["registers"]["mismatches"] == 0, (a, b)
PY

# A handler socket nobody listens on: a clear error, no VM.
"$BIN/fc-launch" --restore "$T/snap" --mem-backend "uffd:$T/nobody.sock" --vsock "$T/x.sock" 2>"$T/err3"; rc=$?
[ "$rc" != 0 ] || fail "restore with no handler succeeded"
grep -q "nobody.sock" "$T/err3" || fail "error does not name the handler socket: $(cat "$T/err3")"
exit 0
