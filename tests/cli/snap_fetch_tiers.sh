#!/bin/sh
# snap-fetch through tiered:dir:CACHE|memcached://A,B|dir:ORIGIN: byte-exact, fills
# every tier, the second fetch is served locally, an access log orders the fetch,
# and with the origin gone (renamed) the caches still serve the layer.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
mc=$("$ROOT/scripts/memcached.sh" "$T/mc" 2 | paste -sd, -); [ -n "$mc" ] || skip "memcached could not be started"
PIDS="$PIDS $(cat "$T"/mc/*.pid)"
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 32 1 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
U="tiered:dir:$T/cache|memcached://$mc|dir:$T/origin"
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

j=$("$SF" "$id" --store "$U" --out "$T/out1" --json) || fail "fetch through the tiers failed"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/out1/$f" || fail "$f differs"; done
n=$(echo "$j" | field 'j["chunks"]')
# Every object (chunks + manifest) came from the origin and filled both caches.
assert_eq "$(echo "$j" | field 'j["tiers"][2]["hits"]')" "$((n + 1))" "origin hits"
assert_eq "$(echo "$j" | field 'j["tiers"][0]["fills"]')" "$((n + 1))" "local fills"
assert_eq "$(echo "$j" | field 'j["tiers"][1]["fills"]')" "$((n + 1))" "memcached fills"

# Second fetch: all local.
j=$("$SF" "$id" --store "$U" --out "$T/out2" --json) || fail "second fetch failed"
cmp "$T/snap/mem" "$T/out2/mem" || fail "mem differs on the second fetch"
assert_eq "$(echo "$j" | field 'j["tiers"][0]["hits"]')" "$((n + 1))" "local hits"
assert_eq "$(echo "$j" | field 'j["tiers"][2]["hits"]')" "0" "origin untouched"

# An access log (pages in first-touch order) puts its chunks first.
python3 - "$T/access" <<'PY' || fail "write access log"
import struct, sys
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff
pages = [4096, 17, 1000, 4097, 200]   # chunks 32, 0, 7, 32 (again), 1
body = b"KNACCESS" + struct.pack("<IIQQ", 1, 4096, 32 << 20, len(pages)) + struct.pack("<%dI" % len(pages), *pages)
open(sys.argv[1], "wb").write(body + struct.pack("<I", crc32c(body)))
PY
j=$("$SF" "$id" --store "$U" --out "$T/out3" --order "$T/access" --json) || fail "ordered fetch failed"
cmp "$T/snap/mem" "$T/out3/mem" || fail "mem differs after an ordered fetch"
assert_eq "$(echo "$j" | field 'j["ordered_chunks"]')" "4" "chunks named by the access log"

# Origin gone, local cache gone: memcached serves everything and refills the cache.
mv "$T/origin" "$T/origin.away"
rm -rf "$T/cache"
j=$("$SF" "$id" --store "tiered:dir:$T/cache|memcached://$mc|dir:$T/origin.away" --warm --json) \
    || fail "warm from memcached failed"
assert_eq "$(echo "$j" | field 'j["tiers"][1]["hits"]')" "$((n + 1))" "memcached hits"
rm -rf "$T/origin.away"
out=$("$SF" "$id" --store "$U" --out "$T/out4" 2>&1) || fail "fetch with the origin gone failed: $out"
cmp "$T/snap/mem" "$T/out4/mem" || fail "mem differs with the origin gone"
assert_contains "$out" "tier" "human statistics table"
exit 0
