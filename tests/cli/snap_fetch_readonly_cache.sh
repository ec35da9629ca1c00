#!/bin/sh
# A local cache that cannot store objects (its tmp/ is a file: every write fails with
# ENOTDIR, as a full or read-only filesystem would; root ignores chmod) or whose path
# is a file: the fetch succeeds from the next tier, with one warning, cache bypassed.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 4 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
mkdir -p "$T/e" && "$SC" put "$T/e" --store "dir:$T/cache" --layer base >/dev/null || fail "create cache"
rm -rf "$T/cache/tmp" && : >"$T/cache/tmp"

out=$("$SF" "$id" --store "tiered:dir:$T/cache|dir:$T/origin" --out "$T/out" --json 2>"$T/err") \
    || fail "fetch with an unwritable cache failed: $(cat "$T/err")"
cmp "$T/snap/mem" "$T/out/mem" || fail "mem differs"
assert_contains "$(cat "$T/err")" "bypassing this cache" "warning"
assert_eq "$(grep -c bypassing "$T/err")" "1" "one warning"
assert_eq "$(echo "$out" | field 'j["tiers"][0]["bypassed"]')" "True" "cache marked bypassed"

: >"$T/notadir"
out=$("$SF" "$id" --store "tiered:dir:$T/notadir|dir:$T/origin" --out "$T/out2" 2>&1) \
    || fail "fetch with a file as the cache failed: $out"
cmp "$T/snap/mem" "$T/out2/mem" || fail "mem differs (file as cache)"
assert_contains "$out" "cannot be opened" "warning for a cache that cannot be opened"
exit 0
