# A local cache on a full filesystem (a 1 MiB tmpfs, so writes fail with ENOSPC):
# the fetch still succeeds byte-exact from the next tier, the cache is bypassed with
# a warning.
. "$(dirname "$0")/../lib.sh"
SC=$BIN/snap-chunk
SF=$BIN/snap-fetch
[ "$(id -u)" = 0 ] || skip "mounting a small tmpfs needs root"
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
"$ROOT/bench/chunk/mksnap.sh" "$T/snap" 16 1 || fail "mksnap"
id=$("$SC" put "$T/snap" --store "dir:$T/origin" --layer base) || fail "put failed"
mkdir "$T/small"
mount -t tmpfs -o size=1m tmpfs "$T/small" 2>/dev/null || skip "cannot mount a tmpfs here"
trap 'umount -l "$T/small" 2>/dev/null; cleanup' EXIT
"$SF" "$id" --store "tiered:dir:$T/small/cache|dir:$T/origin" --out "$T/out" --no-progress >/dev/null 2>"$T/err" ||
    fail "fetch through a full cache failed: $(cat "$T/err")"
for f in snapshot.json vmstate mem; do cmp "$T/snap/$f" "$T/out/$f" || fail "$f differs"; done
grep -q "warning: .*$T/small/cache" "$T/err" || fail "no warning about the full cache: $(cat "$T/err")"
[ "$(grep -c warning "$T/err")" -le 3 ] || fail "a warning per chunk instead of one: $(cat "$T/err")"
exit 0
