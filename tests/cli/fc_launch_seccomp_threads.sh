# Every thread of a running fc-launch is under a seccomp filter (Seccomp: 2 in
# /proc/PID/task/TID/status), named after its kind (vcpu0, fc_api, uffd,
# fc_device), and the VM still does its work under them: invokes over vsock, the
# API, a restore served by the uffd handler.  --no-seccomp leaves every thread
# unfiltered.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"
command -v curl >/dev/null || skip "curl is needed to talk to the API socket"
C="python3 $ROOT/tests/cli/nano_client.py"

# threads PID: "NAME SECCOMP" per task, once every name in $2 is there (5 s).
threads() {
    local i=0 t out
    while :; do
        out=""
        for t in /proc/$1/task/*; do
            out="$out$(cat "$t/comm" 2>/dev/null) $(awk '/^Seccomp:/ { print $2 }' "$t/status" 2>/dev/null)
"
        done
        local missing=""
        for n in $2; do printf '%s' "$out" | grep -q "^$n " || missing="$missing $n"; done
        [ -z "$missing" ] && { printf '%s' "$out"; return 0; }
        i=$((i + 1)); [ $i -gt 500 ] && fail "threads$missing never appeared in fc-launch $1: $out"
        sleep 0.01
    done
}
# all_filtered PID NAMES MODE: every task's Seccomp field is MODE (2 filter, 0 none).
all_filtered() {
    list=$(threads "$1" "$2")
    bad=$(printf '%s' "$list" | awk -v m="$3" '$2 != m')
    [ -z "$bad" ] || fail "threads not in seccomp mode $3: $bad (all: $list)"
}

# Boot with the API socket: main thread, vCPU, API thread; the guest answers.
"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/v.sock" --api-sock "$T/api.sock" \
    >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/api.sock" 5 || fail "no API socket: $(cat "$T/err")"
all_filtered $vm "fc-launch vcpu0 fc_api" 2
state=$(curl -s --unix-socket "$T/api.sock" http://localhost/)
assert_contains "$state" '"state":"Running"' "GET / under the API thread's filter"
$C "$T/v.sock" hello-repeat 20 exit 0 >/dev/null 2>"$T/client" || fail "invokes: $(cat "$T/client") $(cat "$T/err")"
wait $vm; rc=$?
assert_eq "$rc" 0 "fc-launch exit status: $(cat "$T/err")"

# A restore: the uffd handler thread too, and the access log written at the end
# by the (filtered) main thread.
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null 2>"$T/err" || fail "snap-make: $(cat "$T/err")"
"$BIN/fc-launch" --restore "$T/snap" --vsock "$T/r.sock" --record-access "$T/access.log" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
wait_for_file "$T/r.sock" 5 || fail "no vsock socket: $(cat "$T/err")"
all_filtered $vm "fc-launch vcpu0 uffd" 2
$C "$T/r.sock" hello-repeat 5 exit 0 >/dev/null 2>"$T/client" || fail "invokes: $(cat "$T/client") $(cat "$T/err")"
wait $vm; rc=$?
assert_eq "$rc" 0 "restored fc-launch exit status: $(cat "$T/err")"
[ -s "$T/access.log" ] || fail "no access log written under the main thread's filter"

# --no-seccomp (debugging only): no thread is filtered.
"$BIN/fc-launch" --no-seccomp --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/n.sock" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
all_filtered $vm "fc-launch vcpu0" 0
$C "$T/n.sock" exit 0 >/dev/null 2>&1
wait $vm

# A Linux guest's device thread, when a guest kernel is built (the guest need not
# get far: the threads exist from the start).
kdir=$("$ROOT/guest/linux/build.sh" 2>/dev/null) || exit 0
head -c 4096 /dev/zero >"$T/initrd"
"$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/initrd" --boot-args "console=ttyS0 panic=-1" --mem 64 \
    --vsock "$T/l.sock" >/dev/null 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"
all_filtered $vm "fc-launch vcpu0 fc_device" 2
stop_server $vm
exit 0
