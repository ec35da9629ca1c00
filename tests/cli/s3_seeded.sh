#!/bin/sh
# Objects uploaded by `aws s3 cp` under the store layout (prefix/ab/cdef...) are read by
# snap-chunk get and verify through s3://.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
# s3rver + the AWS CLI with s3rver's one account (scripts/s3rver.sh), nothing from ~/.aws.
"$ROOT/scripts/s3rver.sh" check 2>"$T/why" || skip "$(cat "$T/why")"
command -v aws >/dev/null 2>&1 || skip "no aws CLI (scripts/install-deps.sh installs awscli)"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE="$T/none" AWS_SHARED_CREDENTIALS_FILE="$T/none" AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION 2>/dev/null || true
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
bg "$ROOT/scripts/s3rver.sh" run "$T/s3" kt
wait_for_file "$T/s3/endpoint" 20 || fail "s3rver did not start"
EP=$(cat "$T/s3/endpoint")
# start_proxy NAME [s3_faulty_proxy.py options]: a proxy in front of s3rver; sets PEP.
start_proxy() {
    pname=$1; shift
    bg python3 "$ROOT/tests/cli/s3_faulty_proxy.py" "$EP" "$T/$pname.port" "$T/$pname.log" "$@"
    wait_for_file "$T/$pname.port" 10 || fail "proxy $pname did not start"
    PEP=http://127.0.0.1:$(cat "$T/$pname.port")
}

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
