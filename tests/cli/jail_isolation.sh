#!/bin/sh
# fc-launch --jail: two jailed hello VMs (uids 40001 and 40002) serve invokes while
# each VMM sees only its empty jail directory (no host file), is pid 1 of its own
# pid namespace, has only a loopback interface, holds no capability, has
# no_new_privs, its rlimits and its cgroup; neither can signal the other; a SIGTERM
# stops one with 143 and each leaves no jail directory and no cgroup behind.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_jail
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

start_vm() {  # NAME UID: a jailed hello VM serving $T/NAME.sock; sets $relay
    "$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/$1.sock" --jail "$T/$1" --id "jail-test-$1-$$" \
        --uid "$2" --gid "$2" >"$T/$1.console" 2>"$T/$1.err" &
    relay=$!
    PIDS="$PIDS $relay"
    wait_for_file "$T/$1.sock" 5 || fail "$1: no vsock socket: $(cat "$T/$1.err")"
}
vmm_of() {  # RELAY: the jailed VMM, the relay's only child
    local p
    p=$(cat "/proc/$1/task/$1/children")
    [ -n "$p" ] || fail "relay $1 has no VMM child"
    echo $p
}

start_vm a 40001
relay_a=$relay
start_vm b 40002
relay_b=$relay
a=$(vmm_of "$relay_a")
b=$(vmm_of "$relay_b")

# Files: its root is the (empty) jail directory; nothing of the host is there.
assert_eq "$(stat -L -c %i "/proc/$a/root")" "$(stat -c %i "$T/a")" "VMM a's root is its jail directory"
assert_eq "$(ls -A "/proc/$a/root")" "" "jail a's contents"
[ -e "/proc/$a/root/etc/passwd" ] && fail "VMM a sees the host's /etc/passwd"
[ -e "/proc/$a/root/dev/kvm" ] && fail "VMM a can open /dev/kvm again"

# Processes: pid 1 of a pid namespace of its own.
assert_eq "$(awk '/^NSpid:/ { print $NF }' "/proc/$a/status")" 1 "VMM a's pid in its namespace"
for ns in pid mnt net ipc uts; do
    [ "$(readlink "/proc/$a/ns/$ns")" != "$(readlink /proc/self/ns/$ns)" ] || fail "VMM a shares the host's $ns namespace"
done
[ "$(readlink "/proc/$a/ns/pid")" != "$(readlink "/proc/$b/ns/pid")" ] || fail "the two VMMs share a pid namespace"

# Network: loopback only.
assert_eq "$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' "/proc/$a/net/dev")" lo "VMM a's interfaces"

# Credentials and limits.
status=$(cat "/proc/$a/status")
assert_contains "$status" "$(printf 'Uid:\t40001\t40001\t40001\t40001')" "VMM a's uids"
assert_contains "$status" "$(printf 'Gid:\t40001\t40001\t40001\t40001')" "VMM a's gids"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
    assert_contains "$status" "$(printf '%s:\t0000000000000000' $cap)" "VMM a's $cap"
done
assert_contains "$status" "$(printf 'NoNewPrivs:\t1')" "VMM a's no_new_privs"
limits=$(cat "/proc/$a/limits")
assert_contains "$limits" "Max open files            4096" "RLIMIT_NOFILE"
assert_contains "$limits" "Max processes             17" "RLIMIT_NPROC (1 vCPU + 16)"
assert_contains "$limits" "Max file size             100663296" "RLIMIT_FSIZE (32 + 64 MiB)"
assert_contains "$limits" "Max core file size        0" "RLIMIT_CORE"
assert_contains "$(cat "/proc/$a/cgroup")" "/kindling/jail-test-a-$$" "VMM a's cgroup"

# Neither can signal the other: from a's pid namespace b does not exist, and as a's
# uid (in the host's pid namespace) the kernel refuses.
nsenter -t "$a" -p -S 40001 -G 40001 -- kill -0 "$b" 2>/dev/null && fail "a's pid namespace can signal VMM b"
err=$(setpriv --reuid 40001 --regid 40001 --clear-groups -- kill -0 "$b" 2>&1) && fail "uid 40001 can signal VMM b"
assert_contains "$err" "ermitted" "uid 40001 signalling VMM b"

# Jailed, they still serve.
python3 "$ROOT/tests/cli/nano_client.py" "$T/a.sock" hello-repeat 100 exit 0 >"$T/out" 2>"$T/client" ||
    fail "client a: $(cat "$T/client") / fc-launch: $(cat "$T/a.err")"
wait "$relay_a"
assert_eq "$?" 0 "VM a's exit status after EXIT 0"
kill -TERM "$relay_b"
wait "$relay_b"
assert_eq "$?" 143 "VM b's exit status after SIGTERM"
for vm in a b; do
    [ -e "$T/$vm" ] && fail "jail directory $vm left behind"
    grep -rqs "jail-test-$vm-$$" /proc/self/mountinfo && fail "mount of jail $vm left behind"
    find /sys/fs/cgroup -maxdepth 4 -name "jail-test-$vm-$$" | grep -q . && fail "cgroup of VM $vm left behind"
done
exit 0
