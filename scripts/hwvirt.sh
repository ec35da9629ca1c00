#!/bin/sh
# hwvirt.sh: run a command as root inside a nested-KVM test host, for hosts whose own
# /dev/kvm cannot boot Linux guests (PVM: guest ring 0 is emulated and Linux dies in
# early boot).  QEMU's TCG emulates AMD SVM, so a Debian kernel booted under
# `qemu-system-x86_64 -accel tcg -cpu max` loads kvm-amd and gets a real /dev/kvm.
#
#   scripts/hwvirt.sh --prepare          download and unpack what it needs (install-deps runs this)
#   scripts/hwvirt.sh [OPTIONS] CMD...   run CMD inside; its output on stdout, its exit status ours
#
# Inside: the host's root file system read-only (virtio-9p) with tmpfs on /tmp, /run,
# /var/tmp and /root, proc/sys/dev mounted, loopback up, /dev/kvm from kvm-amd, /dev/fuse; the
# same working directory and exported environment as the caller.  So the checkout
# and its build dir are visible at the same paths; everything written goes to tmpfs
# and is gone afterwards.  TCG is slow: every figure taken inside is scaled (report
# ratios measured inside).
#
# Options: --mem MIB (default 3072), --cpus N (default 1), --timeout SECS (default 900).
# Exit status: CMD's; 77 with a reason when the nested host cannot run here (not
# prepared, no qemu); 70 when the nested host died before CMD finished.
set -eu

CACHE=${KINDLING_CACHE:-/var/cache/kindling}/hwvirt
MODULES="irqbypass kvm ccp kvm-amd virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
 virtio_pci netfs fscache 9pnet 9pnet_virtio 9p fuse"

die() { echo "hwvirt: error: $1" >&2; exit "${2:-70}"; }  # die MESSAGE [EXIT_CODE]
skip() { echo "SKIP: hwvirt: $*" >&2; exit 77; }

# The kernel that linux-image-amd64 points to (Debian 12: linux-image-6.1.0-N-amd64).
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1
}

prepare() {
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (install qemu-system-x86)" 69
    [ -x /bin/busybox ] || die "/bin/busybox missing (install busybox-static)" 69
    pkg=$(kernel_package)
    [ -n "$pkg" ] || die "cannot find the kernel package linux-image-amd64 depends on (apt-get update?)" 69
    dir=$CACHE/$pkg
    if [ -f "$dir/initrd.cpio.gz" ] && [ -f "$dir/vmlinuz" ]; then
        ln -sfn "$pkg" "$CACHE/current"
        return 0
    fi
    tmp=$(mktemp -d "$CACHE.tmp.XXXXXX" 2>/dev/null) || { mkdir -p "$(dirname "$CACHE")"; tmp=$(mktemp -d "$CACHE.tmp.XXXXXX"); }
    trap 'rm -rf "$tmp"' EXIT
    echo "hwvirt: preparing $pkg in $dir" >&2
    # An old package list may name a version the mirror no longer has: update once.
    (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) ||
        { apt-get update -qq && pkg=$(kernel_package) && dir=$CACHE/$pkg &&
          (cd "$tmp" && apt-get download "$pkg" >/dev/null); } ||
        die "apt-get download $pkg failed" 69
    dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
    kver=$(ls "$tmp/x/lib/modules")
    mkdir -p "$tmp/out" "$tmp/root/bin" "$tmp/root/modules"
    cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
    cp /bin/busybox "$tmp/root/bin/busybox"
    for m in $MODULES; do
        f=$(find "$tmp/x/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)
        [ -n "$f" ] || die "module $m not in $pkg" 69
        case $f in *.xz) xz -dc "$f" >"$tmp/root/modules/$m.ko" ;; *) cp "$f" "$tmp/root/modules/$m.ko" ;; esac
        echo "$m" >>"$tmp/root/modules/order"
    done
    cat >"$tmp/root/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of the nested test host: mount the host root, run /xchg/run.sh, power off.
