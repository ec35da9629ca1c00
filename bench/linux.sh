#!/bin/sh
# Linux guest figures: boot to the agent's first answer (cold), snap-make's boot to
# agent ready, and restore to first answer with pages served lazily (uffd) and with
# the access log prefetched (as assignd restores), with their ratios; then the same
# for a Python function on a mkroot.sh root image with an overlay.  Usage:
#   sh bench/linux.sh [BUILD_DIR]        (LINUX_RUNS=N, default 5)
# Needs hardware virtualisation: on PVM hosts it re-runs itself inside the nested-KVM
# host (scripts/hwvirt.sh), where QEMU's TCG emulates everything the L2 guest does
# and every lazily served page costs an emulated exit to fc-launch's handler, so the
# absolute times are scaled by emulation; compare the ratios, measured in the same
# run, not the milliseconds.
set -eu
O=${1:-build}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=${LINUX_RUNS:-5}
BIN=$ROOT/$O/bin
if [ -z "${KINDLING_HWVIRT:-}" ] && { [ -d /sys/module/kvm_pvm ] || ! grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; }; then
    echo "linux: PVM host: running inside the nested-KVM host (figures are TCG-scaled)"
    exec scripts/hwvirt.sh sh bench/linux.sh "$O"
fi
[ -x "$O/bench/answer-bench" ] || { echo "linux: build first (make all bench-bins)"; exit 0; }
GUEST=$ROOT/$O/guest
fail() { echo "linux: $*"; exit 0; }
skip() { echo "linux: skipped: $*"; exit 0; }
. "$ROOT/tests/cli/linux.lib"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

shell_initrd "$T/root" "$(cat <<'EOF'
#!/bin/sh
API=http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime
while :; do
    wget -q -S -O /tmp/event "$API/invocation/next" 2>/tmp/hdr || exit 3
    id=$(sed -n "s/^ *Lambda-Runtime-Aws-Request-Id: *//p" /tmp/hdr | tr -d "\r")
    wget -q -O /dev/null --post-file /tmp/event "$API/invocation/$id/response"
