# A crash between spawning a sandbox and journaling its pid leaves an fc-launch that
# the journal does not know.  Simulated: with assignd killed, an fc-launch is started
# by hand on a socket in assignd's run dir (sb-50), and a log file sb-60.log is left
# there.  The restarted assignd kills the stray process (nothing in the run dir is left
# running outside its table), keeps the journaled sandbox, and never hands out an id
# it saw in the run dir: the next new sandbox is sb-61.
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"
"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
ACQ='{"function": "hello", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
start_assignd
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "first acquire"
assert_eq "$(field sandbox)" sb-1 "first sandbox id"
KEEP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vsock"])' "$T/body")
kill -9 $AD; wait $AD 2>/dev/null

"$BIN/fc-launch" --restore "$T/snap" --vsock "$T/run/sb-50.sock" >/dev/null 2>"$T/stray.err" &
STRAY=$!
wait_for_file "$T/run/sb-50.sock" 10 || fail "stray fc-launch did not start: $(cat "$T/stray.err")"
: >"$T/run/sb-60.log"

: >"$T/out"
start_assignd
i=0
while kill -0 $STRAY 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "stray fc-launch $STRAY still runs after the restart"
    sleep 0.01
done
wait $STRAY 2>/dev/null
grep -q "stray fc-launch pid $STRAY serving $T/run/sb-50.sock" "$T/err" || fail "stray not logged: $(cat "$T/err")"
assert_eq "$(state sb-1)" idle "the journaled sandbox survives the restart"
$C "$KEEP" hello-repeat 1 || fail "sb-1 does not answer after the restart"
assert_eq "$(state sb-50)" none "the stray is not adopted"

# sb-1 is handed out warm; the next one is restored under an id above all seen.
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "warm acquire"
assert_eq "$(field sandbox)" sb-1 "warm acquire gets sb-1"
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "cold acquire"
assert_eq "$(field sandbox)" sb-61 "ids seen in the run dir are not reused"
exit 0
