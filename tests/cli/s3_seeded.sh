#!/bin/sh
# Objects uploaded by `aws s3 cp` under the store layout (prefix/ab/cdef...) are read by
# snap-chunk get and verify through s3://.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
. "$ROOT/tests/cli/s3.lib"

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 16 2 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/store" --layer base) || fail "put to dir: failed"
# The dir: store has the same ab/cdef... layout; upload only the objects.
aws --endpoint-url "$EP" s3 cp --recursive --only-show-errors "$T/store/" s3://kt/seeded/ \
    --exclude '*' --include '[0-9a-f][0-9a-f]/*' || fail "aws s3 cp upload failed"
n=$(ls "$T"/store/??/* | wc -l)
assert_eq "$(aws --endpoint-url "$EP" s3 ls --recursive s3://kt/seeded/ | wc -l | tr -d ' ')" "$n" "objects uploaded"

S="s3://kt/seeded?endpoint=$EP"
"$SC" get "$id" --store "$S" --out "$T/out" || fail "get of aws-uploaded objects failed"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/out/$f" || fail "$f differs"; done
v=$("$SC" verify "$id" --store "$S") || fail "verify failed: $v"
assert_contains "$v" "ok, " "verify"
# A missing object is a miss, named by its chunk, not a crash (exit 66).
victim=$(ls "$T"/store/??/* | grep -v "/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-)\$" | head -1)
vk=$(basename "$(dirname "$victim")")/$(basename "$victim")
aws --endpoint-url "$EP" s3 rm --only-show-errors "s3://kt/seeded/$vk" || fail "aws s3 rm failed"
out=$("$SC" get "$id" --store "$S" --out "$T/out2" 2>&1); rc=$?
assert_eq "$rc" "66" "get with a missing chunk: $out"
assert_contains "$out" "$(echo "$vk" | tr -d /)" "the missing chunk is named"
assert_contains "$out" "not in s3://kt/seeded" "the store is named"
exit 0