done
EOF
)"
ARGS=$LINUX_ARGS
printf 'ping' >"$T/in"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
stats() {  # label file: median (min-max) of the numbers in file
    sort -n "$2" | awk -v l="$1" '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%-40s %8.1f ms  (%.1f-%.1f, n=%d)\n", l, m, v[1], v[NR], NR}'
}
median() { sort -n "$1" | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

i=0
while [ $i -lt "$RUNS" ]; do
    t0=$(now_ms)
    "$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/root.cpio" --mem 256 --vsock "$T/b$i.sock" \
        --boot-args "$ARGS" >/dev/null 2>&1 &
    "$O/bench/answer-bench" "$T/b$i.sock" "$T/in" 120 >/dev/null
    echo $(($(now_ms) - t0)) >>"$T/cold"
    wait
    "$BIN/snap-make" --json --kernel "$kdir/bzImage" --initrd "$T/root.cpio" --mem 256 --boot-args "$ARGS" \
        --timeout 120 --out "$T/snap$i" | sed 's/.*"init_ms":\([0-9.]*\).*/\1/' >>"$T/ready"
    [ $i -gt 0 ] && rm -rf "$T/snap$i"
    i=$((i + 1))
done
# One restore records the order of first page accesses (the REAP access log assignd
# uses); restores that prefetch it install those pages before the vCPUs run.
"$BIN/fc-launch" --restore "$T/snap0" --record-access "$T/access.log" --vsock "$T/rec.sock" >/dev/null 2>&1 &
"$O/bench/answer-bench" "$T/rec.sock" "$T/in" 120 >/dev/null || fail "recording restore failed"
wait
for mode in lazy prefetch; do
i=0
while [ $i -lt "$RUNS" ]; do
    pf=""; [ $mode = prefetch ] && pf="--prefetch $T/access.log"
    t0=$(now_ms)
    # shellcheck disable=SC2086
    "$BIN/fc-launch" --restore "$T/snap0" $pf --vsock "$T/r$i.sock" >"$T/r$i.console" 2>&1 &
    "$O/bench/answer-bench" "$T/r$i.sock" "$T/in" 120 >/dev/null || { tail -n 20 "$T/r$i.console"; exit 1; }
    echo $(($(now_ms) - t0)) >>"$T/restore-$mode"
    wait
    i=$((i + 1))
done
done
# The same with an unmodified Python runtime booted from a mkroot.sh image under an
# ext4 overlay (tests/cli/linux_python.lib): Python's start-up is the init a
# snapshot saves.  Cold: boot + python3 + import, then the answer.
if command -v mkfs.ext4 >/dev/null; then
    . "$ROOT/tests/cli/linux_python.lib" >/dev/null
    printf '{"name":"bench"}' >"$T/py.in"
    PARGS="$ARGS kindling.function=py"
    i=0
    while [ $i -lt "$RUNS" ]; do
        new_overlay "$T/ov$i.ext4"
        t0=$(now_ms)
        "$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/agent.cpio" --mem 256 --vsock "$T/pb$i.sock" \
            --drive "$T/root.sqfs,ro" --drive "$T/ov$i.ext4" \
            --boot-args "$PARGS kindling.root=/dev/vda kindling.overlay=/dev/vdb" >/dev/null 2>&1 &
        "$O/bench/answer-bench" "$T/pb$i.sock" "$T/py.in" 240 >/dev/null || fail "python cold boot failed"
        echo $(($(now_ms) - t0)) >>"$T/py-cold"
        wait
        rm -f "$T/ov$i.ext4"
        i=$((i + 1))
    done
    "$BIN/snap-make" --json --kernel "$kdir/bzImage" --initrd "$T/agent.cpio" --rootfs "$T/root.sqfs" \
        --overlay-size 32 --mem 256 --boot-args "$PARGS" --timeout 240 --out "$T/pysnap" |
        sed 's/.*"init_ms":\([0-9.]*\).*/\1/' >"$T/py-ready"
    "$BIN/fc-launch" --restore "$T/pysnap" --record-access "$T/py-access.log" --vsock "$T/prec.sock" >/dev/null 2>&1 &
    "$O/bench/answer-bench" "$T/prec.sock" "$T/py.in" 240 >/dev/null || fail "python recording restore failed"
    wait
    i=0
    while [ $i -lt "$RUNS" ]; do
        t0=$(now_ms)
        "$BIN/fc-launch" --restore "$T/pysnap" --prefetch "$T/py-access.log" --vsock "$T/pr$i.sock" >/dev/null 2>&1 &
        "$O/bench/answer-bench" "$T/pr$i.sock" "$T/py.in" 240 >/dev/null || fail "python restore failed"
        echo $(($(now_ms) - t0)) >>"$T/py-restore"
        wait
        i=$((i + 1))
    done
fi

stats "cold boot -> first answer" "$T/cold"
stats "boot -> agent ready (snap-make init_ms)" "$T/ready"
stats "restore -> first answer (lazy pages)" "$T/restore-lazy"
stats "restore -> first answer (prefetched)" "$T/restore-prefetch"
if [ -s "$T/py-restore" ]; then
    stats "python: cold boot -> first answer" "$T/py-cold"
    stats "python: boot -> runtime ready (init_ms)" "$T/py-ready"
    stats "python: restore -> first answer (prefetched)" "$T/py-restore"
    awk -v c="$(median "$T/py-cold")" -v r="$(median "$T/py-restore")" \
        'BEGIN {printf "%-40s %8.1fx (medians; TCG-scaled host: only the ratio carries over)\n", "python: cold / restore", c / r}'
fi
for mode in lazy prefetch; do
    awk -v c="$(median "$T/cold")" -v r="$(median "$T/restore-$mode")" -v m="$mode" \
        'BEGIN {printf "%-40s %8.1fx (medians; TCG-scaled host: only the ratio carries over)\n", "cold / restore (" m ")", c / r}'
done
