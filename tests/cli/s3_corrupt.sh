#!/bin/sh
# A chunk object overwritten in S3 (aws s3 cp) is detected: verify names the chunk and
# exits 65, get refuses to write it.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
. "$ROOT/tests/cli/s3.lib"

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
