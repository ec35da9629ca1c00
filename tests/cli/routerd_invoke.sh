#!/bin/sh
# routerd end to end with the AWS CLI: a hello snapshot behind an assignd (the real
# one if built, else tests/helpers/fake_assignd.py), invoke / list / get through
# SigV4; wrong secret 403, unknown and other tenant's function 404, 7 MB 413,
# Event 202 then run, Log-Type Tail, SIGHUP reload, /metrics; every process cleaned up.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the fake assignd"
command -v aws >/dev/null || skip "the AWS CLI is not installed"
[ -x "$BIN/routerd" ] || skip "routerd not built"

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
cat >"$T/creds" <<EOC
# ACCESS_KEY SECRET TENANT
AKIDALICE0000000 alice-secret 111111111111
AKIDBOB000000000 bob-secret 222222222222
EOC
chmod 600 "$T/creds"
cat >"$T/functions.json" <<EOC
{"functions": [
 {"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 3, "concurrency": 2,
  "versions": {"1": {"snapshot": {"dir": "$T/snap"}}}, "aliases": {"prod": "1"}},
 {"name": "bobfn", "tenant": "222222222222", "memory": 32, "snapshot": {"dir": "$T/snap"}}
]}
EOC
mkdir "$T/sb"
if [ "${ROUTERD_REAL_ASSIGND:-0}" = 1 ] && [ -x "$BIN/assignd" ]; then
    bg "$BIN/assignd" --socket "$T/assignd.sock" --journal "file:$T/journal" --run-dir "$T/sb/run" >"$T/assignd.out" 2>"$T/assignd.err"
else
    bg python3 "$ROOT/tests/helpers/fake_assignd.py" "$T/assignd.sock" "$T/sb" "$BIN/fc-launch" >"$T/assignd.out" 2>"$T/assignd.err"
fi
wait_for_file "$T/assignd.sock" 10 || fail "assignd did not start: $(cat "$T/assignd.err")"

bg "$BIN/routerd" -v --listen 127.0.0.1:0 --functions "$T/functions.json" --credentials "$T/creds" \
    --assignd "$T/assignd.sock" --queue-dir "$T/queue" >"$T/routerd.out" 2>"$T/routerd.err"
RPID=$!
i=0; while [ ! -s "$T/routerd.out" ]; do i=$((i+1)); [ $i -gt 500 ] && fail "routerd: $(cat "$T/routerd.err")"; sleep 0.01; done
ADDR=$(head -1 "$T/routerd.out")
E="--endpoint-url http://$ADDR"
export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDALICE0000000 AWS_SECRET_ACCESS_KEY=alice-secret
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard

# Invoke (cold, then warm), with Log-Type Tail.
aws lambda invoke $E --function-name hello --payload '{"a":1}' --log-type Tail "$T/out.json" >"$T/inv.json" 2>"$T/inv.err" ||
    fail "invoke: $(cat "$T/inv.err") / $(cat "$T/routerd.err")"
assert_eq "$(cat "$T/out.json")" '{"greeting":"hello from kindling nano","request":"{\"a\":1}"}' "invoke answer"
python3 -c "import json,sys,base64; d=json.load(open(sys.argv[1])); l=base64.b64decode(d['LogResult']).decode(); assert 'REPORT RequestId' in l and d['ExecutedVersion']=='\$LATEST', d" "$T/inv.json" ||
    fail "Log-Type Tail / ExecutedVersion: $(cat "$T/inv.json")"
aws lambda invoke $E --function-name hello --qualifier prod --payload '{"a":2}' "$T/out.json" >"$T/inv.json" 2>"$T/inv.err" || fail "invoke prod: $(cat "$T/inv.err")"
assert_contains "$(cat "$T/inv.json")" '"ExecutedVersion": "1"' "alias resolves to version 1"

# ListFunctions / GetFunction only show the caller's functions.
assert_eq "$(aws lambda list-functions $E --query 'Functions[].FunctionName' --output text)" "hello" "alice's functions"
assert_eq "$(AWS_ACCESS_KEY_ID=AKIDBOB000000000 AWS_SECRET_ACCESS_KEY=bob-secret aws lambda list-functions $E --query 'Functions[].FunctionName' --output text)" "bobfn" "bob's functions"
assert_eq "$(aws lambda get-function $E --function-name hello --query 'Configuration.MemorySize' --output text)" "32" "get-function"

