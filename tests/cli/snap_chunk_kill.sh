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

# Delays spread over a put of this snapshot (about a second on one thread), so the
# kills land while chunks are being written, and one near or after the manifest.
for i in 1 2 3 4 5 6; do
    delay=$(awk -v s="$$$i" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * 0.9 }')
    "$SC" put "$T/snap" --store "$S" --layer base --threads 1 >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    n=$(find "$T/store" -path "$T/store/??/*" -type f 2>/dev/null | wc -l)
    echo "kill $i after ${delay}s: $n objects visible"
    check_store "$i"
done

id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "put after the kills"
check_store final
"$SC" verify "$id" --store "$S" >/dev/null || fail "verify after the kills"
"$SC" get "$id" --store "$S" --out "$T/out" || fail "get after the kills"
cmp "$T/snap/mem" "$T/out/mem" || fail "mem differs after the kills"
exit 0
