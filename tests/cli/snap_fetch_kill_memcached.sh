#!/bin/sh
# A memcached node killed in the middle of a fetch: the fetch completes (from the
# other node and the origin) with no error, byte-exact; restarting it refills.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
mc=$("$ROOT/scripts/memcached.sh" "$T/mc" 2 | paste -sd, -); [ -n "$mc" ] || skip "memcached could not be started"
PIDS="$PIDS $(cat "$T"/mc/*.pid)"
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 96 2 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
"$SF" "$id" --store "tiered:memcached://$mc|dir:$T/origin" --warm -q || fail "warming memcached failed"

# One request at a time with a fresh local cache, so the fetch takes a while; kill
# node 1 once the first objects have reached the local cache.
"$SF" "$id" --store "tiered:dir:$T/cache|memcached://$mc|dir:$T/origin" --out "$T/out" --parallel 1 --json \
    >"$T/json" 2>"$T/err" &
fetch=$!
i=0
while [ "$(find "$T/cache" -path "$T/cache/??/*" -type f 2>/dev/null | wc -l)" -lt 3 ]; do
    i=$((i + 1)); [ $i -gt 1000 ] && break
    sleep 0.005
done
kill -9 "$(cat "$T/mc/memcached.1.pid")"
wait $fetch || fail "fetch failed after a memcached node was killed: $(cat "$T/err")"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/out/$f" || fail "$f differs"; done
j=$(cat "$T/json")
n=$(echo "$j" | field 'j["chunks"]')
hits=$(( $(echo "$j" | field 'j["tiers"][1]["hits"]') + $(echo "$j" | field 'j["tiers"][2]["hits"]') ))
assert_eq "$hits" "$((n + 1))" "every object served by memcached or the origin"
[ "$(echo "$j" | field 'j["tiers"][2]["hits"]')" -gt 0 ] || fail "the killed node's keys were not served by the origin: $j"
[ "$(echo "$j" | field 'j["tiers"][1]["hits"]')" -gt 0 ] || fail "the live node served nothing: $j"

# Restart node 1 on its port: a warm refills it.
port=$(cut -d: -f2 "$T/mc/memcached.1.addr")
u=""; [ "$(id -u)" = 0 ] && u="-u root"
# shellcheck disable=SC2086
memcached -d -l 127.0.0.1 -p "$port" -U 0 -m 64 -I 2m $u -P "$T/mc/memcached.1.pid" || fail "restart memcached"
PIDS="$PIDS $(sleep 0.2; cat "$T/mc/memcached.1.pid")"
j=$("$SF" "$id" --store "tiered:memcached://$mc|dir:$T/origin" --warm --json) || fail "refill failed"
[ "$(echo "$j" | field 'j["tiers"][0]["fills"]')" -gt 0 ] || fail "the restarted node was not refilled: $j"
j=$("$SF" "$id" --store "tiered:memcached://$mc|dir:$T/origin" --warm --json) || fail "second warm failed"
assert_eq "$(echo "$j" | field 'j["tiers"][1]["hits"]')" "0" "after the refill memcached serves everything"
exit 0
