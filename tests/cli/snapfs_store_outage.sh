# The store goes away between mount and restore: the snapshot's metadata files were
# already read through the mount (in snapfs's chunk cache), the guest memory was not.
# fc-launch --restore from the mount must fail within a bounded time (snapfs
# --timeout-ms 1500; allowed: 20 s) with exit 74 and a "guest memory: ..." error
# naming mem, never hang; once the store is back the same mount restores a VM that
# answers `walk` exactly as a restore of the original directory.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
trap '[ -d "$T/store.away" ] && mv "$T/store.away" "$T/store"; snapfs_cleanup' EXIT
need_kvm
need_fuse
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
C="python3 $ROOT/tests/cli/nano_client.py"
now_ms() { date +%s%3N; }
"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 32 --boot-args "table=8 touch=20" --out "$T/snap" >/dev/null ||
    fail "snap-make"
printf 'walk' >"$T/walk"
restore() {  # NAME DIR: restore DIR, one walk, EXIT; answer in $T/NAME.answer
    "$BIN/fc-launch" --restore "$2" --vsock "$T/$1.sock" >/dev/null 2>"$T/$1.err" &
    vm=$!
    $C "$T/$1.sock" invoke "$T/walk" exit 0 >"$T/$1.answer" || fail "$1: $(cat "$T/$1.err")"
    wait $vm || fail "$1: exit status: $(cat "$T/$1.err")"
}
restore orig "$T/snap"
id=$("$BIN/snap-chunk" put "$T/snap" --store "dir:$T/store" --layer function) || fail "put"
mount_snapfs "$T/mnt" "$id" --store "dir:$T/store" --timeout-ms 1500
cat "$T/mnt/snapshot.json" "$T/mnt/vmstate" >/dev/null || fail "metadata through the mount"

mv "$T/store" "$T/store.away"
t0=$(now_ms)
"$BIN/fc-launch" --restore "$T/mnt" --vsock "$T/gone.sock" >/dev/null 2>"$T/gone.err" &
vm=$!
PIDS="$PIDS $vm"
i=0
while kill -0 $vm 2>/dev/null && [ $i -lt 2000 ]; do sleep 0.01; i=$((i + 1)); done
if kill -0 $vm 2>/dev/null; then
    kill -9 $vm
    fail "fc-launch still running 20 s after the store went away (hangs): $(cat "$T/gone.err")"
fi
wait $vm; rc=$?
dt=$(($(now_ms) - t0))
echo "store gone: fc-launch exit $rc after $dt ms: $(cat "$T/gone.err")" >&2
assert_eq "$rc" 74 "exit status with the store gone"
grep -q "guest memory: .*mem" "$T/gone.err" || fail "no guest memory error naming mem: $(cat "$T/gone.err")"
mounted "$T/mnt" || fail "the mount went away with the store"

mv "$T/store.away" "$T/store"
restore back "$T/mnt"
cmp -s "$T/orig.answer" "$T/back.answer" || fail "answer after the store came back: $(cat "$T/back.answer")"
exit 0
