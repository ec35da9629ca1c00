#!/bin/sh
# Two functions on one runtime: base and runtime chunks are stored once; each
# function adds only its own delta.  The same function layer under two tenant keys
# shares no chunk.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
S="dir:$T/store"
mk="$ROOT/bench/chunk/mksnap.sh"
$mk "$T/base" 64 base && $mk "$T/rt" 32 runtime && $mk "$T/fa" 16 fa && $mk "$T/fb" 16 fb || fail "mksnap"
echo 7e7e7e7e0123456789abcdef0123456789abcdef0123456789abcdef01234567 >"$T/t1.key"
printf 'tenant-two-raw-key-0123456789abcdef' >"$T/t2.key"
chmod 600 "$T/t1.key" "$T/t2.key"
objects() { find "$T/store" -path "$T/store/??/*" -type f | wc -l; }
bytes() { find "$T/store" -path "$T/store/??/*" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
# stored ID [KEYFILE]: the layer's stored bytes.
stored() { "$SC" stat "$1" --store "$S" --json ${2:+--key-file "$2"} | sed 's/.*"stored_bytes":\([0-9]*\).*/\1/'; }

base=$("$SC" put "$T/base" --store "$S" --layer base) || fail "put base"
# Each function's build puts the runtime layer it was built on: the second is free.
rt=$("$SC" put "$T/rt" --store "$S" --layer runtime --parent "$base") || fail "put runtime"
n1=$(objects); b1=$(bytes)
j=$("$SC" put "$T/rt" --store "$S" --layer runtime --parent "$base" --json) || fail "put runtime again"
assert_contains "$j" "\"manifest\":\"$rt\"" "same runtime layer, same manifest"
assert_contains "$j" '"new_chunks":0' "runtime chunks stored once"
assert_eq "$(objects)" "$n1" "no new objects for the second runtime put"
fa=$("$SC" put "$T/fa" --store "$S" --layer function --parent "$rt" --key-file "$T/t1.key") || fail "put fa"
fb=$("$SC" put "$T/fb" --store "$S" --layer function --parent "$rt" --key-file "$T/t1.key") || fail "put fb"

# Stored bytes = the distinct chunks of base + runtime + fa + fb, plus four manifests.
total=$(KINDLING_TENANT_KEY=$(cat "$T/t1.key") "$SC" stat "$base" "$rt" "$fa" "$fb" --store "$S" --json) || fail "combined stat"
sum=$(echo "$total" | sed 's/.*"total":{[^}]*"stored_bytes":\([0-9]*\).*/\1/')
manifests=0
for l in "$base" "$rt" "$fa" "$fb"; do manifests=$((manifests + $(stat -c %s "$T/store/$(echo "$l" | cut -c1-2)/$(echo "$l" | cut -c3-)"))); done
assert_eq "$(bytes)" "$((sum + manifests))" "store bytes = distinct chunks of the four layers + manifests"
# The runtime layer is big enough that storing it twice would have shown above.
rts=$(stored "$rt")
[ "$rts" -gt 1000000 ] || fail "runtime layer stores only $rts bytes"

# The same function layer under another tenant: no chunk in common.
fa2=$("$SC" put "$T/fa" --store "$S" --layer function --parent "$rt" --key-file "$T/t2.key") || fail "put fa as tenant 2"
[ "$fa2" != "$fa" ] || fail "two tenants got the same manifest id"
ids() { "$SC" stat "$1" --store "$S" --chunks --key-file "$2" | awk '$1 == "chunk" && $5 != "zero" {print $5}' | sort -u; }
ids "$fa" "$T/t1.key" >"$T/ids1"
ids "$fa2" "$T/t2.key" >"$T/ids2"
[ "$(wc -l <"$T/ids1")" -gt 10 ] || fail "too few chunks listed for fa"
common=$(comm -12 "$T/ids1" "$T/ids2" | wc -l)
assert_eq "$common" "0" "chunks shared between tenants"
# And the store grew by the whole function layer again.
assert_eq "$(bytes)" "$((sum + manifests + $(stat -c %s "$T/store/$(echo "$fa2" | cut -c1-2)/$(echo "$fa2" | cut -c3-)") + $(stored "$fa2" "$T/t2.key")))" "tenant 2's copy stored in full"
# Combined stat counts shared chunks once.
c=$("$SC" stat "$base" "$rt" --store "$S") || fail "combined stat"
assert_contains "$c" "total        2 layers" "combined stat"
exit 0
