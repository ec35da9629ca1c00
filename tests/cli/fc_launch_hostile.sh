# A hostile nano guest never crashes or hangs the VMM: a malformed virtqueue marks
# the device failed (the guest keeps running and exits 3 on its own), and an ABI
# violation stops the VM with exit 65 and one line naming the cause.
. "$(dirname "$0")/../lib.sh"
need_kvm

run() {  # run MODE -> sets rc, leaves stderr in $T/err, console in $T/console
    rm -f "$T/v.sock"
    timeout 20 "$BIN/fc-launch" --kernel "$GUEST/hostile.elf" --mem 32 --vsock "$T/v.sock" \
        --boot-args "mode=$1" >"$T/console" 2>"$T/err"
    rc=$?
    [ "$rc" != 124 ] || fail "mode=$1: fc-launch hung (killed after 20 s)"
    [ "$rc" -lt 128 ] || fail "mode=$1: fc-launch died by signal $((rc - 128))"
    [ ! -e "$T/v.sock" ] || fail "mode=$1: vsock socket left behind"
}

# Ring attacks: the device is marked failed, the VMM keeps running the guest.
for mode in desc-outside desc-loop huge-len avail-jump; do
    run $mode
    assert_eq "$rc" 3 "mode=$mode exit status (guest survives and exits 3)"
    grep -q "hostile: still alive" "$T/console" || fail "mode=$mode: guest did not keep running: $(cat "$T/console")"
    grep -q "virtio-vsock: queue .*needs reset" "$T/err" || fail "mode=$mode: no device-failed line: $(cat "$T/err")"
done
grep -q "descriptor .* outside guest memory" "$T/err" 2>/dev/null || true

# ABI violations: the VM is stopped with one clear line.
check_stop() {  # MODE TEXT
    run "$1"
    assert_eq "$rc" 65 "mode=$1 exit status"
    grep -q "^fc-launch: error: .*$2" "$T/err" || fail "mode=$1: stderr lacks '$2': $(cat "$T/err")"
    ! grep -q "still alive" "$T/console" || fail "mode=$1: guest kept running after an ABI violation"
}
check_stop bad-port "unknown port 0x"
check_stop bad-mmio "unknown MMIO address 0x"
check_stop wild-write-iovec "console write points outside guest memory"
check_stop fault "triple fault at rip 0x"
exit 0
