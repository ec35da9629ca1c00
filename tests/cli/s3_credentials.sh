#!/bin/sh
# Wrong credentials: a clear 403 naming the S3 error, exit 77, one request (no retry
# storm); missing credentials: exit 78 naming the variables; endpoint down: exit 69
# after a bounded number of attempts.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
. "$ROOT/tests/cli/s3.lib"

"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 8 3 || fail "mksnap"
start_proxy good
id=$("$SC" put "$T/snap" --store "s3://kt/c?endpoint=$PEP" --layer base) || fail "put failed"

# Unknown access key: s3rver answers 403 InvalidAccessKeyId.
: >"$T/good.log"
start=$(date +%s%N)
out=$(AWS_ACCESS_KEY_ID=NOTAKEY "$SC" get "$id" --store "s3://kt/c?endpoint=$PEP" --out "$T/o1" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "$out" >&2
assert_eq "$rc" "77" "exit status with an unknown access key ($out)"
assert_contains "$out" "s3://kt/c: GET c/" "the store and object are named"
assert_contains "$out" "403 Forbidden: check AWS credentials (InvalidAccessKeyId" "the cause is named"
assert_eq "$(wc -l <"$T/good.log" | tr -d ' ')" "1" "requests sent with an unknown key (no retries)"
[ "$ms" -lt 2000 ] || fail "a 403 took ${ms} ms"
[ ! -e "$T/o1" ] || fail "get left its output behind"

# Right key, wrong secret: the verifying proxy answers 403 SignatureDoesNotMatch.
start_proxy sig --verify-secret S3RVER
out=$(AWS_SECRET_ACCESS_KEY=wrong "$SC" verify "$id" --store "s3://kt/c?endpoint=$PEP" 2>&1); rc=$?
assert_eq "$rc" "77" "exit status with a wrong secret ($out)"
assert_contains "$out" "403 Forbidden: check AWS credentials (SignatureDoesNotMatch" "the cause is named"
assert_eq "$(wc -l <"$T/sig.log" | tr -d ' ')" "1" "requests sent with a wrong secret (no retries)"
# The same proxy accepts the right secret.
"$SC" verify "$id" --store "s3://kt/c?endpoint=$PEP" >/dev/null || fail "verify with the right secret failed"

# No credentials at all: a configuration error naming the variables, no request.
out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$SC" verify "$id" --store "s3://kt/c?endpoint=$PEP" 2>&1); rc=$?
assert_eq "$rc" "78" "exit status without credentials ($out)"
assert_contains "$out" "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" "the variables are named"

# Nothing listening: unavailable (69) after the bounded retries, quickly.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s%N)
out=$("$SC" verify "$id" --store "s3://kt/c?endpoint=http://127.0.0.1:$port" 2>&1); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
assert_eq "$rc" "69" "exit status with the endpoint down ($out)"
assert_contains "$out" "(after 4 attempts)" "attempts are reported"
[ "$ms" -lt 5000 ] || fail "giving up on a closed port took ${ms} ms"
exit 0
