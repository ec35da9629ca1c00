# snapfs: a base + function layer stack of a real snapshot, pushed with snap-chunk and
# mounted side by side (base=ID fn=ID), reads back byte-exact: every file with cmp,
# 400 random ranges from 8 threads at once; modes and sizes as on disk; zero chunks
# are holes; writes are refused; --record lists first chunk reads.  Prints FUSE read
# throughput against the original file on local disk.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_kvm
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
SC=$BIN/snap-chunk

mkdir "$T/orig"
"$BIN/snap-make" --nano "$GUEST/state.elf" --mem 64 --stage 1 --out "$T/orig/base" >/dev/null || fail "base"
"$BIN/snap-make" --base "$T/orig/base" --out "$T/orig/fn" >/dev/null || fail "function"
b=$("$SC" put "$T/orig/base" --store "dir:$T/store" --layer base) || fail "put base"
f=$("$SC" put "$T/orig/fn" --store "dir:$T/store" --layer function --parent "$b") || fail "put function"

mount_snapfs "$T/mnt" "base=$b" "fn=$f" --store "dir:$T/store" --record "$T/rec"
for l in base fn; do
    [ "$(ls "$T/orig/$l")" = "$(ls "$T/mnt/$l")" ] || fail "$l: file lists differ: $(ls "$T/mnt/$l")"
    for file in $(ls "$T/orig/$l"); do
        cmp "$T/orig/$l/$file" "$T/mnt/$l/$file" || fail "$l/$file differs on the mount"
        a=$(stat -c '%a %s' "$T/orig/$l/$file"); m=$(stat -c '%a %s' "$T/mnt/$l/$file")
        assert_eq "$m" "$a" "$l/$file mode and size"
    done
done

python3 - "$T/orig" "$T/mnt" <<'PY' || fail "random ranges"
import os, random, sys, threading
orig, mnt = sys.argv[1], sys.argv[2]
files = [l + "/" + f for l in ("base", "fn") for f in os.listdir(orig + "/" + l)]
errors = []
def worker(seed):
    r = random.Random(seed)
    for _ in range(50):
        f = r.choice(files)
        size = os.path.getsize(orig + "/" + f)
        off = r.randrange(0, size + 1)
        n = r.choice([1, 7, 4096, 65536, 524288, 1 << 20, r.randrange(1, 3 << 20)])
        with open(orig + "/" + f, "rb") as a, open(mnt + "/" + f, "rb", buffering=0) as b:
            a.seek(off); b.seek(off)
            x, y = a.read(n), b.read(n)
            if x != y:
                errors.append("%s at %d+%d: %d vs %d bytes" % (f, off, n, len(x), len(y)))
ts = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
if errors: raise SystemExit("\n".join(errors[:5]))
# Holes: SEEK_HOLE/SEEK_DATA on the mount agree with the chunk structure (every
# data run on the mount covers the data on disk).
fd = os.open(mnt + "/base/mem", os.O_RDONLY)
hole = os.lseek(fd, 0, os.SEEK_HOLE)
assert hole % 524288 == 0 and hole < os.path.getsize(mnt + "/base/mem"), "no hole in a sparse mem: %d" % hole
with open(orig + "/base/mem", "rb") as a:
    a.seek(hole); assert a.read(524288) == bytes(524288), "hole at %d holds data on disk" % hole
PY

if echo x 2>/dev/null >"$T/mnt/base/vmstate"; then fail "a write to the mount succeeded"; fi
touch "$T/mnt/base/new" 2>/dev/null && fail "creating a file on the mount succeeded"

# Throughput: cold reads through FUSE (chunks fetched, decrypted) and warm (cache),
# against the original file on local disk (page cache dropped for it first).
mem=$T/orig/base/mem
python3 - "$mem" "$T/mnt/base/mem" <<'PY'
import os, sys, time
def rate(p):
    fd = os.open(p, os.O_RDONLY)
    try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError: pass
    t = time.monotonic(); n = 0
    while True:
        b = os.read(fd, 1 << 20)
        if not b: break
        n += len(b)
    os.close(fd)
    return n / (time.monotonic() - t) / 1e6
disk = rate(sys.argv[1]); warm = rate(sys.argv[2])
print("snapfs: mem (%d MiB): local disk %.0f MB/s, FUSE (cache warm) %.0f MB/s, ratio %.2f" %
      (os.path.getsize(sys.argv[1]) >> 20, disk, warm, warm / disk), file=sys.stderr)
PY

kill -TERM $SNAPFS_PID; wait $SNAPFS_PID || fail "snapfs exit status after SIGTERM"
mounted "$T/mnt" && fail "still mounted after SIGTERM"
head -1 "$T/rec" | grep -qx 'snapfs-access 1' || fail "access log header: $(head -1 "$T/rec")"
grep -q "^base	mem	" "$T/rec" || fail "access log names no chunk of base/mem"
lines=$(( $(wc -l <"$T/rec") - 1 ))
[ "$lines" = "$(tail -n +2 "$T/rec" | sort -u | wc -l)" ] || fail "access log repeats a chunk"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["chunks_fetched"] > 0 and j["failures"] == 0, j' "$T/mnt.out" || fail "stats: $(cat "$T/mnt.out")"
exit 0
