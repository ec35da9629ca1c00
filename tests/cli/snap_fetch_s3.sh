#!/bin/sh
# snap-fetch through tiered:dir:CACHE|memcached://A,B|s3://... with s3rver as the
# origin: byte-exact, fills; S3 stopped with the chunks cached: the fetch completes;
# then everything stopped: a temporary failure (75) naming the first chunk.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
"$ROOT/scripts/s3rver.sh" check 2>"$T/why" || skip "$(cat "$T/why")"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE 2>/dev/null || true
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
field() { python3 -c "import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
mc=$("$ROOT/scripts/memcached.sh" "$T/mc" 2 | paste -sd, -); [ -n "$mc" ] || skip "memcached could not be started"
PIDS="$PIDS $(cat "$T"/mc/*.pid)"
bg "$ROOT/scripts/s3rver.sh" run "$T/s3" kt
s3pid=$!
wait_for_file "$T/s3/endpoint" 20 || fail "s3rver did not start"
S="s3://kt/snaps?endpoint=$(cat "$T/s3/endpoint")&region=us-east-1"
U="tiered:dir:$T/cache|memcached://$mc|$S"

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 32 5 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "put to S3 failed"
j=$("$SF" "$id" --store "$U" --out "$T/out1" --json) || fail "fetch from S3 through the tiers failed"
cmp "$T/snap/mem" "$T/out1/mem" || fail "mem differs"
n=$(echo "$j" | field 'j["chunks"]')
assert_eq "$(echo "$j" | field 'j["tiers"][2]["hits"]')" "$((n + 1))" "S3 served every object"
assert_eq "$(echo "$j" | field 'j["tiers"][1]["fills"]')" "$((n + 1))" "memcached filled"

# S3 stopped, local cache cleared: memcached serves the layer.
kill "$s3pid"; wait "$s3pid" 2>/dev/null
rm -rf "$T/cache"
j=$("$SF" "$id" --store "$U" --out "$T/out2" --json 2>"$T/err") || fail "fetch with S3 stopped failed: $(cat "$T/err")"
cmp "$T/snap/mem" "$T/out2/mem" || fail "mem differs with S3 stopped"
assert_eq "$(echo "$j" | field 'j["tiers"][1]["hits"]')" "$((n + 1))" "memcached served every object"

# Everything stopped, the manifest still cached locally: 75, naming the first chunk.
mf="$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)"
find "$T/cache" -path "$T/cache/??/*" -type f ! -path "*/$mf" -delete
stop_server $(cat "$T"/mc/*.pid)
first=$("$SC" stat "$id" --store "dir:$T/cache" --chunks | awk '$1 == "chunk" && $5 != "zero" { print $5; exit }')
out=$("$SF" "$id" --store "$U" --warm --parallel 1 2>&1); rc=$?
assert_eq "$rc" "75" "exit status with every tier down ($out)"
assert_contains "$out" "error: chunk $first" "error names the first missing chunk"
exit 0
