#!/bin/sh
# Several snap-chunk put processes writing one dir: store at once (same layer three
# times, another layer sharing nothing): all succeed, the same layer gets the same
# id, every object is whole, no temp file is left, both layers verify.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/a" 64 conc-a && "$ROOT/bench/chunk/mksnap.sh" "$T/b" 64 conc-b || fail "mksnap"
pids=""
for i in 1 2 3; do
    "$SC" put "$T/a" --store "$S" --layer runtime --threads 2 >"$T/id.a$i" 2>"$T/err.a$i" &
    pids="$pids $!"
done
"$SC" put "$T/b" --store "$S" --layer runtime --threads 2 >"$T/id.b" 2>"$T/err.b" &
pids="$pids $!"
for p in $pids; do wait "$p" || fail "a concurrent put failed: $(cat "$T"/err.*)"; done
a=$(cat "$T/id.a1")
assert_eq "$(cat "$T/id.a2")" "$a" "concurrent puts of one layer: same id"
assert_eq "$(cat "$T/id.a3")" "$a" "concurrent puts of one layer: same id"
b=$(cat "$T/id.b")
for o in "$T"/store/??/*; do
    n=$(basename "$(dirname "$o")")$(basename "$o")
    assert_eq "$(sha256sum <"$o" | cut -c1-64)" "$n" "object $n"
done
assert_eq "$(find "$T/store/tmp" -type f | wc -l)" "0" "temp files left"
"$SC" verify "$a" --store "$S" >/dev/null || fail "verify a"
"$SC" verify "$b" --store "$S" >/dev/null || fail "verify b"
# The store holds each chunk once: objects = distinct chunks of a and b + 2 manifests.
u=$("$SC" stat "$a" "$b" --store "$S" --json | sed 's/.*"unique_chunks":\([0-9]*\),.*/\1/')
assert_eq "$(find "$T/store" -path "$T/store/??/*" -type f | wc -l)" "$((u + 2))" "objects in the store"
exit 0
