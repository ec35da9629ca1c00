#!/bin/sh
# snap-make --rootfs snapshots a Python function booted from a root image (read-only)
# with a fresh ext4 overlay the layer keeps (DIR/overlay.ext4, recorded copy-on-write);
# two clones restored from it both answer, and a file one clone writes and syncs to its
# overlay is not seen by the other (which reads past its page cache), nor written to
# the snapshot's overlay file.
# On PVM hosts it runs inside the nested-KVM host (scripts/hwvirt.sh).
# serial: boots Linux (inside a QEMU TCG nested-KVM host on PVM hosts: minutes of CPU)
. "$(dirname "$0")/../lib.sh"

need_linux_kvm "$@"
. "$ROOT/tests/cli/linux_python.lib"

# Usage errors first (cheap): exit 64 / 66 and nothing left behind.
"$BIN/snap-make" --nano /dev/null --rootfs "$T/root.sqfs" --out "$T/bad" 2>"$T/e1"
assert_eq "$?" 64 "--rootfs without --kernel"
assert_contains "$(cat "$T/e1")" "--rootfs goes with --kernel" "its message"
"$BIN/snap-make" --kernel "$kdir/bzImage" --rootfs "$T/nonexistent.sqfs" --out "$T/bad" 2>"$T/e2"
assert_eq "$?" 66 "a missing --rootfs image"
assert_contains "$(cat "$T/e2")" "nonexistent.sqfs" "its message names the image"
"$BIN/fc-launch" --kernel "$kdir/bzImage" --drive "$T/root.sqfs,ro,cow" 2>"$T/e3"
assert_eq "$?" 64 "--drive ro,cow"
[ ! -e "$T/bad" ] && ! ls "$T" | grep -q '^bad\.' || fail "a failed snap-make left files: $(ls "$T")"

t0=$(date +%s)
"$BIN/snap-make" --kernel "$kdir/bzImage" --initrd "$T/agent.cpio" --rootfs "$T/root.sqfs" --overlay-size 32 \
    --mem 256 --boot-args "$ARGS kindling.function=py" --out "$T/snap" --timeout 240 \
    --console "$T/snap.console" >"$T/snap-make.out" 2>"$T/snap-make.err" ||
    fail "snap-make: $(cat "$T/snap-make.err"); console: $(tail -n 5 "$T/snap.console")"
echo "snap-make (boot to the runtime's first /next) took $(($(date +%s) - t0)) s"
[ -f "$T/snap/overlay.ext4" ] || fail "no overlay.ext4 in the snapshot"
ls "$T" | grep -q '^snap\.snap-make\.' && fail "snap-make left its work files: $(ls "$T")"
python3 - "$T/snap/snapshot.json" <<'PY' || fail "snapshot.json drives"
import json, sys
d = json.load(open(sys.argv[1]))["devices"]["drives"]
assert [(x["drive_id"], x["is_read_only"], x["copy_on_write"]) for x in d] == \
    [("rootfs", True, False), ("overlay", False, True)], d
assert d[0]["path_on_host"] == "rootfs.img" and d[1]["path_on_host"] == "overlay.ext4", d
PY
sum_before=$(sha256sum <"$T/snap/overlay.ext4")

for c in a b; do
    bg "$BIN/fc-launch" --restore "$T/snap" --vsock "$T/$c.sock" >"$T/$c.console" 2>"$T/$c.err"
done
for c in a b; do
    wait_for_file "$T/$c.sock" 60 || fail "clone $c: no vsock socket: $(cat "$T/$c.err")"
    out=$(invoke "$T/$c.sock" "{\"name\":\"$c\"}")
    assert_contains "$out" "OK {\"hello\": \"$c\", \"python\": \"3.11." "clone $c answers"
    assert_contains "$out" '"root": "overlay"' "clone $c runs on the overlay"
done
assert_eq "$(invoke "$T/a.sock" '{"op":"write","text":"from a"}')" 'OK {"wrote": "from a"}' "clone a writes"
assert_eq "$(invoke "$T/b.sock" '{"op":"read"}')" 'OK {"note": null}' "clone b does not see a's file"
assert_eq "$(invoke "$T/b.sock" '{"op":"write","text":"from b"}')" 'OK {"wrote": "from b"}' "clone b writes"
assert_eq "$(invoke "$T/a.sock" '{"op":"read"}')" 'OK {"note": "from a"}' "clone a keeps its own file"
assert_eq "$(invoke "$T/b.sock" '{"op":"read"}')" 'OK {"note": "from b"}' "clone b keeps its own file"
for c in a b; do client "$T/$c.sock" exit 0 >/dev/null || fail "EXIT $c"; done
for p in $PIDS; do wait "$p" || fail "a clone's fc-launch exited $?"; done
PIDS=""
assert_eq "$(sha256sum <"$T/snap/overlay.ext4")" "$sum_before" "the snapshot's overlay file is unchanged"
echo "two clones of a Python snapshot with a root image: each writes its own overlay"
