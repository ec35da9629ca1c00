#!/bin/sh
# A Linux guest with the kindling agent as PID 1 runs an unmodified custom runtime
# (`bootstrap`, here a shell script using busybox wget) through the Lambda Runtime API,
# and answers the host over vsock with the nano invoke protocol: a response, a
# function error, a crash (then a fresh runtime for the next invoke), an oversize
# answer and a timeout, each mapped to Lambda's error shapes; and an init error.
# On PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
. "$ROOT/tests/cli/linux.lib"

# make_root DIR BOOTSTRAP_TEXT: the initramfs DIR.cpio, with a file one byte over
# kindling.max_response for the oversize answer.
make_root() {
    mkdir -p "$1/var/task"
    head -c 100001 /dev/zero | tr '\0' a >"$1/var/task/big"
    shell_initrd "$1" "$2"
}

boot() {  # NAME: start the VM from $T/NAME.cpio with vsock $T/NAME.sock
    bg "$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/$1.cpio" --mem 256 --vsock "$T/$1.sock" \
        --boot-args "$LINUX_ARGS kindling.function=$1 kindling.timeout_ms=5000 kindling.max_response=100000" \
        >"$T/$1.console" 2>"$T/$1.err"
    wait_for_file "$T/$1.sock" 60 || fail "$1: no vsock socket; console: $(tail -n 5 "$T/$1.console")"
}

client() { sock=$1; shift; python3 "$ROOT/tests/cli/nano_client.py" "$sock" --timeout=60 "$@"; }

make_root "$T/fn" '#!/bin/sh
API=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime
while :; do
    wget -q -S -O /tmp/event "$API/invocation/next" 2>/tmp/hdr || exit 3
    id=$(sed -n "s/^ *Lambda-Runtime-Aws-Request-Id: *//p" /tmp/hdr | tr -d "\r")
    fn=$(sed -n "s/^ *Lambda-Runtime-Invoked-Function-Arn: *//p" /tmp/hdr | tr -d "\r")
    ev=$(cat /tmp/event)
    case $ev in
    crash) exit 1 ;;
    sleep) sleep 30 ;;
    fail) wget -q -O /dev/null --post-data "{\"errorMessage\":\"it failed\",\"errorType\":\"MyError\"}" "$API/invocation/$id/error" ;;
    big) wget -q -O /dev/null --post-file /var/task/big "$API/invocation/$id/response" ;;
    *) wget -q -O /dev/null --post-data "{\"echo\":\"$ev\",\"arn\":\"$fn\",\"handler\":\"$_HANDLER\"}" "$API/invocation/$id/response" ;;
    esac
done'
boot fn
for ev in hello crash again fail big sleep after; do printf '%s' "$ev" >"$T/$ev.in"; done

out=$(client "$T/fn.sock" invoke "$T/hello.in") || fail "invoke hello: $out"
assert_eq "$out" 'OK {"echo":"hello","arn":"arn:aws:lambda:us-east-1:000000000000:function:fn","handler":""}' "response"

out=$(client "$T/fn.sock" invoke "$T/crash.in") || fail "invoke crash: $out"
assert_contains "$out" 'ERR ' "a crash is a function error"
assert_contains "$out" '"errorType":"Runtime.ExitError"' "crash error type"
assert_contains "$out" 'Runtime exited with error: exit status 1' "crash message"
out=$(client "$T/fn.sock" invoke "$T/again.in") || fail "invoke after a crash: $out"
assert_contains "$out" 'OK {"echo":"again"' "the runtime starts again after a crash"

out=$(client "$T/fn.sock" invoke "$T/fail.in") || fail "invoke fail: $out"
assert_eq "$out" 'ERR {"errorMessage":"it failed","errorType":"MyError"}' "a runtime-reported error passes through"

out=$(client "$T/fn.sock" invoke "$T/big.in") || fail "invoke big: $out"
assert_contains "$out" '"errorType":"Function.ResponseSizeTooLarge"' "oversize answer"
assert_contains "$out" 'Response payload size (100001 bytes) exceeded maximum allowed payload size (100000 bytes).' "oversize message"

out=$(client "$T/fn.sock" invoke "$T/sleep.in") || fail "invoke sleep: $out"
assert_contains "$out" '"errorType":"Sandbox.Timedout"' "timeout error type"
assert_contains "$out" 'Task timed out after 5.00 seconds' "timeout message"
out=$(client "$T/fn.sock" invoke "$T/after.in") || fail "invoke after a timeout: $out"
assert_contains "$out" 'OK {"echo":"after"' "a fresh runtime after a timeout"

stats=$(client "$T/fn.sock" stats) || fail "stats: $stats"
assert_contains "$stats" '"invokes":7' "invoke count"
assert_contains "$stats" '"errors":4' "error count"
assert_contains "$stats" '"runtime_starts":3' "runtime started at boot, after the crash and after the timeout"
client "$T/fn.sock" exit 0 >/dev/null || fail "EXIT"

# A runtime that cannot initialise reports /init/error: every invoke answers with it.
make_root "$T/initfail" '#!/bin/sh
wget -q -O /dev/null --header "Lambda-Runtime-Function-Error-Type: Runtime.BadConfig" \
    --post-data "{\"errorMessage\":\"no config\"}" "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"
sleep 30'
boot initfail
out=$(client "$T/initfail.sock" invoke "$T/hello.in") || fail "invoke initfail: $out"
assert_eq "$out" 'ERR {"errorMessage":"no config","errorType":"Runtime.BadConfig"}' "init error"
client "$T/initfail.sock" exit 0 >/dev/null || fail "EXIT"
echo "agent: response, crash, error, oversize, timeout and init error all mapped"
