#!/bin/sh
# S3 answering 503 a few times, or too slowly, for every object: the store retries with
# backoff and the get is byte-exact; a server that keeps failing gives exit 75 after
# exactly the bounded number of attempts (4) per object.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
. "$ROOT/tests/cli/s3.lib"

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 5 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "s3://kt/r?endpoint=$EP" --layer base) || fail "put failed"
objects=$(aws --endpoint-url "$EP" s3 ls --recursive s3://kt/r/ | wc -l)

# Two 503 SlowDown answers for every GET before the real one.
start_proxy flaky --fail-per-key 2 --status 503 --methods GET
"$SC" get "$id" --store "s3://kt/r?endpoint=$PEP" --out "$T/o1" --threads 4 || fail "get through 503s failed"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/o1/$f" || fail "$f differs after retries"; done
assert_eq "$(grep -c ' 503 injected' "$T/flaky.log")" "$((2 * objects))" "503s served"
assert_eq "$(grep -c '^GET .* 200' "$T/flaky.log")" "$objects" "successful GETs (one per object)"

# 500 Internal Server Error is retried the same way.
start_proxy err500 --fail-per-key 1 --status 500 --methods GET
"$SC" verify "$id" --store "s3://kt/r?endpoint=$PEP" >/dev/null || fail "verify through 500s failed"
assert_eq "$(grep -c ' 500 injected' "$T/err500.log")" "$objects" "500s served"

# The first answer for every object takes 3 s; with timeout=1 the store gives up on
# it and the retry is answered at once.
start_proxy slow --slow-per-key 1 --delay 3 --methods GET
start=$(date +%s)
"$SC" get "$id" --store "s3://kt/r?endpoint=$PEP&timeout=1" --out "$T/o2" --threads 4 || fail "get through slow answers failed"
secs=$(( $(date +%s) - start ))
cmp "$T/snap/mem" "$T/o2/mem" || fail "mem differs after timeouts"
assert_eq "$(grep -c ' slow$' "$T/slow.log")" "$objects" "slow answers"
[ "$secs" -lt $((objects * 3 / 4 + 5)) ] || fail "get took ${secs}s: timeouts not applied"

# Always 503: exit 75, 4 attempts for the object that failed, no more.
start_proxy down --fail-per-key 1000 --status 503 --methods GET
out=$("$SC" get "$id" --store "s3://kt/r?endpoint=$PEP" --out "$T/o3" 2>&1); rc=$?
assert_eq "$rc" "75" "exit status when S3 keeps failing ($out)"
assert_contains "$out" "503 Service Unavailable (SlowDown" "the status is named"
assert_contains "$out" "after 4 attempts" "the attempts are named"
most=$(cut -d' ' -f2 "$T/down.log" | sort | uniq -c | sort -rn | head -1 | awk '{print $1}')
assert_eq "$most" "4" "most requests for one object"
exit 0
