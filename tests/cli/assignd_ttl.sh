# --idle-ttl: an idle sandbox is stopped (SIGTERM to its fc-launch) once it has been
# idle that long; a busy one is never reaped; the next acquire restores a new one.
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
ACQ='{"function": "hello", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
start_assignd --idle-ttl 1

assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire 1"
SB1=$(field sandbox); L1=$(field lease)
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire 2"
SB2=$(field sandbox); L2=$(field lease)
api http://a/v1/sandboxes >/dev/null
PID1=$(python3 -c 'import json,sys; print([s["pid"] for s in json.load(open(sys.argv[1])) if s["id"] == sys.argv[2]][0])' "$T/body" "$SB1")
t0=$(date +%s%3N)
assert_eq "$(api -d '{"lease": "'"$L1"'"}' http://a/v1/release)" 204 "release 1"
assert_eq "$(state "$SB1")" idle "after the release"
i=0
until [ "$(state "$SB1")" = none ]; do
    i=$((i + 1)); [ $i -gt 300 ] && fail "idle sandbox not reaped after the TTL: $(cat "$T/body")"
    sleep 0.01
done
# Not before the TTL (the exact decision is unit-tested on a ManualClock).
dt=$(($(date +%s%3N) - t0))
[ $dt -ge 950 ] || fail "idle sandbox reaped after $dt ms, before the 1 s TTL"
i=0
while kill -0 "$PID1" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 300 ] && fail "reaped sandbox's fc-launch $PID1 still runs"
    sleep 0.01
done
assert_eq "$(state "$SB2")" busy "a busy sandbox is not reaped"
assert_eq "$(api -d '{"lease": "'"$L2"'"}' http://a/v1/release)" 204 "release 2 (lease still valid)"
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire 3"
assert_eq "$(field sandbox)" "$SB2" "warm: the other sandbox"
api http://a/metrics >/dev/null
assert_contains "$(cat "$T/body")" "kindling_assign_reaped_total 1"
assert_contains "$(cat "$T/body")" "kindling_assign_deaths_total 0"

kill -TERM $AD; wait $AD; rc=$?; PIDS=""
assert_eq "$rc" 0 "assignd exit status"
exit 0
