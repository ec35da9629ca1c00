#!/bin/sh
# routerd under hostile input answers the documented errors and keeps serving: a
# malformed JSON payload is the function's business (forwarded as is), huge headers
# 431, malformed HTTP 400, bad qualifiers 404/400, a bad invocation type 400, invalid
# UTF-8 in a qualifier or header is a 4xx, not a 500; no sandbox is leaked.
. "$(dirname "$0")/../lib.sh"
need_kvm

. "$ROOT/tests/cli/routerd.lib"

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >"$T/snap.log" 2>&1 || fail "snap-make: $(cat "$T/snap.log")"
cat >"$T/functions.json" <<EOC
{"functions": [{"name": "hello", "tenant": "111111111111", "memory": 32, "timeout": 3, "concurrency": 2,
                "versions": {"1": {"snapshot": {"dir": "$T/snap"}}}, "aliases": {"prod": "1"}}]}
EOC
start_assignd
start_routerd
I=/2015-03-31/functions
status() { echo "$1" | sed -n 1p; }
etype() { echo "$1" | sed -n 3p; }

# Malformed JSON payload: routerd does not parse payloads; hello quotes it back.
out=$(invoke hello '{"a":') || fail "invoke: $out"
assert_eq "$(status "$out")" 200 "malformed JSON payload"
echo "$out" | sed -n '4,$p' | python3 -c 'import json,sys; assert json.load(sys.stdin)["request"] == "{\"a\":"' ||
    fail "malformed JSON payload answer: $out"

# Huge headers: one 20 KB field, or 2000 small ones (limit 16 KiB) -> 431.
big=$(head -c 20000 /dev/zero | tr '\0' x)
code=$(curl -s -o "$T/body" -w '%{http_code}' -X POST -H "X-Big: $big" "http://$ADDR$I/hello/invocations" -d '{}')
assert_eq "$code" 431 "20 KB header"
assert_contains "$(cat "$T/body")" '"message"' "431 body"
python3 -c 'import sys; sys.stdout.write("".join("-H\nX-H%d: %s\n" % (i, "y" * 8) for i in range(2000)))' >"$T/many"
code=$(xargs -d '\n' curl -s -o /dev/null -w '%{http_code}' -X POST "http://$ADDR$I/hello/invocations" -d '{}' <"$T/many")
assert_eq "$code" 431 "2000 header fields"

# Malformed HTTP.
printf 'GARBAGE\r\n\r\n' >"$T/garbage"
resp=$(python3 -c '
import socket, sys
s = socket.create_connection(sys.argv[1].rsplit(":", 1)); s.sendall(open(sys.argv[2], "rb").read())
print(s.recv(4096).decode(errors="replace").split("\r\n")[0])' "$ADDR" "$T/garbage")
assert_contains "$resp" "HTTP/1.1 400" "malformed request line"

# Bad qualifiers.
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/hello/invocations?Qualifier=9" '{}')
assert_eq "$(status "$out") $(etype "$out")" "404 ResourceNotFoundException" "unknown version"
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/hello:prod/invocations?Qualifier=1" '{}')
assert_eq "$(status "$out") $(etype "$out")" "400 InvalidParameterValueException" "path and query qualifiers differ"
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Afunction%3Ahello%3Anope/invocations" '{}')
assert_eq "$(status "$out") $(etype "$out")" "404 ResourceNotFoundException" "unknown alias in an ARN"
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/hello/invocations?Qualifier=%FF%FE" '{}')
assert_eq "$(status "$out") $(etype "$out")" "404 ResourceNotFoundException" "qualifier of invalid UTF-8"
long=$(head -c 8000 /dev/zero | tr '\0' q)
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/hello/invocations?Qualifier=$long" '{}')
assert_eq "$(status "$out") $(etype "$out")" "404 ResourceNotFoundException" "8000-byte qualifier"
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/a:b:c:d/invocations" '{}')
assert_eq "$(status "$out") $(etype "$out")" "404 ResourceNotFoundException" "name with colons"

# Bad invocation types.
out=$(python3 - "$T" "$ADDR" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); import lam
for t in [b"Sideways", b"Event\xff\xfe"]:  # not signed: the verifier ignores unsigned fields
    s, h, b = lam.call(sys.argv[2], "POST", "/2015-03-31/functions/hello/invocations", b"{}",
                       unsigned={"X-Amz-Invocation-Type": t})
    print(s, h.get("x-amzn-errortype"))
PY
)
assert_eq "$out" "400 InvalidParameterValueException
400 InvalidParameterValueException" "bad invocation types"

# Still serving; one sandbox, idle, nothing leaked.
out=$(python3 "$T/lam.py" "$ADDR" POST "$I/hello/invocations?Qualifier=prod" '{"ok":1}')
assert_eq "$(status "$out")" 200 "invoke after the hostile requests"
kill -0 "$RPID" || fail "routerd died"
wait_all_idle 2
m=$(curl -s "http://$ADDR/metrics")
assert_contains "$m" 'kindling_routerd_errors_total{kind="service"} 0' "no service errors"
exit 0
