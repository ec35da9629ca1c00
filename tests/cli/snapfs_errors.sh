# snapfs refuses, with one clear line and an exit code, and mounts nothing: a
# malformed id (64), an id not in the store (66), the wrong key (65), no key (78), a
# missing mountpoint (66), a mountpoint that is a file, not empty, or in use (73).
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
mkdir "$T/layer" "$T/mnt"
head -c 1000000 /dev/urandom >"$T/layer/mem"
id=$("$BIN/snap-chunk" put "$T/layer" --store "dir:$T/store" --layer base) || fail "put"

# expect CODE TEXT ARGS...: snapfs ARGS exits CODE, says TEXT in one line, mounts nothing
expect() {
    code=$1; text=$2; shift 2
    "$BIN/snapfs" "$@" -f >"$T/out" 2>"$T/err"; rc=$?
    [ $rc = $code ] || fail "snapfs $*: exit $rc, want $code: $(cat "$T/err")"
    assert_contains "$(cat "$T/err")" "$text" "snapfs $*"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "more than one line: $(cat "$T/err")"
    grep -q fuse.snapfs /proc/mounts && fail "something is mounted after: snapfs $*"
    return 0
}
expect 64 "not a manifest id" nothex "$T/mnt" --store "dir:$T/store"
expect 66 "not found in dir:$T/store" 0000000000000000000000000000000000000000000000000000000000000000 "$T/mnt" --store "dir:$T/store"
KINDLING_CONVERGENCE_SECRET=ffff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e \
    expect 65 "wrong key" "$id" "$T/mnt" --store "dir:$T/store"
( unset KINDLING_CONVERGENCE_SECRET; expect 78 "KINDLING_CONVERGENCE_SECRET" "$id" "$T/mnt" --store "dir:$T/store" ) || exit 1
expect 66 "mountpoint $T/nowhere" "$id" "$T/nowhere" --store "dir:$T/store"
touch "$T/file"
expect 73 "Not a directory" "$id" "$T/file" --store "dir:$T/store"
mkdir "$T/full"; touch "$T/full/x"
expect 73 "not empty" "$id" "$T/full" --store "dir:$T/store"
expect 64 "NAME=ID" "$id" "$id" "$T/mnt" --store "dir:$T/store"

mount_snapfs "$T/mnt" "$id" --store "dir:$T/store"
"$BIN/snapfs" "$id" "$T/mnt" --store "dir:$T/store" -f 2>"$T/err"; rc=$?
[ $rc = 73 ] || fail "second mount on the same mountpoint: exit $rc: $(cat "$T/err")"
assert_contains "$(cat "$T/err")" "in use"
[ "$(grep -c " $T/mnt fuse.snapfs " /proc/mounts)" = 1 ] || fail "two mounts on $T/mnt"
cmp "$T/layer/mem" "$T/mnt/mem" || fail "the first mount broke"
exit 0
