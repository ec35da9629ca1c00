#!/bin/sh
# SIGTERM or SIGINT during get: exit 128+signal and nothing at --out, no temp
# directory; during put: no manifest, and a later put completes.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 256 signal || fail "mksnap"
id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "put"

interrupted=0
# A get of this snapshot takes a few tenths of a second; signals land at several
# points of it (or after it, when the machine is fast: then the output is whole).
for try in TERM:0.02 INT:0.04 TERM:0.07 INT:0.1; do
    sig=${try%:*}; delay=${try#*:}
    "$SC" get "$id" --store "$S" --out "$T/out" --threads 1 2>"$T/err" &
    pid=$!
    sleep "$delay"
    kill -s "$sig" "$pid" 2>/dev/null
    wait "$pid"; rc=$?
    if [ "$rc" = 0 ]; then
        cmp "$T/snap/mem" "$T/out/mem" || fail "get finished before SIG$sig but mem differs"
        rm -rf "$T/out"
        continue
    fi
    case $sig in TERM) want=143 ;; INT) want=130 ;; esac
    assert_eq "$rc" "$want" "get interrupted by SIG$sig: exit status"
    # (Empty when the signal came before snap-chunk installed its handler.)
    [ -s "$T/err" ] && assert_contains "$(cat "$T/err")" "snap-chunk: error: interrupted by" "get interrupted by SIG$sig"
    [ ! -e "$T/out" ] || fail "interrupted get left $T/out"
    [ -z "$(ls -A "$T" | grep '\.tmp\.')" ] || fail "interrupted get left a temp directory"
    interrupted=$((interrupted + 1))
done
echo "$interrupted of 4 gets interrupted"
[ "$interrupted" -gt 0 ] || skip "every get finished before its signal; nothing was interrupted"

rm -rf "$T/store2"
"$SC" put "$T/snap" --store "dir:$T/store2" --layer base --threads 1 >"$T/pid.out" 2>"$T/err" &
pid=$!
sleep 0.2
kill -s TERM "$pid"
wait "$pid"; rc=$?
if [ "$rc" != 0 ]; then
    assert_eq "$rc" "143" "put interrupted by SIGTERM: exit status"
    [ ! -e "$T/store2/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)" ] || fail "interrupted put wrote the manifest"
fi
id2=$("$SC" put "$T/snap" --store "dir:$T/store2" --layer base) || fail "put after the interrupted one"
assert_eq "$id2" "$id" "same manifest after an interrupted put"
"$SC" verify "$id2" --store "dir:$T/store2" >/dev/null || fail "verify after an interrupted put"
exit 0
