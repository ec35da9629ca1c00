#!/bin/sh
# Requests written back to back without waiting (200 of up to 3 KB each) are all
# answered in order, on two connections in turn; STATS reports the invokes.  Then
# the same with a 4 KiB receive window (buf=4096), so the burst moves through
# staging and credit updates.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/v.sock" >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/v.sock" 5 || fail "no vsock socket: $(cat "$T/err")"
C="python3 $ROOT/tests/cli/nano_client.py $T/v.sock"
$C hello-pipeline 200 >"$T/o1" 2>&1 || fail "first connection: $(cat "$T/o1")"
out=$($C hello-pipeline 200 stats exit 0 2>&1) || fail "second connection: $out"
assert_contains "$out" '"invokes":400,' "STATS"
wait $vm || fail "fc-launch exited $?: $(cat "$T/err")"

"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/w.sock" --boot-args "quiet buf=4096" \
    >"$T/console2" 2>"$T/err2" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/w.sock" 5 || fail "no vsock socket: $(cat "$T/err2")"
out=$(python3 "$ROOT/tests/cli/nano_client.py" "$T/w.sock" hello-pipeline 300 hello-repeat 3 exit 0 2>&1) ||
    fail "small window: $out"
wait $vm || fail "fc-launch (buf=4096) exited $?: $(cat "$T/err2")"
