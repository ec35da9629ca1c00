#!/bin/sh
# snap-chunk put --store s3://: the AWS CLI lists the objects under the store layout and
# downloads them, each hashing to its key; every request carries a valid SigV4
# signature (checked by the proxy); get is byte-exact and verify passes.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
. "$ROOT/tests/cli/s3.lib"

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 32 1 || fail "mksnap"
start_proxy sig --verify-secret S3RVER
S="s3://kt/snaps/a?endpoint=$PEP&region=us-east-1"
j=$("$SC" put "$T/snap" --store "$S" --layer base --json --threads 4) || fail "put to $S failed"
id=$(echo "$j" | sed -n 's/.*"manifest":"\([0-9a-f]*\)".*/\1/p')
echo "$id" | grep -Eq '^[0-9a-f]{64}$' || fail "put printed no manifest id: $j"
new=$(echo "$j" | sed -n 's/.*"new_chunks":\([0-9]*\).*/\1/p')
[ "${new:-0}" -gt 10 ] || fail "put stored only '$new' chunks: $j"
! grep -q 'bad-' "$T/sig.log" || fail "requests with a bad signature or payload hash: $(grep 'bad-' "$T/sig.log" | head -3)"
grep -q '^PUT ' "$T/sig.log" || fail "no PUT went through the verifying proxy"

# The AWS CLI sees one object per chunk plus the manifest, at snaps/a/ab/cdef...
aws --endpoint-url "$EP" s3 ls --recursive s3://kt/snaps/a/ >"$T/ls" || fail "aws s3 ls failed"
assert_eq "$(wc -l <"$T/ls" | tr -d ' ')" "$((new + 1))" "objects listed by aws s3 ls"
! grep -Evq ' snaps/a/[0-9a-f]{2}/[0-9a-f]{62}$' "$T/ls" || fail "unexpected key layout: $(head -3 "$T/ls")"
mkey="snaps/a/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)"
grep -q " $mkey\$" "$T/ls" || fail "manifest $mkey not listed"
# Every object downloaded by the CLI hashes to its key.
aws --endpoint-url "$EP" s3 cp --recursive --only-show-errors s3://kt/snaps/a/ "$T/dl/" || fail "aws s3 cp failed"
n=0
for o in "$T"/dl/??/*; do
    k=$(basename "$(dirname "$o")")$(basename "$o")
    assert_eq "$(sha256sum <"$o" | cut -c1-64)" "$k" "object $k downloaded by aws s3 cp"
    n=$((n + 1))
done
assert_eq "$n" "$((new + 1))" "objects downloaded"

# A second put finds everything there (HEAD) and sends nothing.
j2=$("$SC" put "$T/snap" --store "$S" --layer base --json) || fail "second put failed"
assert_contains "$j2" '"new_chunks":0' "second put stores nothing new"

"$SC" get "$id" --store "$S" --out "$T/out" --threads 4 || fail "get failed"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/out/$f" || fail "$f differs after the S3 round trip"; done
v=$("$SC" verify "$id" --store "$S") || fail "verify failed: $v"
assert_contains "$v" "ok, " "verify"
! grep -q 'bad-' "$T/sig.log" || fail "requests with a bad signature: $(grep 'bad-' "$T/sig.log" | head -3)"
exit 0