/bin/busybox mkdir -p /proc /sys /dev /host /xchg
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules/order); do
    /bin/busybox insmod /modules/$m.ko 2>/dev/null || echo "hwvirt-init: insmod $m failed" >/dev/ttyS0
done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xchg /xchg
for d in tmp run var/tmp root; do /bin/busybox mount -t tmpfs -o mode=1777 tmpfs /host/$d; done
/bin/busybox mount -t proc proc /host/proc
/bin/busybox mount -t sysfs sys /host/sys
/bin/busybox mount -t devtmpfs dev /host/dev
/bin/busybox mkdir -p /host/dev/shm /host/dev/pts /host/tmp/xchg
/bin/busybox mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
/bin/busybox mount -t devpts devpts /host/dev/pts
/bin/busybox mount --bind /xchg /host/tmp/xchg
/bin/busybox hostname kindling-hwvirt
/bin/busybox chroot /host /bin/sh /tmp/xchg/run.sh </dev/null >/dev/ttyS1 2>&1
echo $? >/xchg/rc
/bin/busybox sync
/bin/busybox poweroff -f
INIT
    chmod 755 "$tmp/root/init"
    (cd "$tmp/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/out/initrd.cpio.gz"
    echo "$kver" >"$tmp/out/kernel-release"
    rm -rf "$dir"
    mkdir -p "$CACHE"
    mv "$tmp/out" "$dir"
    ln -sfn "$pkg" "$CACHE/current"
    echo "hwvirt: ready: $dir (kernel $kver)" >&2
}

if [ "${1:-}" = --prepare ]; then
    prepare
    exit 0
fi

MEM=3072 CPUS=1 TIMEOUT=900
while [ $# -gt 0 ]; do
    case $1 in
    --mem) MEM=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see the comment at the top of $0)" 64 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || die "usage: hwvirt.sh [--mem MIB] [--cpus N] [--timeout SECS] CMD..." 64

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)"
dir=$CACHE/current
[ -f "$dir/vmlinuz" ] && [ -f "$dir/initrd.cpio.gz" ] || skip "no nested-host kernel in $CACHE (run scripts/hwvirt.sh --prepare as root)"
[ "$(id -u)" = 0 ] || skip "needs root (the nested host shares / and runs CMD as root)"

X=$(mktemp -d "${TMPDIR:-/tmp}/hwvirt.XXXXXX")
qpid=""
trap '[ -n "$qpid" ] && kill "$qpid" 2>/dev/null; rm -rf "$X"' EXIT
trap 'exit 143' TERM INT

# run.sh: the caller's environment and working directory, then CMD with its words quoted.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
    export -p | grep -v -E '^export (PWD|OLDPWD|SHLVL|_|TMPDIR|HOME)=' || true
    echo "export HOME=/root KINDLING_HWVIRT=1"
    # Loopback for tests that talk TCP on 127.0.0.1 (routerd).
    echo "/bin/busybox ifconfig lo 127.0.0.1 up || exit 70"
    printf 'cd %s || exit 70\n' "$(quote "$PWD")"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(quote "$a")"; done
    echo
} >"$X/run.sh"

# ttyS0: the nested kernel's console (kept for post-mortems); ttyS1: CMD's output.
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp "$CPUS" \
    -nodefaults -display none -no-reboot \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$X",mount_tag=xchg,security_model=none \
    -serial file:"$X/console.log" -serial stdio </dev/null &
qpid=$!
set +e
wait "$qpid"
qrc=$?
set -e
qpid=""
if [ -f "$X/rc" ]; then
    exit "$(cat "$X/rc")"
fi
[ $qrc -eq 124 ] && echo "hwvirt: error: no result within ${TIMEOUT}s" >&2
echo "hwvirt: error: the nested host stopped before the command finished (qemu exit $qrc); console tail:" >&2
tail -n 15 "$X/console.log" | sed 's/^/  /' >&2
exit 70
