# routerd holds a sandbox's lease between invokes (--lease-hold-ms): back-to-back
# invokes are served by the same sandbox without asking assignd (held_lease_hits),
# the sandbox shows busy in assignd while held and idle once the hold time passes
# with no invoke; a drain on assignd is honoured while routerd holds the lease under
# load: the held sandbox is given back and stopped within a second, and the next
# invoke restores a new one.
. "$(dirname "$0")/../lib.sh"
need_kvm
[ "${ROUTERD_FAKE_ASSIGND:-0}" != 1 ] || skip "needs the real assignd (drain, instance)"
. "$ROOT/tests/cli/routerd.lib"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 5, "concurrency": 4,
                "snapshot": {"dir": "$T/snap"}}]}
EOC
start_assignd
start_routerd --lease-hold-ms 300

# Back to back from one client: a client started per invoke (botocore ~0.3 s) could
# leave a gap longer than the hold.
python3 - "$T" "$ADDR" <<'PY' || fail "back-to-back invokes"
import sys
sys.path.insert(0, sys.argv[1]); import lam
for i in range(1, 6):
    s, h, b = lam.call(sys.argv[2], "POST", "/2015-03-31/functions/hello/invocations", b'{"n":%d}' % i)
    if s != 200 or "x-amz-function-error" in h:
        print("invoke %d: %d %s %s" % (i, s, h.get("x-amz-function-error", ""), b), file=sys.stderr); sys.exit(1)
PY
assert_eq "$(router_metric 'kindling_routerd_sandbox_starts_total{start="cold"}')" 1 "one restore"
assert_eq "$(router_metric kindling_routerd_held_lease_hits_total)" 4 "invokes 2-5 on the held lease"
assert_eq "$(sandboxes | python3 -c 'import json,sys; print([s["state"] for s in json.load(sys.stdin)])')" "['busy']" \
    "held sandbox is busy in assignd"
wait_all_idle 1  # given back after the hold time
FIRST=$(sandboxes | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

# Under load the lease is never idle for the hold time; a drain still gets through.
python3 - "$T" "$ADDR" <<'PY' &
import os, sys, time
sys.path.insert(0, sys.argv[1]); import lam
end = time.time() + 20
while time.time() < end and not os.path.exists(sys.argv[1] + "/stop"):
    s, h, b = lam.call(sys.argv[2], "POST", "/2015-03-31/functions/hello/invocations", b"{}")
    if s != 200 or "x-amz-function-error" in h:
        print("load invoke: %d %s %s" % (s, h.get("x-amz-function-error", ""), b)); sys.exit(1)
PY
LOAD=$!
sleep 0.5
curl -s --unix-socket "$T/assignd.sock" -d '{"function": "hello"}' http://a/v1/drain >/dev/null
i=0
until [ "$(sandboxes | python3 -c 'import json,sys,os; print(any(s["id"] == sys.argv[1] and s["state"] != "dead" for s in json.load(sys.stdin)))' "$FIRST")" = False ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "drained sandbox $FIRST still in use 1 s after the drain: $(sandboxes)"
    sleep 0.01
done
sleep 0.3
touch "$T/stop"; wait $LOAD || fail "an invoke failed around the drain"
NOW=$(sandboxes | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin) if s["state"] != "dead"))')
case " $NOW " in *" $FIRST "*) fail "drained $FIRST still listed live: $NOW";; esac
[ -n "$NOW" ] || fail "no sandbox restored after the drain"
exit 0
