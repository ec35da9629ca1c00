#!/bin/sh
# A malformed request line gets ERR with a message and its connection is closed;
# the guest keeps serving new connections.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/v.sock" >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/v.sock" 5 || fail "no vsock socket: $(cat "$T/err")"
C="python3 $ROOT/tests/cli/nano_client.py $T/v.sock"

out=$($C raw 'HELLO there\n' expect-eof 2>&1) || fail "client: $out"
assert_contains "$out" "ERR bad request line 'HELLO there'" "unknown verb"
out=$($C raw 'INVOKE 12x\n' expect-eof 2>&1) || fail "client: $out"
assert_contains "$out" "ERR bad request line 'INVOKE 12x'" "bad length"
out=$($C raw 'INVOKE 99999999999\n' expect-eof 2>&1) || fail "client: $out"
assert_contains "$out" "ERR request of 99999999999 bytes is larger than the limit" "too large"
long=$(printf '%0300d' 0)
out=$($C raw "INVOKE $long\\n" expect-eof 2>&1) || fail "client: $out"
assert_contains "$out" "ERR request line longer than" "long line"

# Still serving, and blank lines between requests are fine.
out=$($C raw '\nINVOKE 2\nhi\n' hello-repeat 3 exit 0 2>&1) || fail "client: $out"
assert_contains "$out" 'OK {"greeting":"hello from kindling nano","request":"hi"}' "after errors"
wait $vm || fail "fc-launch exited $?: $(cat "$T/err")"
