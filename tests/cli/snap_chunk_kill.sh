#!/bin/sh
# kill -9 snap-chunk put at random points: every object visible in the store is
# whole (hashes to its name), and a later put completes and verifies.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 256 kill || fail "mksnap"

check_store() {
    for o in "$T"/store/??/*; do
        [ -e "$o" ] || continue
        n=$(basename "$(dirname "$o")")$(basename "$o")
        [ "$(sha256sum <"$o" | cut -c1-64)" = "$n" ] || fail "after kill $1: object $n is corrupt"
    done
}

# How long one put takes here, so the kills land while chunks are being written.
t0=$(date +%s%N)
"$SC" put "$T/snap" --store "dir:$T/timing" --layer base --threads 1 >/dev/null || fail "timing put"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
rm -rf "$T/timing"
echo "one put: ${ms} ms"

# Each round: a fresh store, a put killed at a random point, then a put that
# completes on what the killed one left behind.
for i in 1 2 3 4; do
    S="dir:$T/store"
    rm -rf "$T/store"
    delay=$(awk -v s="$$$i" -v ms="$ms" 'BEGIN { srand(s); printf "%.3f", (10 + rand() * ms * 0.9) / 1000 }')
    "$SC" put "$T/snap" --store "$S" --layer base --threads 1 >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    n=$(find "$T/store" -path "$T/store/??/*" -type f 2>/dev/null | wc -l)
    tmp=$(find "$T/store/tmp" -type f 2>/dev/null | wc -l)
    echo "round $i: killed after ${delay}s: $n objects visible, $tmp temp files"
    check_store "$i"
    id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "round $i: put after the kill"
    check_store "$i, then put"
    "$SC" verify "$id" --store "$S" >/dev/null || fail "round $i: verify after the kill"
done
"$SC" get "$id" --store "$S" --out "$T/out" || fail "get after the kills"
cmp "$T/snap/mem" "$T/out/mem" || fail "mem differs after the kills"
exit 0
