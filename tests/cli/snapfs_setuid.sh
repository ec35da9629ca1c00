#!/bin/sh
# A layer's files are data: a setuid, setgid or sticky bit on a file put with
# snap-chunk is not stored, snap-fetch applies none, and snapfs mounts nosuid,nodev
# showing modes masked to 0777.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

mkdir "$T/layer"
head -c 100000 /dev/urandom >"$T/layer/vmstate"
printf '#!/bin/sh\nid\n' >"$T/layer/tool"
chmod 6755 "$T/layer/tool"
chmod 1777 "$T/layer"
id=$("$BIN/snap-chunk" put "$T/layer" --store "dir:$T/store" --layer base) || fail "put"

"$BIN/snap-fetch" "$id" --store "dir:$T/store" --out "$T/got" || fail "snap-fetch"
assert_eq "$(stat -c %a "$T/got/tool")" 755 "fetched file's mode"
assert_eq "$(stat -c %a "$T/got")" 777 "fetched layer directory's mode"

mount_snapfs "$T/mnt" "$id" --store "dir:$T/store"
assert_eq "$(stat -c %a "$T/mnt/tool")" 755 "mode on the snapfs mount"
opts=$(awk -v m="$T/mnt" '$2 == m { print $4 }' /proc/mounts)
case ,$opts, in *,nosuid,*) ;; *) fail "snapfs mount options lack nosuid: $opts" ;; esac
case ,$opts, in *,nodev,*) ;; *) fail "snapfs mount options lack nodev: $opts" ;; esac
exit 0
