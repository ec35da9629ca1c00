#!/bin/sh
# Requests written back to back without waiting (200 of up to 3 KB each) are all
# answered in order, on two connections in turn; STATS reports the invokes.
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
