# Restore gives back the exact machine: the state guest's memory checksums,
# registers (incl. xmm/x87 held only in registers across the exit), counters and
# clock answer the same after restore as before the snapshot.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v curl >/dev/null || skip "curl is needed for the API"
C="python3 $ROOT/tests/cli/nano_client.py"

"$BIN/fc-launch" --kernel "$GUEST/state.elf" --mem 64 --vsock "$T/v.sock" --api-sock "$T/api.sock" \
    --boot-args quiet >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/api.sock" 5 || fail "no API socket"
$C "$T/v.sock" raw 'INVOKE 4\nbump' >/dev/null || fail "bump"
$C "$T/v.sock" raw 'INVOKE 5\ncheck' >"$T/before" || fail "check before"
api() { curl -s --unix-socket "$T/api.sock" -X "$1" "http://localhost$2" -d "$3" -w '%{http_code}'; }
assert_eq "$(api PATCH /vm '{"state":"Paused"}')" 204 "pause"
assert_eq "$(api PUT /snapshot/create "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"$T/snap\"}")" 204 "snapshot/create"
kill $vm; wait $vm 2>/dev/null

"$BIN/fc-launch" --restore "$T/snap" --vsock "$T/r.sock" >"$T/rconsole" 2>"$T/rerr" &
r=$!
PIDS="$PIDS $r"
$C "$T/r.sock" raw 'INVOKE 5\ncheck' exit 0 >"$T/after" || fail "check after restore: $(cat "$T/rerr")"
wait $r || fail "restored VM exit status: $(cat "$T/rerr")"

python3 - "$T/before" "$T/after" <<'PY' || fail "restored machine differs"
import json, sys
a = json.loads(open(sys.argv[1]).readline()[3:])
b = json.loads(open(sys.argv[2]).readline()[3:])
assert a["fingerprint"] == b["fingerprint"], (a, b)
assert a["memory"] == b["memory"], (a["memory"], b["memory"])
assert b["registers"]["mismatches"] == 0, b["registers"]
assert {k: v for k, v in a["registers"].items()} == {k: v for k, v in b["registers"].items()}
assert b["counters"]["bumps"] == a["counters"]["bumps"] == 1
assert b["counters"]["invokes"] == a["counters"]["invokes"] + 1
assert b["clock"]["backwards"] == 0, b["clock"]
PY
exit 0
