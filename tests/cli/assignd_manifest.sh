# assignd places sandboxes of a layer that lives in a chunk store: the manifest is
# mounted once with snapfs under the run dir, sandboxes restore from the mount and
# answer; a second sandbox of the layer reuses the mount; SIGTERM unmounts it.
. "$(dirname "$0")/../lib.sh"
need_kvm
need_fuse
. "$ROOT/tests/cli/assignd.lib"
export KINDLING_TENANT_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff

"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem 32 --out "$T/snap" >/dev/null || fail "snap-make"
ID=$("$BIN/snap-chunk" put "$T/snap" --store "dir:$T/store" --layer function) || fail "snap-chunk put"
rm -rf "$T/snap"  # the store is now the only copy

start_assignd

ACQ='{"function": "uuid", "snapshot": {"manifest": "'"$ID"'", "store": "dir:'"$T/store"'"}, "wait_ms": 1000}'
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "first acquire: $(cat "$T/body") $(cat "$T/err")"
VS1=$(field vsock); L1=$(field lease)
grep -q " $T/run/mnt/$ID fuse.snapfs " /proc/mounts || fail "layer not mounted under the run dir"
: >"$T/empty"
u1=$($C "$VS1" invoke "$T/empty") || fail "sandbox 1 does not answer: $(cat "$T/run/"*.log)"
# A second sandbox while the first is busy: same mount, a different VM.
assert_eq "$(api -d "$ACQ" http://a/v1/acquire)" 200 "second acquire: $(cat "$T/body")"
VS2=$(field vsock)
[ "$VS1" != "$VS2" ] || fail "second acquire got the busy sandbox"
u2=$($C "$VS2" invoke "$T/empty") || fail "sandbox 2 does not answer"
[ "$u1" != "$u2" ] || fail "two sandboxes of one layer answered the same uuid: $u1"
assert_eq "$(grep -c " $T/run/mnt/" /proc/mounts)" 1 "one mount for the layer"

bad='{"function": "x", "snapshot": {"manifest": "zz", "store": "dir:'"$T/store"'"}}'
assert_eq "$(api -d "$bad" http://a/v1/acquire)" 400 "malformed manifest id"

kill -TERM $AD; wait $AD || fail "assignd exit status after SIGTERM"
! grep -q " $T/run/mnt/" /proc/mounts || fail "snapfs mount left after SIGTERM"
exit 0
