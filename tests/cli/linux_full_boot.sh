#!/bin/sh
# A full linux boot: the kindling guest kernel starts /init from an initramfs,
# which prints a marker with our command line and reboots; reboot=k makes the
# kernel reset through the i8042, which ends fc-launch cleanly.  Needs hardware
# virtualisation: on PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
[ -x "$BIN/fc-launch" ] || fail "$BIN/fc-launch not built"
command -v cpio >/dev/null || skip "cpio not installed"

kdir=$("$ROOT/guest/linux/build.sh") || {
    rc=$?
    [ $rc -eq 69 ] && skip "no guest kernel source (guest/linux/build.sh exit 69)"
    fail "guest/linux/build.sh failed (exit $rc)"
}

TOKEN="full-boot-$$"
mkdir -p "$T/root/dev" "$T/root/proc"
cat >"$T/init.c" <<'C'
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    char cmdline[4096] = "";
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    mount("proc", "/proc", "proc", 0, 0);
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
        if (n > 0) cmdline[n] = 0;
        close(fd);
    }
    int con = open("/dev/console", O_WRONLY);
    if (con < 0) con = open("/dev/ttyS0", O_WRONLY);
    const char* m = "KINDLING_INIT_OK pid1 cmdline: ";
    write(con, m, strlen(m));
    write(con, cmdline, strlen(cmdline));
    sync();
    reboot(RB_AUTOBOOT);
    return 1;
}
C
cc -static -Os -o "$T/root/init" "$T/init.c" || skip "cannot build a static init (no static libc?)"
(cd "$T/root" && find . | cpio -o -H newc --quiet) >"$T/initrd.cpio" || fail "cpio failed"

CMDLINE="console=ttyS0 reboot=k panic=1 pci=off rdinit=/init kindling.test=$TOKEN"

for kernel in "$kdir/vmlinux" "$kdir/bzImage"; do
    name=$(basename "$kernel")
    start=$(date +%s)
    timeout 60 "$BIN/fc-launch" --kernel "$kernel" --initrd "$T/initrd.cpio" --boot-args "$CMDLINE" \
        --mem 128 >"$T/$name.console" 2>"$T/$name.err"
    rc=$?
    console=$(cat "$T/$name.console")
    if grep -q "linux guests are not supported" "$T/$name.err"; then
        skip "fc-launch cannot boot linux guests yet: $(cat "$T/$name.err")"
    fi
    [ $rc -eq 124 ] && fail "$name: no clean exit within 60 s; console tail: $(tail -n 5 "$T/$name.console")"
    assert_contains "$console" "KINDLING_INIT_OK pid1 cmdline: $CMDLINE" "$name: init marker"
    assert_eq "$rc" 0 "$name: fc-launch exit status after the guest's reboot"
    echo "$name: init ran, VM ended in $(( $(date +%s) - start ))s"
done
