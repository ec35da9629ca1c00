#!/bin/sh
# Garbage stored in memcached under a chunk's key (by an independent client speaking
# the text protocol) is detected, not served, named with its tier, dropped from
# memcached, and the chunk comes from the origin.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
mc=$("$ROOT/scripts/memcached.sh" "$T/mc" 2 | paste -sd, -); [ -n "$mc" ] || skip "memcached could not be started"
PIDS="$PIDS $(cat "$T"/mc/*.pid)"
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 3 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
victim=$("$SC" stat "$id" --store "dir:$T/origin" --chunks | awk '$1 == "chunk" && $5 != "zero" { print $5; exit }')
U="tiered:memcached://$mc|dir:$T/origin"
"$SF" "$id" --store "$U" --warm -q || fail "warm failed"

# Overwrite the chunk on every node (whichever holds it) with garbage.
python3 - "$mc" "kn:$victim" <<'PY' || fail "set garbage in memcached"
import socket, sys
data = b"not the chunk" * 1000
for hp in sys.argv[1].split(","):
    h, p = hp.split(":")
    s = socket.create_connection((h, int(p)), 2)
    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (sys.argv[2].encode(), len(data), data))
    assert s.recv(100).startswith(b"STORED"), "memcached did not store"
    s.close()
PY
out=$("$SF" "$id" --store "$U" --out "$T/out" --json 2>"$T/err") || fail "fetch failed: $(cat "$T/err")"
cmp "$T/snap/mem" "$T/out/mem" || fail "mem differs: a corrupt chunk was served"
assert_contains "$(cat "$T/err")" "chunk $victim: tier 0 (memcached://$mc)" "warning names the chunk and tier"
assert_eq "$(echo "$out" | field 'j["tiers"][0]["corrupt"]')" "1" "corrupt count of memcached"
assert_eq "$(echo "$out" | field 'j["tiers"][1]["hits"]')" "1" "the origin served the corrupt chunk"
# Dropped and refilled with the good bytes: the next fetch is clean.
out=$("$SF" "$id" --store "$U" --warm --json 2>"$T/err") || fail "second fetch failed"
assert_eq "$(echo "$out" | field 'j["tiers"][0]["corrupt"]')" "0" "no corrupt object left"
assert_eq "$(echo "$out" | field 'j["tiers"][1]["hits"]')" "0" "all from memcached"
exit 0