# Errors.
out=$(AWS_SECRET_ACCESS_KEY=wrong aws lambda invoke $E --function-name hello --payload '{}' "$T/o" 2>&1) && fail "wrong secret accepted"
assert_contains "$out" "InvalidSignatureException" "wrong secret"
out=$(AWS_ACCESS_KEY_ID=AKIDNOBODY aws lambda list-functions $E 2>&1) && fail "unknown key accepted"
assert_contains "$out" "UnrecognizedClientException" "unknown key"

out=$(aws lambda invoke $E --function-name nope --payload '{}' "$T/o" 2>&1) && fail "unknown function invoked"
assert_contains "$out" "ResourceNotFoundException" "unknown function"
out=$(aws lambda invoke $E --function-name bobfn --payload '{}' "$T/o" 2>&1) && fail "other tenant's function invoked"
assert_contains "$out" "ResourceNotFoundException" "other tenant's function"
out=$(aws lambda invoke $E --function-name hello --qualifier 9 --payload '{}' "$T/o" 2>&1) && fail "bad qualifier invoked"
assert_contains "$out" "ResourceNotFoundException" "bad qualifier"
head -c 7000000 /dev/zero | tr '\0' a >"$T/big"
out=$(aws lambda invoke $E --function-name hello --payload "file://$T/big" "$T/o" 2>&1) && fail "7 MB payload accepted"
assert_contains "$out" "RequestTooLargeException" "7 MB payload"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$ADDR/2015-03-31/functions/hello/invocations" -d '{}')
assert_eq "$code" 403 "unsigned request"

# Event: 202, persisted, then run.
out=$(aws lambda invoke $E --function-name hello --invocation-type Event --payload '{"ev":1}' "$T/o" 2>&1) || fail "event: $out"
assert_contains "$out" '"StatusCode": 202' "event status"
grep -q '^E .* hello \$LATEST 8$' "$T/queue/events.log" || fail "event not in the queue: $(cat "$T/queue/events.log")"
i=0; until grep -q '^D ' "$T/queue/events.log"; do i=$((i+1)); [ $i -gt 500 ] && fail "event never ran: $(cat "$T/routerd.err")"; sleep 0.01; done
out=$(aws lambda invoke $E --function-name hello --invocation-type DryRun --payload '{}' "$T/o" 2>&1) || fail "dry run: $out"
assert_contains "$out" '"StatusCode": 204' "dry run"

# SIGHUP reload: a new function appears.
sed 's/"bobfn"/"bobfn2"/' "$T/functions.json" >"$T/f2" && mv "$T/f2" "$T/functions.json"
kill -HUP "$RPID"
i=0; until grep -q reloaded "$T/routerd.err"; do i=$((i+1)); [ $i -gt 300 ] && fail "no reload"; sleep 0.01; done
assert_eq "$(AWS_ACCESS_KEY_ID=AKIDBOB000000000 AWS_SECRET_ACCESS_KEY=bob-secret aws lambda list-functions $E --query 'Functions[].FunctionName' --output text)" "bobfn2" "after SIGHUP"

# Metrics: $LATEST and version 1 each restored once; the Event ran warm.
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="cold"} 2' "cold starts"
assert_contains "$m" 'kindling_routerd_sandbox_starts_total{start="warm"} 1' "warm start"
assert_contains "$m" 'kindling_routerd_invocations_total{type="Event"} 1' "event counted"
# boto3, the SDK most Lambda clients use, signs and parses the same way.
if python3 -c "import boto3" 2>/dev/null; then
    python3 - "http://$ADDR" <<'PY' || fail "boto3 invoke/list through routerd"
import json, sys, boto3
c = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1")
r = c.invoke(FunctionName="hello", Payload=b'{"sdk":"boto3"}')
assert r["StatusCode"] == 200 and "FunctionError" not in r, r
body = json.loads(r["Payload"].read())
assert body["request"] == '{"sdk":"boto3"}', body
assert [f["FunctionName"] for f in c.list_functions()["Functions"]] == ["hello"]
PY
else
    echo "note: boto3 not importable; skipped the boto3 check" >&2
fi
exit 0
