#!/bin/sh
# Tampering with the store: a flipped byte in a chunk, two chunks swapped, a
# truncated chunk, a changed manifest, a forged manifest.  verify and get fail with
# exit 65 naming the chunk and offset, and get leaves nothing in --out.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 64 tamper || fail "mksnap"
id=$("$SC" put "$T/snap" --store "$S" --layer runtime) || fail "put"
obj() { echo "$T/store/$(echo "$1" | cut -c1-2)/$(echo "$1" | cut -c3-)"; }
# chunk_id INDEX: id of mem's chunk INDEX.
chunk_id() { "$SC" stat "$id" --store "$S" --chunks | awk -v i="$1" '$1 == "chunk" && $2 == "mem" && $3 == i {print $5}'; }
c3=$(chunk_id 3); c17=$(chunk_id 17)
echo "$c3$c17" | grep -Eq '^[0-9a-f]{128}$' || fail "chunks 3 and 17 of mem are not data chunks: '$c3' '$c17'"
cp -a "$T/store" "$T/clean"
restore() { rm -rf "$T/store" && cp -a "$T/clean" "$T/store"; }

# expect_fail WHAT PATTERN: verify and get both exit 65 with PATTERN in stderr,
# and get leaves neither the output nor a temp directory.
expect_fail() {
    out=$("$SC" verify "$id" --store "$S" 2>&1); rc=$?
    assert_eq "$rc" "65" "$1: verify exit status"
    assert_contains "$out" "$2" "$1: verify names the chunk"
    out=$("$SC" get "$id" --store "$S" --out "$T/out" 2>&1); rc=$?
    assert_eq "$rc" "65" "$1: get exit status"
    assert_contains "$out" "$2" "$1: get names the chunk"
    [ ! -e "$T/out" ] || fail "$1: get left $T/out"
    [ -z "$(ls -A "$T" | grep '\.tmp\.')" ] || fail "$1: get left a temp directory"
}
flip() { chmod u+w "$1"; printf '\377' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# 1. One flipped byte in chunk 17 (offset 17 * 512 KiB).
flip "$(obj "$c17")" 1000
expect_fail "flipped byte" "mem: chunk 17 at offset 8912896: chunk $c17: stored bytes do not match the id"
restore

# 2. Chunks 3 and 17 swapped.
a=$(obj "$c3"); b=$(obj "$c17")
chmod u+w "$a" "$b"; mv "$a" "$T/swap"; mv "$b" "$a"; mv "$T/swap" "$b"
out=$("$SC" verify "$id" --store "$S" 2>&1); rc=$?
assert_eq "$rc" "65" "swapped chunks: verify exit status"
assert_contains "$out" "mem: chunk 3 at offset 1572864: chunk $c3: stored bytes do not match" "swapped: chunk 3"
assert_contains "$out" "mem: chunk 17 at offset 8912896: chunk $c17: stored bytes do not match" "swapped: chunk 17"
# get stops at whichever of the two its threads reach first.
out=$("$SC" get "$id" --store "$S" --out "$T/out" 2>&1); rc=$?
assert_eq "$rc" "65" "swapped chunks: get exit status"
echo "$out" | grep -Eq "mem: chunk (3 at offset 1572864: chunk $c3|17 at offset 8912896: chunk $c17)" \
    || fail "swapped chunks: get does not name a swapped chunk: $out"
[ ! -e "$T/out" ] || fail "swapped chunks: get left $T/out"
restore

# 3. Chunk 3 truncated.
chmod u+w "$(obj "$c3")"; truncate -s 1000 "$(obj "$c3")"
expect_fail "truncated chunk" "mem: chunk 3 at offset 1572864: chunk $c3"
restore

# 4. One flipped byte in the manifest: its bytes no longer match its id.
flip "$(obj "$id")" 200
expect_fail "changed manifest" "manifest $id: stored bytes do not match the id"
restore

# 5. A forged manifest: changed, then stored under its new id.  Only the HMAC
#    can catch it; nothing is decrypted.
cp "$(obj "$id")" "$T/forged"; flip "$T/forged" 100
fid=$(sha256sum <"$T/forged" | cut -c1-64)
mkdir -p "$(dirname "$(obj "$fid")")"; cp "$T/forged" "$(obj "$fid")"
out=$("$SC" get "$fid" --store "$S" --out "$T/out" 2>&1); rc=$?
assert_eq "$rc" "65" "forged manifest: get exit status"
assert_contains "$out" "manifest $fid: wrong key or tampered manifest" "forged manifest"
[ ! -e "$T/out" ] || fail "forged manifest: get left output"
restore

# 6. A chunk removed from the store: missing input (66), named.
rm -f "$(obj "$c17")"
out=$("$SC" verify "$id" --store "$S" 2>&1); rc=$?
assert_eq "$rc" "66" "missing chunk: verify exit status"
assert_contains "$out" "mem: chunk 17 at offset 8912896: chunk $c17: not in $S" "missing chunk named"
"$SC" get "$id" --store "$S" --out "$T/out" 2>/dev/null; rc=$?
assert_eq "$rc" "66" "missing chunk: get exit status"
[ ! -e "$T/out" ] || fail "missing chunk: get left output"
restore

# The clean store still verifies and round-trips.
"$SC" verify "$id" --store "$S" >/dev/null || fail "clean store does not verify"
"$SC" get "$id" --store "$S" --out "$T/out" && cmp "$T/snap/mem" "$T/out/mem" || fail "clean round trip"
exit 0
