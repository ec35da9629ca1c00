# The Firecracker-compatible API: configure and start a nano guest the way a
# Firecracker script does, pause/resume it, and get clear errors for a taken
# socket path and invalid JSON.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v curl >/dev/null || skip "curl is needed to talk to the API socket"

API=$T/api.sock
api() {  # METHOD PATH [BODY] -> prints "STATUS BODY"
    curl -s --unix-socket "$API" -X "$1" "http://localhost$2" ${3:+-H 'Content-Type: application/json' -d "$3"} \
        -w ' %{http_code}'
}

"$BIN/fc-launch" --api-sock "$API" --id test-vm >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$API" 5 || fail "API socket not created: $(cat "$T/err")"

# A second VMM on the same path: exit 73, one line, the first one unharmed.
"$BIN/fc-launch" --api-sock "$API" 2>"$T/err2"; rc=$?
assert_eq "$rc" 73 "second fc-launch on a taken API socket"
assert_contains "$(cat "$T/err2")" "fc-launch: error: $API: API socket path in use"
[ -S "$API" ] || fail "the first VMM's API socket was removed"

out=$(api GET /)
assert_contains "$out" '"id":"test-vm"'
assert_contains "$out" '"state":"Not started"'

out=$(api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 32')
assert_contains "$out" '"fault_message"' "invalid JSON"
assert_contains "$out" " 400" "invalid JSON status"
out=$(api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 32, "bogus": 1}')
assert_contains "$out" " 400" "unknown field"

assert_eq "$(api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 32}')" " 204"
assert_eq "$(api PUT /boot-source "{\"kernel_image_path\": \"$GUEST/hello.elf\", \"boot_args\": \"quiet\"}")" " 204"
assert_eq "$(api PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$T/v.sock\"}")" " 204"
assert_eq "$(api PUT /actions '{"action_type": "InstanceStart"}')" " 204"
assert_contains "$(api GET /)" '"state":"Running"'

python3 "$ROOT/tests/cli/nano_client.py" "$T/v.sock" hello-repeat 3 >/dev/null || fail "invoke after InstanceStart"
assert_eq "$(api PATCH /vm '{"state": "Paused"}')" " 204"
assert_contains "$(api GET /)" '"state":"Paused"'
# A paused guest answers nothing until it is resumed.
python3 "$ROOT/tests/cli/nano_client.py" "$T/v.sock" hello-repeat 1 >/dev/null 2>&1 &
client=$!
sleep 0.5
kill -0 $client 2>/dev/null || fail "a paused VM answered an invoke"
assert_eq "$(api PATCH /vm '{"state": "Resumed"}')" " 204"
wait $client || fail "the invoke sent while paused was not answered after resume"
python3 "$ROOT/tests/cli/nano_client.py" "$T/v.sock" hello-repeat 3 exit 0 >/dev/null || fail "invoke after resume"
wait $vm; rc=$?
assert_eq "$rc" 0 "fc-launch exit status"
[ ! -e "$API" ] || fail "API socket left behind"
exit 0
