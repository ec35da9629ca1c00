#!/bin/sh
# snap-chunk put + get: byte-exact, sparse, modes kept, deterministic manifest id.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 64 1 || fail "mksnap"
mkdir "$T/snap/disks" && head -c 524289 /dev/urandom >"$T/snap/disks/overlay" && chmod 0600 "$T/snap/disks/overlay"
: >"$T/snap/empty"

id=$("$SC" put "$T/snap" --store "dir:$T/store" --layer base) || fail "put failed"
echo "$id" | grep -Eq '^[0-9a-f]{64}$' || fail "put printed '$id', not a manifest id"
# The manifest is stored under its own id.
m="$T/store/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)"
[ -f "$m" ] || fail "manifest $id not in the store"
assert_eq "$(sha256sum <"$m" | cut -c1-64)" "$id" "manifest id is SHA-256 of its bytes"
assert_eq "$(stat -c %a "$m")" "444" "store objects are read-only"

"$SC" get "$id" --store "dir:$T/store" --out "$T/out" || fail "get failed"
for f in snapshot.json vmstate mem disks/overlay empty; do
    cmp "$T/snap/$f" "$T/out/$f" || fail "$f differs after the round trip"
    assert_eq "$(stat -c %a "$T/out/$f")" "$(stat -c %a "$T/snap/$f")" "mode of $f"
done
assert_eq "$(stat -c %s "$T/out/mem")" "67108864" "mem size"
# mem: 3/8 of it holds data (random, text, one repeated block); the written zeros
# and the holes must come back as holes.
alloc=$(( $(stat -c %b "$T/out/mem") * $(stat -c %B "$T/out/mem") ))
[ "$alloc" -le $((64 * 1048576 * 5 / 8 + 1048576)) ] || fail "out/mem is not sparse: $alloc bytes allocated"
[ "$alloc" -lt $(( $(stat -c %b "$T/snap/mem") * 512 )) ] || fail "written zero chunks were not turned into holes"
[ -z "$(ls -A "$T" | grep '\.tmp\.')" ] || fail "temp directory left behind"

# Same input, same manifest id; nothing new stored.
j=$("$SC" put "$T/snap" --store "dir:$T/store" --layer base --json) || fail "second put failed"
assert_contains "$j" "\"manifest\":\"$id\"" "second put gives the same id"
assert_contains "$j" '"new_chunks":0' "second put stores nothing new"
assert_contains "$j" '"zero_chunks":48' "zero chunks counted (holes and written zeros)"

s=$("$SC" stat "$id" --store "dir:$T/store") || fail "stat failed"
assert_contains "$s" "chunks       132: 48 zero" "stat chunk counts"
"$SC" verify "$id" --store "dir:$T/store" >/dev/null || fail "verify failed"
# Everything in the store hashes to its name.
for o in "$T"/store/??/*; do
    n=$(basename "$(dirname "$o")")$(basename "$o")
    assert_eq "$(sha256sum <"$o" | cut -c1-64)" "$n" "object $n"
done
exit 0
