#!/bin/sh
# routerd and assignd serve a Linux function exactly as a nano one: the function's
# snapshot (snap-make --kernel, a shell custom runtime behind the agent's Runtime
# API) is restored by assignd on the first invoke (cold), later invokes reuse the
# sandbox (warm), a runtime's /error becomes X-Amz-Function-Error: Unhandled with
# its errorType, and a runtime crash is a Runtime.ExitError after which a fresh
# runtime answers.  On PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
[ -x "$BIN/assignd" ] || fail "assignd not built"
. "$ROOT/tests/cli/routerd.lib"
. "$ROOT/tests/cli/linux.lib"

shell_initrd "$T/root" "$(cat <<'EOS'
#!/bin/sh
API=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime
while :; do
    wget -q -S -O /tmp/event "$API/invocation/next" 2>/tmp/hdr || exit 3
    id=$(sed -n "s/^ *Lambda-Runtime-Aws-Request-Id: *//p" /tmp/hdr | tr -d "\r")
    case $(cat /tmp/event) in
    '"fail"') wget -q -O /dev/null --post-data '{"errorMessage":"it failed","errorType":"MyError"}' "$API/invocation/$id/error" ;;
    '"crash"') exit 1 ;;
    *) wget -q -O /dev/null --post-data "{\"event\":$(cat /tmp/event),\"function\":\"$AWS_LAMBDA_FUNCTION_NAME\"}" "$API/invocation/$id/response" ;;
    esac
done
EOS
)"
"$BIN/snap-make" --kernel "$kdir/bzImage" --initrd "$T/root.cpio" --mem 256 --timeout 120 \
    --boot-args "$LINUX_ARGS kindling.function=lx" \
    --out "$T/snap" >"$T/snap-make.out" 2>"$T/snap-make.err" || fail "snap-make: $(cat "$T/snap-make.err")"

cat >"$T/functions.json" <<EOC
{"functions": [{"name": "lx", "tenant": "111111111111", "memory": 256, "timeout": 30, "concurrency": 2,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
start_assignd
start_routerd

out=$(invoke lx '{"n":1}')
assert_eq "$(echo "$out" | sed -n 1,3p | tr '\n' ' ')" "200 - - " "first invoke: $out"
assert_eq "$(echo "$out" | sed -n 4p)" '{"event":{"n":1},"function":"lx"}' "first invoke's answer"
assert_eq "$(router_metric 'kindling_routerd_sandbox_starts_total{start="cold"}')" 1 "the first invoke restored a sandbox"
out=$(invoke lx '{"n":2}')
assert_eq "$(echo "$out" | sed -n 4p)" '{"event":{"n":2},"function":"lx"}' "second invoke: $out"
assert_eq "$(router_metric 'kindling_routerd_sandbox_starts_total{start="warm"}')" 1 "the second invoke reused it"

out=$(invoke lx '"fail"')
assert_eq "$(echo "$out" | sed -n 1,2p | tr '\n' ' ')" "200 Unhandled " "a function error: $out"
assert_contains "$(echo "$out" | sed -n 4p)" '"errorType":"MyError"' "the runtime's errorType"
out=$(invoke lx '"crash"')
assert_eq "$(echo "$out" | sed -n 1,2p | tr '\n' ' ')" "200 Unhandled " "a crash: $out"
assert_contains "$(echo "$out" | sed -n 4p)" 'Runtime.ExitError' "a crash's errorType"
out=$(invoke lx '{"n":3}')
assert_eq "$(echo "$out" | sed -n 4p)" '{"event":{"n":3},"function":"lx"}' "the invoke after the crash: $out"
live=$(sandboxes | python3 -c 'import json,sys; print(len([s for s in json.load(sys.stdin) if s["state"] != "dead"]))')
assert_eq "$live" 1 "one sandbox served every invoke: $(sandboxes)"
exit 0
