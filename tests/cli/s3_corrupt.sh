#!/bin/sh
# A chunk object overwritten in S3 (aws s3 cp) is detected: verify names the chunk and
# exits 65, get refuses to write it.
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

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 4 || fail "mksnap"
S="s3://kt/x?endpoint=$EP"
id=$("$SC" put "$T/snap" --store "$S" --layer base) || fail "put failed"
aws --endpoint-url "$EP" s3 ls --recursive s3://kt/x/ | awk '{print $4}' >"$T/keys" || fail "aws s3 ls failed"
victim=$(grep -v "$(echo "$id" | cut -c3-)\$" "$T/keys" | head -1)
[ -n "$victim" ] || fail "no chunk object listed"
vid=$(echo "$victim" | cut -d/ -f2,3 | tr -d /)
aws --endpoint-url "$EP" s3 cp --only-show-errors "s3://kt/$victim" "$T/obj" || fail "download failed"
# Flip one byte in the middle, same length.
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=1; open(p,"wb").write(b)' "$T/obj"
aws --endpoint-url "$EP" s3 cp --only-show-errors "$T/obj" "s3://kt/$victim" || fail "upload of the corrupt object failed"

out=$("$SC" verify "$id" --store "$S" 2>&1); rc=$?
assert_eq "$rc" "65" "verify exit status ($out)"
assert_contains "$out" "$vid" "verify names the corrupt chunk"
assert_contains "$out" "do not match the id" "verify says why"
out=$("$SC" get "$id" --store "$S" --out "$T/out" 2>&1); rc=$?
assert_eq "$rc" "65" "get exit status ($out)"
assert_contains "$out" "chunk $vid" "get names the corrupt chunk"
[ ! -e "$T/out" ] || fail "get left a partial output"
exit 0
