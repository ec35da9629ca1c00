# A function at its concurrency limit whose sandbox routerd holds: later invokes wait
# on routerd's I/O thread for that sandbox (no worker) and are served one after the
# other when it comes back; one that waits past --acquire-wait-ms gets 429
# TooManyRequestsException; a sandbox that dies under queued invokes hands them to the
# worker path, which restores a new one; a timeout there destroys the sandbox.
# init-heavy's "chase" makes each invoke slow.
. "$(dirname "$0")/../lib.sh"
need_kvm
[ "${ROUTERD_FAKE_ASSIGND:-0}" != 1 ] || skip "needs the real assignd"
. "$ROOT/tests/cli/routerd.lib"
# chase 0 N follows the permutation N steps (at most 8388608 here), one cache miss
# each in a 32 MiB table, even warm: 4M steps ~0.5 s here, 1M ~0.13 s.
"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 64 --boot-args "table=32 rounds=1" --out "$T/heavy" \
    >"$T/snap.log" 2>&1 || fail "snap-make init-heavy: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "slow", "tenant": "111111111111", "memory": 64, "timeout": 30, "concurrency": 1,
                "snapshot": {"dir": "$T/heavy"}},
               {"name": "brief", "tenant": "111111111111", "memory": 64, "timeout": 0.2, "concurrency": 1,
                "snapshot": {"dir": "$T/heavy"}}]}
EOC
start_assignd
# together PAYLOAD...: one invoke per payload, answered concurrently, each sent only
# once routerd has taken the one before (its sync invocation count went up), so they
# arrive in order; prints "i status errortype body" per invoke.
together() {
    python3 - "$T" "$ADDR" "$@" <<'PY'
import sys, threading, time, urllib.request
sys.path.insert(0, sys.argv[1])
import lam
addr, payloads = sys.argv[2], sys.argv[3:]
def taken():
    m = urllib.request.urlopen("http://%s/metrics" % addr).read().decode()
    return int(next(l.split()[1] for l in m.splitlines()
                    if l.startswith('kindling_routerd_invocations_total{type="RequestResponse"}')))
res = [None] * len(payloads)
def one(i):
    s, h, b = lam.call(addr, "POST", "/2015-03-31/functions/slow/invocations", payloads[i].encode(), timeout=30)
    res[i] = "%d %d %s %s" % (i, s, h.get("x-amzn-errortype", "-"), b.replace("\n", " "))
ts = []
for i in range(len(payloads)):
    before = taken()
    ts.append(threading.Thread(target=one, args=(i,))); ts[-1].start()
    end = time.time() + 5
    while taken() == before and time.time() < end: time.sleep(0.002)
for t in ts: t.join()
print("\n".join(res))
PY
}
status_of() { echo "$1" | awk -v i="$2" '$1 == i { print $2 }'; }

start_routerd --acquire-wait-ms 5000 --lease-hold-ms 2000
out=$(invoke slow "chase 0 10")
assert_eq "$(echo "$out" | head -1)" 200 "warm-up invoke"
# The lease is held: the first runs on it, the other two queue behind it and get it
# in turn.
out=$(together "chase 0 1000000" "chase 1 1000000" "chase 2 1000000")
for i in 0 1 2; do
    assert_eq "$(status_of "$out" $i)" 200 "queued invoke $i: $out"
    echo "$out" | grep -q "^$i 200 - {\"start\":$i," || fail "queued invoke $i: wrong answer: $out"
done
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="cold"} 1' "one sandbox for all four"
assert_contains "$m" 'kindling_routerd_held_lease_hits_total 3' "three on the held lease"
assert_contains "$m" 'kindling_routerd_invocations_total{type="RequestResponse"} 4' "every invoke counted once"
kill -TERM $RPID; wait $RPID 2>/dev/null

# A short wait: the ones queued behind a slow invoke are throttled, not failed.
start_routerd --acquire-wait-ms 100 --lease-hold-ms 2000
invoke slow "chase 0 10" >/dev/null
out=$(together "chase 0 4194304" "chase 1 10" "chase 2 10")
assert_eq "$(status_of "$out" 0)" 200 "the running invoke: $out"
for i in 1 2; do
    assert_eq "$(status_of "$out" $i)" 429 "queued invoke $i past the wait: $out"
    echo "$out" | grep -q "^$i 429 TooManyRequestsException " || fail "queued invoke $i: not a throttle: $out"
done
assert_eq "$(router_metric kindling_routerd_throttles_total)" 2 "throttles counted"

# The sandbox dies under a running invoke with one queued: the running one gets a
# function error, the queued one goes to a worker and gets a new sandbox.
kill -TERM $RPID; wait $RPID 2>/dev/null
start_routerd --acquire-wait-ms 5000 --lease-hold-ms 2000
invoke slow "chase 0 10" >/dev/null
PID=$(sandboxes | python3 -c 'import json,sys; print([s["pid"] for s in json.load(sys.stdin) if s["state"] != "dead"][0])')
# Killed once routerd has taken the slow invoke and the guest is into it.
( wait_taken 2 && sleep 0.1 && kill -9 "$PID" ) &
KILLER=$!
out=$(together "chase 0 4194304" "chase 1 10")
wait $KILLER || fail "routerd never took the slow invoke"
assert_eq "$(status_of "$out" 0)" 200 "the invoke on the killed sandbox answers 200: $out"
echo "$out" | grep -q "^0 200 - .*Runtime.ExitError" || fail "the invoke on the killed sandbox: not a function error: $out"
assert_eq "$(status_of "$out" 1)" 200 "the queued invoke: $out"
echo "$out" | grep -q '^1 200 - {"start":1,' || fail "the queued invoke: wrong answer: $out"

# A timeout on the I/O thread: the held sandbox is destroyed, never reused; the next
# invoke restores a new one.
invoke brief "chase 0 10" >/dev/null
BRIEF=$(sandboxes | python3 -c 'import json,sys; print([s["id"] for s in json.load(sys.stdin) if s["function"] == "brief" and s["state"] != "dead"][0])')
out=$(invoke brief "chase 0 4194304")
assert_eq "$(echo "$out" | sed -n 1,2p | tr '\n' ' ')" "200 Unhandled " "timed-out invoke: $out"
assert_contains "$out" "Task timed out after 0.20 seconds" "timeout message"
out=$(invoke brief "chase 1 10")
assert_eq "$(echo "$out" | head -1)" 200 "invoke after the timeout: $out"
assert_contains "$out" '{"start":1,' "invoke after the timeout answers"
sandboxes | python3 -c '
import json, sys
live = [s["id"] for s in json.load(sys.stdin) if s["function"] == "brief" and s["state"] != "dead"]
sys.exit(0 if len(live) == 1 and live[0] != sys.argv[1] else 1)' "$BRIEF" || fail "timed-out sandbox $BRIEF reused: $(sandboxes)"
exit 0
