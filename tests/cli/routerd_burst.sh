#!/bin/sh
# routerd: a burst of N=8 concurrent signed invokes of a cold function (concurrency 8)
# all answer 200 with the right body and restore at most N sandboxes (none dead); a
# burst of 8 slow invokes (init-heavy, ~0.5 s each) of a function with concurrency 2
# gets only 200s and 429 TooManyRequestsException (at least one 429, never a 5xx or a
# function error) and at most 2 sandboxes.
# serial: restores 8 VMs at once; slow invokes compete for a 2-sandbox limit
. "$(dirname "$0")/../lib.sh"
need_kvm
[ -x "$BIN/assignd" ] || skip "assignd not built"
# The fake's socketserver listens with a backlog of 5: a burst of 8 gets refused connections.
[ "${ROUTERD_FAKE_ASSIGND:-0}" != 1 ] || skip "needs the real assignd (the fake refuses bursts)"

. "$ROOT/tests/cli/routerd.lib"
N=8

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/hello" >"$T/snap.log" 2>&1 ||
    fail "snap-make hello: $(cat "$T/snap.log")"
# init-heavy with a 16 MiB table: "chase 0 4194304" walks the whole permutation (4M
# cache misses), ~0.5 s here: far longer than routerd's 100 ms acquire wait.
"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 48 --boot-args "table=16 rounds=1" --out "$T/heavy" \
    >"$T/snap.log" 2>&1 || fail "snap-make init-heavy: $(cat "$T/snap.log")"
SLOW="chase 0 4194304"
cat >"$T/functions.json" <<EOC
{"functions": [
 {"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 10, "concurrency": $N,
  "snapshot": {"dir": "$T/hello"}},
 {"name": "slow", "tenant": "111111111111", "memory": 48, "timeout": 30, "concurrency": 2,
  "snapshot": {"dir": "$T/heavy"}}
]}
EOC
start_assignd
start_routerd --acquire-wait-ms 100

# burst FUNCTION N PAYLOAD: N invokes ("{i}" in PAYLOAD: the invoke's number) released
# at once from N threads; one JSON line per invoke: i, status, X-Amz-Function-Error,
# X-Amzn-ErrorType, body.
burst() {
    python3 - "$T" "$ADDR" "$1" "$2" "$3" <<'PY'
import json, sys, threading
sys.path.insert(0, sys.argv[1])
import lam
addr, fn, n, prefix = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
go = threading.Barrier(n)
res = [None] * n
def one(i):
    go.wait()
    try:
        s, h, b = lam.call(addr, "POST", "/2015-03-31/functions/%s/invocations" % fn,
                           prefix.replace("{i}", str(i)).encode(), timeout=30)
        res[i] = [i, s, h.get("x-amz-function-error", "-"), h.get("x-amzn-errortype", "-"), b]
    except Exception as e:
        res[i] = [i, 0, "-", "-", "client: %r" % e]
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
for r in res: print(json.dumps(r))
PY
}
# live FUNCTION: "LIVE TOTAL" sandboxes of FUNCTION in assignd's table (live: not dead)
live() {
    sandboxes | python3 -c '
import json, sys
s = [x for x in json.load(sys.stdin) if x["function"] == sys.argv[1]]
print(len([x for x in s if x["state"] != "dead"]), len(s))' "$1"
}

# 1. A cold burst within the limit: every invoke succeeds with its own answer.
burst hello $N '{"burst":{i}}' >"$T/hot" || fail "burst client: $(cat "$T/hot")"
python3 - "$T/hot" $N <<'PY' || fail "cold burst of $N within the limit: expected all 200 with the hello body: $(cat "$T/hot")"
import json, sys
res = [json.loads(l) for l in open(sys.argv[1])]
assert len(res) == int(sys.argv[2]), res
for i, s, fe, et, b in res:
    want = json.dumps({"greeting": "hello from kindling nano", "request": '{"burst":%d}' % i}, separators=(",", ":"))
    assert (s, fe, et, b) == (200, "-", "-", want), (i, s, fe, et, b)
PY
set -- $(live hello)
[ "$1" -ge 1 ] && [ "$1" -le $N ] || fail "cold burst: expected 1..$N live hello sandboxes, got $1: $(sandboxes)"
assert_eq "$2" "$1" "hello sandboxes listed (none dead): $(sandboxes)"
assert_eq "$(router_metric 'kindling_routerd_sandbox_starts_total{start="cold"}')" "$1" "cold starts (one per sandbox)"
assert_eq "$(router_metric 'kindling_routerd_sandbox_starts_total{start="warm"}')" $(($N - $1)) "warm starts (the rest of the burst)"
assert_eq "$(router_metric kindling_routerd_throttles_total)" 0 "throttles within the limit"

# 2. Concurrency 2, slow invokes: the extra ones are throttled, nothing fails.
burst slow $N "$SLOW" >"$T/lim" || fail "burst client: $(cat "$T/lim")"
python3 - "$T/lim" $N <<'PY' || fail "slow burst of $N with concurrency 2: expected 200 (the chase) or 429 TooManyRequestsException, at least one 429: $(cat "$T/lim")"
import json, sys
res = [json.loads(l) for l in open(sys.argv[1])]
assert len(res) == int(sys.argv[2]), res
ok = thr = 0
for i, s, fe, et, b in res:
    if s == 200:
        assert fe == "-" and '"steps":4194304' in b, (i, s, fe, et, b)
        ok += 1
    else:
        assert s == 429 and et == "TooManyRequestsException", (i, s, fe, et, b)
        assert "ReservedFunctionConcurrentInvocationLimitExceeded" in b, (i, b)
        thr += 1
assert ok >= 1 and thr >= 1, (ok, thr)
PY
THR=$(grep -c '^\[[0-9]*, 429,' "$T/lim")
set -- $(live slow)
[ "$2" -ge 1 ] && [ "$2" -le 2 ] || fail "concurrency 2: expected 1..2 slow sandboxes, got $2: $(sandboxes)"
assert_eq "$1" "$2" "slow sandboxes listed (none dead): $(sandboxes)"
assert_eq "$(router_metric kindling_routerd_throttles_total)" "$THR" "throttles counted (one per 429)"
assert_eq "$(router_metric 'kindling_routerd_errors_total{kind="service"}')" 0 "service errors (a throttle is not one)"
assert_eq "$(router_metric 'kindling_routerd_errors_total{kind="function"}')" 0 "function errors (a throttle is not one)"

# Once the burst is over the function answers again.
out=$(invoke slow info) || fail "invoke after the throttle: $out"
assert_eq "$(echo "$out" | sed -n 1p)" 200 "invoke of slow after the burst"
set -- $(live slow)
[ "$2" -le 2 ] || fail "after the burst: expected at most 2 slow sandboxes, got $2: $(sandboxes)"
exit 0
