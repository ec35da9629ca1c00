# kill -9 assignd with idle sandboxes: restarted on the same journal it rebuilds every
# live one (same ids, same pids, idle again, warm on the next acquire), marks the one
# that died meanwhile dead, and never reuses an id.  A second assignd on a journal in
# use is refused (leader lock, exit 75).
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
ACQ='{"function": "hello", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
start_assignd

i=0; CPIDS=""
while [ $i -lt 4 ]; do
    curl -s --unix-socket "$T/a.sock" -o "$T/acq.$i" -d "$ACQ" http://a/v1/acquire & CPIDS="$CPIDS $!"
    i=$((i + 1))
done
for p in $CPIDS; do wait "$p"; done
for i in 0 1 2 3; do
    L=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lease"])' "$T/acq.$i") || fail "acquire $i: $(cat "$T/acq.$i")"
    assert_eq "$(api -d '{"lease": "'"$L"'"}' http://a/v1/release)" 204 "release $i"
done

# The leader lock: a second assignd on this journal fails clearly.
"$BIN/assignd" --socket "$T/b.sock" --journal "file:$T/journal" --run-dir "$T/run" >/dev/null 2>"$T/err2"
assert_eq "$?" 75 "second assignd on the same journal"
assert_contains "$(cat "$T/err2")" "locked by another assignd"

api http://a/v1/sandboxes >/dev/null
cp "$T/body" "$T/before.json"
kill -9 $AD; wait $AD 2>/dev/null; PIDS=""
# One sandbox dies while assignd is down.
VICTIM=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); print(l[0]["id"], l[0]["pid"])' "$T/before.json")
kill -9 "${VICTIM#* }"
i=0
while kill -0 "${VICTIM#* }" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 500 ] && fail "sandbox ${VICTIM% *} still runs after kill -9"
    sleep 0.01
done

: >"$T/out"
start_assignd
api http://a/v1/sandboxes >/dev/null
python3 - "$T/before.json" "$T/body" "${VICTIM% *}" <<'PY' || fail "rebuilt table: $(cat "$T/body") $(cat "$T/err")"
import json, sys
before = {s["id"]: s for s in json.load(open(sys.argv[1]))}
after = json.load(open(sys.argv[2]))
victim = sys.argv[3]
assert len(before) == 4 and all(s["state"] == "idle" for s in before.values()), before
ids = [s["id"] for s in after]
assert len(ids) == len(set(ids)) == 4, ids            # none duplicated
assert set(ids) == set(before), (ids, list(before))   # none lost
for s in after:
    b = before[s["id"]]
    assert (s["pid"], s["vsock"], s["function"]) == (b["pid"], b["vsock"], b["function"]), (s, b)
    assert s["state"] == ("dead" if s["id"] == victim else "idle"), s
PY

# The three live ones are handed out warm, then a fourth is restored under a new id.
for i in 0 1 2; do
    assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire $i after restart"
    assert_eq "$(field cold)" False "acquire $i after restart is warm"
    [ "$(field sandbox)" != "${VICTIM% *}" ] || fail "dead sandbox handed out"
    $C "$(field vsock)" hello-repeat 1 || fail "rebuilt sandbox $(field sandbox) does not answer"
done
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "fourth acquire"
assert_eq "$(field cold)" True "fourth acquire restores"
assert_eq "$(field sandbox)" sb-5 "new sandboxes continue the ids"
grep -q "3 sandboxes alive, 1 dead" "$T/err" || fail "rebuild not logged: $(cat "$T/err")"

kill -TERM $AD; wait $AD; rc=$?; PIDS=""
assert_eq "$rc" 0 "assignd exit status"
# Stopped sandboxes are journaled as destroyed: a restart finds nothing to rebuild.
: >"$T/out"
start_assignd
api http://a/v1/sandboxes >/dev/null
python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); assert all(s["state"] == "dead" for s in l), l' "$T/body" \
    || fail "stopped sandboxes came back: $(cat "$T/body")"
exit 0
