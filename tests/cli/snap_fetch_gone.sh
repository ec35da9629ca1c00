#!/bin/sh
# Everything gone (memcached down, origin gone, only the manifest cached): a clear
# error naming the first missing chunk, exit 69, nothing at --out.  A chunk corrupt
# in every tier: exit 65 naming the chunk and the tier.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
mc=$("$ROOT/scripts/memcached.sh" "$T/mc" 1) || skip "memcached could not be started"
PIDS="$PIDS $(cat "$T"/mc/*.pid)"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 1 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
U="tiered:dir:$T/cache|memcached://$mc|dir:$T/origin"
"$SF" "$id" --store "$U" --warm -q || fail "warm failed"
# Keep only the manifest in the local cache; stop memcached; remove the origin.
find "$T/cache" -path "$T/cache/??/*" -type f ! -path "*/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)" -delete
stop_server "$(cat "$T/mc/memcached.1.pid")"
mv "$T/origin" "$T/origin.away"
first=$("$SC" stat "$id" --store "dir:$T/origin.away" --chunks | awk '$1 == "chunk" && $5 != "zero" { print $5; exit }')
# The origin cannot be reached at all: a temporary failure (75) naming the first chunk.
out=$("$SF" "$id" --store "$U" --warm --parallel 1 2>&1); rc=$?
assert_eq "$rc" "75" "exit status with the origin unreachable ($out)"
assert_contains "$out" "error: chunk $first" "error names the first missing chunk"
assert_contains "$out" "dir:$T/origin" "error names the failed tier"
# Every tier answers, none holds the chunks (an empty origin): 69.
"$SC" put "$T/snap/vmstate" --store "dir:$T/origin" --layer base >/dev/null 2>&1
mkdir -p "$T/empty" && : >"$T/empty/x" && "$SC" put "$T/empty" --store "dir:$T/origin" --layer base >/dev/null \
    || fail "create an empty origin"
out=$("$SF" "$id" --store "$U" --warm --parallel 1 2>&1); rc=$?
assert_eq "$rc" "69" "exit status with every tier missing the chunks ($out)"
assert_contains "$out" "chunk $first" "error names the first missing chunk"
assert_contains "$out" "not in" "error says the chunk is missing"
assert_contains "$out" "memcached://$mc" "error says how each tier answered"
out=$("$SF" "$id" --store "$U" --out "$T/out" 2>&1); rc=$?
assert_eq "$rc" "69" "exit status of --out ($out)"
[ ! -e "$T/out" ] || fail "a failed fetch left $T/out"
rm -rf "$T/origin"

# One chunk corrupt at the origin, no caches: 65, naming the chunk and the tier.
mv "$T/origin.away" "$T/origin"
o="$T/origin/$(echo "$first" | cut -c1-2)/$(echo "$first" | cut -c3-)"
chmod u+w "$o" && printf 'X' | dd of="$o" bs=1 seek=100 conv=notrunc 2>/dev/null
out=$("$SF" "$id" --store "dir:$T/origin" --warm 2>&1); rc=$?
assert_eq "$rc" "65" "exit status for a chunk corrupt everywhere ($out)"
assert_contains "$out" "$first" "error names the corrupt chunk"
assert_contains "$out" "dir:$T/origin" "error names the tier"
exit 0
