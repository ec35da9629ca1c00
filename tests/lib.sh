# Shared helpers for tests/cli/*.sh.  Each test sources this file, runs in its own
# temp dir ($T), and exits 0 (pass), 1 (fail) or 77 (skip, with the reason printed).
set -u

O=${O:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/$O/bin
GUEST=$ROOT/$O/guest
T=$(mktemp -d "${TMPDIR:-/tmp}/kindling-test.XXXXXX")
PIDS=""

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

need_kvm() {
    [ -c /dev/kvm ] || skip "no /dev/kvm on this host"
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm not accessible to $(id -un)"
}

need_fuse() {
    [ -c /dev/fuse ] || skip "no /dev/fuse on this host"
    [ -r /dev/fuse ] && [ -w /dev/fuse ] || skip "/dev/fuse not accessible to $(id -un)"
    command -v fusermount3 >/dev/null || skip "fusermount3 (fuse3) is not installed"
}

# Is the host's KVM PVM (no hardware virtualisation; guest ring 0 emulated)?
# fc-launch --jail: root, namespaces and a cgroup hierarchy with the memory controller.
need_jail() {
    [ "$(id -u)" = 0 ] || skip "--jail needs root"
    unshare -p -f -m -i -u -n true 2>/dev/null || skip "cannot create pid/mount/ipc/uts/net namespaces here"
    local t dir opts have=""
    while read -r t dir opts; do
        case $t in
        cgroup2) grep -qw memory "$dir/cgroup.controllers" 2>/dev/null && have=1 ;;
        cgroup) case ,$opts, in *,memory,*) have=1 ;; esac ;;
        esac
    done <<EOF
$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") print $(i + 1), $5, $(i + 3) }' /proc/self/mountinfo)
EOF
    [ -n "$have" ] || skip "no cgroup hierarchy with the memory controller here"
}

is_pvm() {
    [ -d /sys/module/kvm_pvm ] && return 0
    ! grep -qE '\b(vmx|svm)\b' /proc/cpuinfo
}

# need_linux_kvm "$@": the test boots Linux guests, which need hardware virtualisation.
# On a PVM host the test re-runs itself inside the nested-KVM host of
# scripts/hwvirt.sh (QEMU/TCG emulating AMD SVM); it skips (77) with the reason when
# that cannot run here.  Call it first, before the test makes anything.
need_linux_kvm() {
    if [ -z "${KINDLING_HWVIRT:-}" ] && is_pvm; then
        rm -rf "$T"
        trap - EXIT
        exec "$ROOT/scripts/hwvirt.sh" sh "$0" "$@"
    fi
    need_kvm
    is_pvm && skip "host KVM is PVM and this is already the nested host: no hardware virtualisation"
    return 0
}

# bg CMD...: run in the background, remember the pid for cleanup.
bg() { "$@" & PIDS="$PIDS $!"; }

# wait_for_file PATH [SECONDS]
wait_for_file() {
    local i n
    i=0; n=$(( ${2:-5} * 100 ))
    while [ ! -e "$1" ]; do
        i=$((i + 1)); [ $i -gt $n ] && return 1
        sleep 0.01
    done
}

# stop_server PID...: SIGTERM, then wait (bounded) until each process is gone: a
# server still answering while it dies makes the next step's outcome a race.
stop_server() {
    local p i
    for p in "$@"; do kill "$p" 2>/dev/null; done
    for p in "$@"; do
        i=0
        while kill -0 "$p" 2>/dev/null; do
            i=$((i + 1)); [ $i -gt 500 ] && fail "process $p did not exit after SIGTERM"
            sleep 0.01
        done
    done
}

assert_eq() { [ "$1" = "$2" ] || fail "${3:-values differ}: expected '$2', got '$1'"; }
assert_contains() {
    case "$1" in *"$2"*) ;; *) fail "${3:-missing text}: '$2' not in: $1" ;; esac
}
