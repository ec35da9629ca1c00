# kill -9 of a busy sandbox's fc-launch: assignd marks it dead (pidfd), the release
# of its lease fails cleanly (404 naming the death), and the next acquire places a
# new sandbox instead of reusing it.  An idle sandbox that dies is never handed out.
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
ACQ='{"function": "hello", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
start_assignd

assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire"
SB=$(field sandbox); L=$(field lease); VS=$(field vsock)
api http://a/v1/sandboxes >/dev/null
PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["pid"])' "$T/body")
$C "$VS" hello-repeat 1 || fail "sandbox does not answer"
kill -9 "$PID"
i=0
until [ "$(state "$SB")" = dead ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "sandbox not marked dead: $(cat "$T/body")"
    sleep 0.01
done
assert_eq "$(api -d '{"lease": "'"$L"'"}' http://a/v1/release)" 404 "release of a dead sandbox's lease"
assert_contains "$(cat "$T/body")" "died"
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire after the death"
assert_eq "$(field cold)" True "a new sandbox is restored"
SB2=$(field sandbox); L2=$(field lease)
[ "$SB2" != "$SB" ] || fail "dead sandbox $SB handed out again"
$C "$(field vsock)" hello-repeat 1 || fail "new sandbox does not answer"

# An idle sandbox dies: the next acquire does not get it.
assert_eq "$(api -d '{"lease": "'"$L2"'"}' http://a/v1/release)" 204 "release"
api http://a/v1/sandboxes >/dev/null
PID2=$(python3 -c 'import json,sys; print([s["pid"] for s in json.load(open(sys.argv[1])) if s["id"] == sys.argv[2]][0])' "$T/body" "$SB2")
kill -9 "$PID2"
i=0
until [ "$(state "$SB2")" = dead ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "idle sandbox not marked dead"
    sleep 0.01
done
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire 3"
[ "$(field sandbox)" != "$SB2" ] || fail "dead idle sandbox handed out"
$C "$(field vsock)" hello-repeat 1 || fail "third sandbox does not answer"
api http://a/metrics >/dev/null
assert_contains "$(cat "$T/body")" "kindling_assign_deaths_total 2"
grep -q "$SB: fc-launch pid $PID killed by" "$T/err" || fail "death not logged: $(cat "$T/err")"

kill -TERM $AD; wait $AD; rc=$?; PIDS=""
assert_eq "$rc" 0 "assignd exit status"
exit 0
