# A burst of 10 concurrent acquires on a cold function with concurrency 10 restores
# at most 10 sandboxes and every one succeeds and answers; with concurrency 2 the
# extra acquires get 429 TooManyRequestsException after wait_ms, not failures; a
# waiting acquire gets a sandbox as soon as one is released.
# serial: restores 10 VMs at once
. "$(dirname "$0")/../lib.sh"
need_kvm
. "$ROOT/tests/cli/assignd.lib"
N=10

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
start_assignd --capacity 20

burst() {  # burst FUNCTION CONCURRENCY WAIT_MS N
    i=0; CPIDS=""
    while [ $i -lt "$4" ]; do
        curl -s --unix-socket "$T/a.sock" -o "$T/$1.$i.body" -w '%{http_code}' \
            -d '{"function": "'"$1"'", "snapshot": {"dir": "'"$T/snap"'"}, "concurrency": '"$2"', "wait_ms": '"$3"'}' \
            http://a/v1/acquire >"$T/$1.$i.code" &
        CPIDS="$CPIDS $!"
        i=$((i + 1))
    done
    for p in $CPIDS; do wait "$p"; done
}

burst hot $N 10000 $N
i=0
while [ $i -lt $N ]; do
    assert_eq "$(cat "$T/hot.$i.code")" 200 "burst acquire $i: $(cat "$T/hot.$i.body")"
    VS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vsock"])' "$T/hot.$i.body")
    $C "$VS" hello-repeat 2 || fail "sandbox of burst acquire $i does not answer"
    i=$((i + 1))
done
python3 - "$T" $N <<'PY' || fail "burst: sandboxes not distinct or not cold"
import json, sys
t, n = sys.argv[1], int(sys.argv[2])
b = [json.load(open(f"{t}/hot.{i}.body")) for i in range(n)]
assert len({x["sandbox"] for x in b}) == n and len({x["lease"] for x in b}) == n, b
assert all(x["cold"] for x in b), b
PY
R=$(metric kindling_assign_restores_total)
[ "$R" -le $N ] || fail "$R restores for $N acquires (placement storm)"
assert_eq "$R" $N "restores"

# Concurrency 2: two succeed, the rest are throttled after wait_ms.
burst lim 2 300 6
ok=0; thr=0
i=0
while [ $i -lt 6 ]; do
    case $(cat "$T/lim.$i.code") in
    200) ok=$((ok + 1)) ;;
    429) thr=$((thr + 1)); assert_contains "$(cat "$T/lim.$i.body")" TooManyRequestsException ;;
    *) fail "limited acquire $i: $(cat "$T/lim.$i.code") $(cat "$T/lim.$i.body")" ;;
    esac
    i=$((i + 1))
done
assert_eq "$ok/$thr" "2/4" "concurrency 2: successes/throttles"

# A waiting acquire is served by the next release (warm, same sandbox).
L=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lease"])' "$(grep -l 200 "$T"/lim.*.code | head -1 | sed 's/code$/body/')")
curl -s --unix-socket "$T/a.sock" -o "$T/wait.body" -w '%{http_code}' \
    -d '{"function": "lim", "snapshot": {"dir": "'"$T/snap"'"}, "concurrency": 2, "wait_ms": 5000}' \
    http://a/v1/acquire >"$T/wait.code" &
W=$!
wait_metric kindling_assign_acquires_waiting 1
assert_eq "$(api -d '{"lease": "'"$L"'"}' http://a/v1/release)" 204 "release"
wait $W
assert_eq "$(cat "$T/wait.code")" 200 "waiting acquire: $(cat "$T/wait.body")"
assert_contains "$(cat "$T/wait.body")" '"cold":false'

kill -TERM $AD; wait $AD; rc=$?; PIDS=""
assert_eq "$rc" 0 "assignd exit status"
exit 0
