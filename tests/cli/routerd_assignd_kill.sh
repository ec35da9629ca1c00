#!/bin/sh
# kill -9 assignd under load behind routerd: restarted on the same journal and run dir
# it rebuilds every live sandbox exactly once (same ids and pids, none lost, none
# duplicated, no process outside its table); invokes during the outage either succeed
# (right body) or get a prompt 500 ServiceException naming assignd, never a hang or a
# wrong 200, and one that needs assignd gets that 500; invokes after the restart
# succeed, served warm by the rebuilt sandboxes; SIGTERM stops them all.
# serial: measures how promptly invokes fail while assignd is down
. "$(dirname "$0")/../lib.sh"
need_kvm
[ -x "$BIN/assignd" ] || skip "assignd not built"
[ "${ROUTERD_FAKE_ASSIGND:-0}" != 1 ] || skip "needs the real assignd (its journal)"

. "$ROOT/tests/cli/routerd.lib"
# Sandboxes outlive a kill -9'd assignd: whatever still runs from this test's run dir
# once the daemons are stopped is killed here.
kill_sandboxes() {
    for p in /proc/[0-9]*; do
        grep -qa -- "$T/run/" "$p/cmdline" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null
    done
}
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; for p in $PIDS; do wait "$p" 2>/dev/null; done; PIDS=""; kill_sandboxes; cleanup' EXIT
# fc_pids: pids of the live fc-launch processes serving a socket in the run dir
fc_pids() {
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "fc-launch .*--vsock $T/run/" && echo "${p#/proc/}"
    done | sort -n | tr '\n' ' '
}
# metric ADDR-OR-SOCKET NAME: a value from routerd's (host:port) or assignd's (socket) /metrics
metric() {
    case $1 in
    /*) curl -s --unix-socket "$1" http://assignd/metrics ;;
    *) curl -s "http://$1/metrics" ;;
    esac | awk -v n="$2" '$1 == n { print $2 }'
}

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
C=3  # the function's concurrency limit = sandboxes warmed up = load threads: no placement under load
# "other" (same snapshot) is only invoked while assignd is down: routerd holds no
# sandbox of it, so that invoke must go to assignd.
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 5, "concurrency": $C,
                "snapshot": {"dir": "$T/snap"}},
               {"name": "other", "tenant": "111111111111", "memory": 32, "timeout": 5, "concurrency": $C,
                "snapshot": {"dir": "$T/snap"}}]}
EOC

# load.py ADDR THREADS OUT STOPFILE: THREADS threads invoke hello in a loop until
# STOPFILE exists (20 s at most); each answer is a line "start end status" in
# OUT.progress as it comes, and all of them (with the checks) a JSON list in OUT.
cat >"$T/load.py" <<'PY'
import json, os, sys, threading, time
sys.path.insert(0, os.path.dirname(sys.argv[0]))
import lam
addr, n, out, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
path = "/2015-03-31/functions/hello/invocations"
recs, mu = [], threading.Lock()
prog = open(out + ".progress", "a", buffering=1)
end = time.time() + 20
def worker(k):
    j = 0
    while not os.path.exists(stop) and time.time() < end:
        req = '{"thread":%d,"n":%d}' % (k, j)
        want = json.dumps({"greeting": "hello from kindling nano", "request": req}, separators=(",", ":"))
        t0 = time.time()
        try:
            s, h, b = lam.call(addr, "POST", path, req.encode(), timeout=10)
            fe, et = h.get("x-amz-function-error", "-"), h.get("x-amzn-errortype", "-")
        except Exception as e:
            s, fe, et, b = 0, "-", "-", "client: %r" % e
        t1 = time.time()
        r = {"start": t0, "end": t1, "status": s, "fe": fe, "et": et, "right": b == want, "body": b[:300]}
        with mu:
            recs.append(r)
            prog.write("%.6f %.6f %d\n" % (t0, t1, s))
        j += 1
        if s != 200: time.sleep(0.005)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
for t in ts: t.start()
for t in ts: t.join()
json.dump(recs, open(out, "w"))
PY
# lines FILE: its line count
lines() { wc -l <"$1"; }
# wait_lines FILE N WHAT: until FILE has N lines (15 s at most)
wait_lines() {
    i=0; until [ "$(lines "$1")" -ge "$2" ]; do i=$((i+1)); [ $i -gt 1500 ] && fail "$3: only $(lines "$1") of $2 invokes answered in 15 s"; sleep 0.01; done
}

start_assignd
AD=${PIDS##* }
start_routerd --acquire-wait-ms 2000

# Warm up exactly C sandboxes: bursts of C concurrent invokes until C are live.
n=0
while :; do
    python3 - "$T" "$ADDR" $C <<'PY' || fail "warm-up burst: expected $C answers 200"
import sys, threading
sys.path.insert(0, sys.argv[1])
import lam
addr, n = sys.argv[2], int(sys.argv[3])
go, res = threading.Barrier(n), []
def one():
    go.wait()
    res.append(lam.call(addr, "POST", "/2015-03-31/functions/hello/invocations", b"{}")[0])
ts = [threading.Thread(target=one) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
assert res == [200] * n, res
PY
    live=$(sandboxes | python3 -c 'import json,sys; print(len([s for s in json.load(sys.stdin) if s["state"] != "dead"]))')
    [ "$live" -eq $C ] && break
    n=$((n + 1)); [ $n -lt 10 ] || fail "warm-up: expected $C live sandboxes after 10 bursts, got $live: $(sandboxes)"
done
COLD=$(metric "$ADDR" 'kindling_routerd_sandbox_starts_total{start="cold"}')
assert_eq "$COLD" $C "cold starts during the warm-up"

# Load, then kill -9 assignd in the middle of it.
: >"$T/load.json.progress"
bg python3 "$T/load.py" "$ADDR" $C "$T/load.json" "$T/stop"
LOAD=$!
wait_lines "$T/load.json.progress" 30 "load before the kill"
sandboxes >"$T/before.json"
KILLED=$(date +%s.%N)
kill -9 "$AD"
wait "$AD" 2>/dev/null
P=""; for p in $PIDS; do [ "$p" = "$AD" ] || P="$P $p"; done; PIDS=$P
AT_KILL=$(lines "$T/load.json.progress")
# An invoke that needs assignd while it is down: a prompt 500 ServiceException naming
# assignd (invokes of hello may still succeed on sandboxes routerd holds).
s0=$(date +%s%N)
out=$(invoke other '{"outage":1}') || fail "invoke while assignd is down: $out"
ms=$(( ($(date +%s%N) - s0) / 1000000 ))
assert_eq "$(echo "$out" | sed -n 1p)/$(echo "$out" | sed -n 3p)" 500/ServiceException "status/error type of an invoke while assignd is down: $out"
assert_contains "$out" '"Type":"Service"' "a service error is Type Service"
assert_contains "$(echo "$out" | sed -n 4p)" assignd "error message of an invoke while assignd is down"
[ "$ms" -lt 3000 ] || fail "the invoke while assignd was down took $ms ms (expected a prompt error)"
sleep 0.5
# The same command line as start_assignd (tests/cli/routerd.lib); the stale socket is
# assignd's to deal with.  It prints the socket path once it is listening.
bg "$BIN/assignd" --socket "$T/assignd.sock" --journal "file:$T/journal" --run-dir "$T/run" >"$T/assignd2.out" 2>"$T/assignd2.err"
AD=$!
i=0; until [ -s "$T/assignd2.out" ]; do
    i=$((i+1)); [ $i -gt 1000 ] && fail "restarted assignd did not listen in 10 s: $(cat "$T/assignd2.err")"
    kill -0 "$AD" 2>/dev/null || fail "restarted assignd exited: $(cat "$T/assignd2.err")"
    sleep 0.01
done
UP=$(date +%s.%N)
[ "$(lines "$T/load.json.progress")" -gt "$AT_KILL" ] || fail "no invoke was answered while assignd was down (the load hung)"
wait_lines "$T/load.json.progress" $(($(lines "$T/load.json.progress") + 60)) "load after the restart"
touch "$T/stop"
wait "$LOAD" || fail "load generator failed"
[ -s "$T/load.json" ] || fail "load generator wrote no results"

# Every answer: 200 with its own hello body, or (only while assignd was down) a prompt
# 500 ServiceException naming assignd.  Whether hello invokes fail during the outage
# depends on routerd holding leases (--lease-hold-ms); either is fine.
python3 - "$T/load.json" "$KILLED" "$UP" >"$T/errs" <<'PY' || fail "answers under load: expected 200 with the right body, or 500 ServiceException naming assignd during the outage only"
import json, sys
recs = json.load(open(sys.argv[1]))
killed, up = float(sys.argv[2]), float(sys.argv[3])
errs = [r for r in recs if not (r["status"] == 200 and r["fe"] == "-" and r["right"])]
for r in errs:
    assert r["status"] == 500 and r["et"] == "ServiceException" and "assignd" in r["body"], r
    assert r["end"] >= killed and r["start"] <= up, ("an error outside the outage", r, killed, up)
slow = [r for r in recs if r["end"] - r["start"] > 3]
assert not slow, ("invokes took over 3 s", slow[:3])
after = [r for r in recs if r["start"] > up]
assert len(after) >= 50 and all(r["status"] == 200 for r in after), len(after)
print(len(errs))
PY
assert_eq "$(metric "$ADDR" 'kindling_routerd_errors_total{kind="service"}')" $(($(cat "$T/errs") + 1)) "routerd service errors (one per 500 during the outage)"

# The rebuilt table: the sandboxes of before the kill, each once, same pid, idle once
# the last releases are in; and exactly the live fc-launch processes of the run dir.
i=0; until sandboxes | python3 -c 'import json,sys; sys.exit(any(s["state"] in ("busy", "creating") for s in json.load(sys.stdin)))'; do
    i=$((i+1)); [ $i -gt 500 ] && fail "sandboxes still busy or creating 5 s after the load: $(sandboxes)"
    sleep 0.01
done
sandboxes >"$T/after.json"
python3 - "$T/before.json" "$T/after.json" "$T/run" "$(fc_pids)" $C <<'PY' || fail "rebuilt table: expected the $C sandboxes of before the kill, same pids, idle, and no other fc-launch: before $(cat "$T/before.json") after $(cat "$T/after.json") processes $(fc_pids)"
import json, sys
before, after = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
run, procs, c = sys.argv[3], sorted(int(p) for p in sys.argv[4].split()), int(sys.argv[5])
assert len(before) == c and all(s["state"] in ("idle", "busy") for s in before), ("before", before)
ids = [s["id"] for s in after]
assert len(ids) == len(set(ids)), ("duplicated ids", ids)
live = [s for s in after if s["state"] != "dead"]
assert {s["id"]: (s["pid"], s["function"], s["vsock"]) for s in live} == \
       {s["id"]: (s["pid"], s["function"], s["vsock"]) for s in before}, ("lost or new sandboxes", before, live)
assert all(s["state"] == "idle" for s in live), ("not idle", live)
for s in live:
    cmd = open("/proc/%d/cmdline" % s["pid"], "rb").read().split(b"\0")
    assert cmd[0].endswith(b"fc-launch") and (run + "/" + s["id"] + ".sock").encode() in cmd, (s, cmd)
assert sorted(s["pid"] for s in live) == procs, ("fc-launch processes not in the table", procs, live)
PY
grep -q "$C sandboxes alive, 0 dead" "$T/assignd2.err" || fail "rebuild not logged as '$C sandboxes alive, 0 dead': $(cat "$T/assignd2.err")"

# Sequential invokes after the restart: right answers, warm, on the rebuilt sandboxes.
for n in 1 2 3 4 5; do
    out=$(invoke hello "{\"after\":$n}") || fail "invoke $n after the restart: $out"
    assert_eq "$(echo "$out" | sed -n 1p)" 200 "status of invoke $n after the restart"
    assert_eq "$(echo "$out" | sed -n 4p)" "{\"greeting\":\"hello from kindling nano\",\"request\":\"{\\\"after\\\":$n}\"}" "answer of invoke $n after the restart"
done
assert_eq "$(metric "$ADDR" 'kindling_routerd_sandbox_starts_total{start="cold"}')" "$COLD" "routerd cold starts after the restart (all warm)"
assert_eq "$(metric "$T/assignd.sock" kindling_assign_restores_total)" 0 "restores by the restarted assignd"
# (routerd may hold the last one for --lease-hold-ms before giving it back)
i=0; until [ "$(metric "$T/assignd.sock" 'kindling_assign_sandboxes{state="idle"}')" = $C ]; do
    i=$((i+1)); [ $i -gt 500 ] && fail "expected $C idle sandboxes 5 s after the invokes: $(sandboxes)"
    sleep 0.01
done

# SIGTERM: the restarted assignd stops the rebuilt sandboxes too; nothing is left over.
stop_server "$AD"
i=0; until [ -z "$(fc_pids)" ]; do
    i=$((i+1)); [ $i -gt 500 ] && fail "fc-launch processes left after assignd's SIGTERM: $(fc_pids)"
    sleep 0.01
done
exit 0
