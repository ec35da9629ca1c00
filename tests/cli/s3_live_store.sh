#!/bin/sh
# The s3:// store's own API against s3rver (the unit test case "s3 store: live
# endpoint"): has/get/put/remove, a bucket that does not exist, 1100 objects put by
# 8 threads on one store and listed back through two ListObjectsV2 pages.
. "$(dirname "$0")/../lib.sh"
UNIT=$ROOT/$O/tests/unit-tests
[ -x "$UNIT" ] || fail "$UNIT not built"
"$ROOT/scripts/s3rver.sh" check 2>"$T/why" || skip "$(cat "$T/why")"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_REGION 2>/dev/null || true
bg "$ROOT/scripts/s3rver.sh" run "$T/s3" live
wait_for_file "$T/s3/endpoint" 20 || fail "s3rver did not start"
out=$(KINDLING_S3_ENDPOINT=$(cat "$T/s3/endpoint") KINDLING_S3_BUCKET=live \
      "$UNIT" -tc="s3 store: live endpoint*" 2>&1) || fail "live store test failed: $out"
echo "$out" | grep -Eq "test cases: +1 \| +1 passed" || fail "the live case did not run: $out"
exit 0
