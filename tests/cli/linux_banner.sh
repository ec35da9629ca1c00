#!/bin/sh
# fc-launch boots the kindling guest kernel (vmlinux and bzImage) with the 64-bit
# boot protocol: the serial console shows the Linux banner, the e820 map we gave,
# our command line and the initrd where we put it (top of RAM, page aligned).
# On PVM hosts Linux dies soon after; that is expected.
# serial: boots a Linux kernel twice (CPU heavy; waits on console output with a time limit)
. "$(dirname "$0")/../lib.sh"

need_kvm
[ -x "$BIN/fc-launch" ] || fail "$BIN/fc-launch not built"

kdir=$("$ROOT/guest/linux/build.sh") || {
    rc=$?
    [ $rc -eq 69 ] && skip "no guest kernel source (guest/linux/build.sh exit 69)"
    fail "guest/linux/build.sh failed (exit $rc)"
}

MEM_MIB=128
CMDLINE="console=ttyS0 earlyprintk=serial reboot=k panic=1 pci=off kindling.test=banner-$$"
# e820 as fc-launch lays out 128 MiB: [0, 0x9fc00) and [1 MiB, 128 MiB).
E820_LOW="BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable"
E820_HIGH="BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"
# A 10000-byte initrd ends at 128 MiB: it starts at (128 MiB - 10000) & ~0xfff.
head -c 10000 /dev/zero >"$T/initrd"
RAMDISK="RAMDISK: [mem 0x07ffd000-0x07ffffff]"

# boot KERNEL LIMIT_SECONDS: runs fc-launch until the console shows the command
# line and the e820 map, it exits, or the limit passes; then stops it.
boot() {
    kernel=$1 limit=$2 name=$(basename "$1")
    out=$T/$name.console err=$T/$name.err
    "$BIN/fc-launch" --kernel "$kernel" --initrd "$T/initrd" --boot-args "$CMDLINE" \
        --mem $MEM_MIB >"$out" 2>"$err" &
    pid=$!
    PIDS="$PIDS $pid"
    start=$(date +%s)
    while kill -0 "$pid" 2>/dev/null; do
        if grep -qF "Command line: $CMDLINE" "$out" && grep -qF "$RAMDISK" "$out"; then break; fi
        [ $(( $(date +%s) - start )) -ge "$limit" ] && break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    elapsed=$(( $(date +%s) - start ))
    if grep -q "linux guests are not supported" "$err"; then
        skip "fc-launch cannot boot linux guests yet: $(cat "$err")"
    fi
    console=$(cat "$out")
    echo "$name: $(grep -c . "$out") console lines in ${elapsed}s"
    [ -s "$out" ] || fail "$name: no console output in ${elapsed}s; fc-launch said: $(cat "$err")"
    assert_contains "$console" "Linux version 6.1" "$name: kernel banner"
    assert_contains "$console" "Command line: $CMDLINE" "$name: command line"
    assert_contains "$console" "$E820_LOW" "$name: e820 low RAM"
    assert_contains "$console" "$E820_HIGH" "$name: e820 RAM above 1 MiB"
    assert_contains "$console" "$RAMDISK" "$name: initrd placement"
    # Exactly the two entries we gave: no others invented along the way.
    n=$(grep -c '^BIOS-e820:' "$out")
    assert_eq "$n" 2 "$name: number of e820 entries"
}

boot "$kdir/vmlinux" 60
# The bzImage first runs its decompressor in guest ring 0, which PVM emulates
# (about 20 s here for the LZ4 payload).
boot "$kdir/bzImage" 180
