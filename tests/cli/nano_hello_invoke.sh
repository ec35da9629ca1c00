#!/bin/sh
# Boot the hello nano guest, answer 1000 invokes in a row on one vsock connection
# (every answer checked byte for byte), then EXIT 0 stops it and fc-launch exits 0.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/v.sock" >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/v.sock" 5 || fail "no vsock socket: $(cat "$T/err")"

python3 "$ROOT/tests/cli/nano_client.py" "$T/v.sock" hello-repeat 1000 exit 0 >"$T/out" 2>"$T/client" ||
    fail "client: $(cat "$T/client") / fc-launch: $(cat "$T/err")"
wait $vm
rc=$?
assert_eq "$rc" 0 "fc-launch exit status after EXIT 0"
assert_contains "$(cat "$T/console")" "nano: ready on vsock port 9000" "console"
