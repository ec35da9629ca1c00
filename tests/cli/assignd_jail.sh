#!/bin/sh
# assignd --jail: every sandbox's VMM is jailed (own pid and network namespaces, uid
# --jail-uid + N, no capabilities, root = its jail directory), answers invokes warm
# and cold, survives a kill -9 and restart of assignd, and a SIGTERM to assignd stops the sandboxes and leaves no jail
# directory behind.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_jail
. "$ROOT/tests/cli/assignd.lib"

"$BIN/snap-make" --nano "$GUEST/hello.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
start_assignd --jail "$T/jail" --jail-uid 41000 --jail-gid 41000

ACQ='{"function": "hello", "version": "1", "snapshot": {"dir": "'"$T/snap"'"}, "wait_ms": 1000}'
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire: $(cat "$T/body")"
SB=$(field sandbox); VS=$(field vsock); L1=$(field lease)
printf '{"n":1}' >"$T/p"
assert_eq "$($C "$VS" invoke "$T/p")" 'OK {"greeting":"hello from kindling nano","request":"{\"n\":1}"}' "invoke"

api http://a/v1/sandboxes >/dev/null
relay=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["pid"])' "$T/body")
vmm=$(echo $(cat "/proc/$relay/task/$relay/children"))
[ -n "$vmm" ] || fail "sandbox $SB (pid $relay) has no jailed VMM child"
n=${SB#sb-}
assert_contains "$(cat "/proc/$vmm/status")" "$(printf 'Uid:\t%s' $((41000 + n)))" "sandbox VMM's uid"
assert_contains "$(cat "/proc/$vmm/status")" "$(printf 'CapEff:\t0000000000000000')" "sandbox VMM's capabilities"
assert_eq "$(stat -L -c %i "/proc/$vmm/root")" "$(stat -c %i "$T/jail/$SB")" "sandbox VMM's root"
for ns in pid net mnt; do
    [ "$(readlink "/proc/$vmm/ns/$ns")" != "$(readlink /proc/self/ns/$ns)" ] || fail "sandbox shares the host's $ns namespace"
done
assert_contains "$(cat "/proc/$vmm/cgroup")" "/kindling/jail/$SB" "sandbox VMM's cgroup"

assert_eq "$(api -d '{"lease": "'"$L1"'", "outcome": "ok"}' http://a/v1/release)" 204 "release"
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "warm acquire"
assert_eq "$(field sandbox)" "$SB" "warm acquire: same sandbox"
$C "$VS" hello-repeat 5 || fail "warm jailed sandbox does not answer"
assert_eq "$(api -d '{"lease": "'"$(field lease)"'", "outcome": "ok"}' http://a/v1/release)" 204 "release 2"

# kill -9 assignd: after a restart the jailed sandbox (relay and VMM) is recognised
# as live, not killed as a stray, and served warm.
kill -9 $AD
wait $AD 2>/dev/null
start_assignd --jail "$T/jail" --jail-uid 41000 --jail-gid 41000
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "acquire after restart: $(cat "$T/body")"
assert_eq "$(field sandbox)" "$SB" "after restart: same sandbox"
assert_eq "$(field cold)" False "after restart: warm"
kill -0 "$vmm" 2>/dev/null || fail "the jailed VMM was killed by the restart"
$C "$VS" hello-repeat 5 || fail "jailed sandbox does not answer after the restart"

kill -TERM $AD
wait $AD
assert_eq "$?" 0 "assignd exit status on SIGTERM"
PIDS=""
kill -0 "$vmm" 2>/dev/null && fail "jailed VMM $vmm still runs after assignd stopped"
[ -e "$T/jail/$SB" ] && fail "jail directory $SB left behind"
exit 0
