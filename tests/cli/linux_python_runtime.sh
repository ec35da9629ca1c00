#!/bin/sh
# An unmodified Python custom runtime (bootstrap + handler, stdlib only) from a root
# image built by scripts/mkroot.sh answers invokes: the agent, PID 1 of an agent-only
# initramfs, mounts the squashfs image read-only (kindling.root=) under an ext4 overlay
# (kindling.overlay=) and switches root into it.  A handler exception comes back as an
# ERR with the runtime's error object.  A missing root device or one that holds no file
# system stops the VM with a non-zero status and one line on the console.
# On PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
. "$ROOT/tests/cli/linux_python.lib"

"$ROOT/scripts/mkroot.sh" --runtime java "$T/x.sqfs" 2>/dev/null
assert_eq "$?" 64 "mkroot.sh: an unknown runtime"
"$ROOT/scripts/mkroot.sh" --code "$T/nonexistent" "$T/x.sqfs" 2>"$T/e1"
assert_eq "$?" 66 "mkroot.sh: a missing code dir"
assert_eq "$(cat "$T/e1")" "mkroot: error: --code $T/nonexistent: no such directory" "its message"
[ ! -e "$T/x.sqfs" ] || fail "mkroot.sh left an image behind"

new_overlay "$T/overlay.ext4"
t0=$(date +%s)
bg "$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/agent.cpio" --mem 256 --vsock "$T/fn.sock" \
    --drive "$T/root.sqfs,ro" --drive "$T/overlay.ext4" \
    --boot-args "$ARGS kindling.function=py kindling.root=/dev/vda kindling.overlay=/dev/vdb" \
    >"$T/fn.console" 2>"$T/fn.err"
wait_for_file "$T/fn.sock" 60 || fail "no vsock socket; console: $(tail -n 5 "$T/fn.console")"

out=$(invoke "$T/fn.sock" '{"name":"world"}')
assert_contains "$out" 'OK {"hello": "world", "python": "3.11.' "python answers"
assert_contains "$out" '"root": "overlay", "function": "py", "request": 36}' "root is the overlay of the image"
echo "first answer after $(($(date +%s) - t0)) s"
out=$(invoke "$T/fn.sock" '{"op":"fail","what":"this"}')
assert_contains "$out" 'ERR {"errorMessage":"cannot handle this","errorType":"ValueError","stackTrace":["Traceback' "a handler exception is an ERR"
assert_contains "$out" 'in handler' "with the handler's stack trace"
out=$(invoke "$T/fn.sock" '{"op":"write","text":"kept"}')
assert_eq "$out" 'OK {"wrote": "kept"}' "write on the overlay"
out=$(invoke "$T/fn.sock" '{"op":"read"}')
assert_eq "$out" 'OK {"note": "kept"}' "read it back from the drive"
stats=$(client "$T/fn.sock" stats) || fail "stats: $stats"
assert_contains "$stats" '"invokes":4,"errors":1' "counts"
client "$T/fn.sock" exit 0 >/dev/null || fail "EXIT"
for p in $PIDS; do wait "$p" || fail "fc-launch exited $?: $(tail -n 5 "$T/fn.err")"; done
PIDS=""
# The overlay holds the write (upper/ of the overlayfs), the image is untouched.
command -v debugfs >/dev/null &&
    { debugfs -R "cat /upper/var/lib/function/note" "$T/overlay.ext4" 2>/dev/null | grep -qx kept ||
        fail "the note is not in the overlay's upper/"; }

# Root device errors: one console line, a non-zero exit of the VM.
boot_fails() {  # NAME STATUS TEXT FC-LAUNCH-ARGS...
    name=$1 want=$2 text=$3; shift 3
    "$BIN/fc-launch" --kernel "$kdir/bzImage" --initrd "$T/agent.cpio" --mem 128 "$@" >"$T/$name.console" 2>&1
    rc=$?
    [ "$rc" = "$want" ] || fail "$name: fc-launch exited $rc, expected $want; console: $(tail -n 5 "$T/$name.console")"
    grep -q "$text" "$T/$name.console" || fail "$name: no '$text' on the console: $(tail -n 5 "$T/$name.console")"
}
boot_fails missing 66 "kindling-agent: error: root image /dev/vda: no such device" \
    --boot-args "$ARGS kindling.root=/dev/vda"
head -c 1048576 /dev/zero >"$T/zero.img"
boot_fails badfs 65 "kindling-agent: error: root image /dev/vda: cannot mount it read-only as squashfs" \
    --drive "$T/zero.img,ro" --boot-args "$ARGS kindling.root=/dev/vda"
boot_fails badoverlay 65 "kindling-agent: error: overlay /dev/vdb: cannot mount it as ext4" \
    --drive "$T/root.sqfs,ro" --drive "$T/zero.img" --boot-args "$ARGS kindling.root=/dev/vda kindling.overlay=/dev/vdb"
echo "python runtime from a root image under an overlay: answers, errors, root device failures"
