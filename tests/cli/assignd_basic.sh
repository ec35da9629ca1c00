# assignd places a sandbox on the first acquire (cold, restored with fc-launch), the
# sandbox answers invokes over its vsock; after release the next acquire gets the
# same sandbox warm; /v1/sandboxes and /metrics show it; bad requests get 400/404;
# SIGTERM stops every sandbox and exits 0.
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
start_assignd
assert_eq "$(cat "$T/out")" "$T/a.sock" "assignd prints its socket path"

ACQ='{"function": "hello", "version": "1", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "first acquire: $(cat "$T/body")"
assert_eq "$(field cold)" True "first acquire is cold"
SB=$(field sandbox); VS=$(field vsock); L1=$(field lease)
assert_eq "$VS" "$T/run/$SB.sock" "vsock path"
printf '{"n":1}' >"$T/p"
assert_eq "$($C "$VS" invoke "$T/p")" 'OK {"greeting":"hello from kindling nano","request":"{\"n\":1}"}' "invoke"
assert_eq "$(api -d '{"lease": "'"$L1"'", "outcome": "ok"}' http://a/v1/release)" 204 "release"
assert_eq "$(api -d '{"lease": "'"$L1"'"}' http://a/v1/release)" 404 "second release of the same lease"

assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "second acquire"
assert_eq "$(field cold)" False "second acquire is warm"
assert_eq "$(field sandbox)" "$SB" "second acquire: same sandbox"
L2=$(field lease)
$C "$VS" hello-repeat 5 || fail "warm sandbox does not answer"
assert_eq "$(api -d '{"lease": "'"$L2"'"}' http://a/v1/release)" 204 "release 2"

assert_eq "$(api http://a/v1/sandboxes)" 200 "list"
python3 - "$T/body" "$SB" <<'PY' || fail "sandbox list: $(cat "$T/body")"
import json, sys
l = json.load(open(sys.argv[1]))
assert len(l) == 1, l
s = l[0]
assert s["id"] == sys.argv[2] and s["state"] == "idle" and s["function"] == "hello" and s["version"] == "1", s
assert s["invokes"] == 2 and s["pid"] > 0, s
PY
PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["pid"])' "$T/body")

# Bad requests: the documented errors, nothing placed.
assert_eq "$(api -d '{"function": ' http://a/v1/acquire)" 400 "malformed JSON"
assert_eq "$(api -d '{"function": "hello"}' http://a/v1/acquire)" 400 "no snapshot"
assert_contains "$(cat "$T/body")" snapshot
assert_eq "$(api -d '{"lease": "L9-9"}' http://a/v1/release)" 404 "unknown lease"
assert_eq "$(api -d '{"lease": "'"$L2"'", "outcome": "maybe"}' http://a/v1/release)" 400 "bad outcome"
assert_eq "$(api http://a/v1/nothing)" 404 "unknown path"
# A snapshot that isn't one: 503 naming the failure, no sandbox left behind.
assert_eq "$(api -d '{"function": "bad", "snapshot": {"dir": "'"$T"'/nosnap"}}' http://a/v1/acquire)" 503 "bad snapshot"
assert_contains "$(cat "$T/body")" "placement failed"

api http://a/metrics >/dev/null
M=$(cat "$T/body")
assert_contains "$M" 'kindling_assign_acquires_total{kind="warm"} 1'
assert_contains "$M" 'kindling_assign_acquires_total{kind="cold"} 1'
assert_contains "$M" 'kindling_assign_sandboxes{state="idle"} 1'
assert_contains "$M" 'kindling_assign_restore_seconds_count 1'

kill -TERM $AD
wait $AD; rc=$?
PIDS=""
assert_eq "$rc" 0 "assignd exit status on SIGTERM"
kill -0 "$PID" 2>/dev/null && fail "sandbox $PID still runs after assignd stopped"
[ -e "$T/a.sock" ] && fail "API socket left behind"
exit 0
