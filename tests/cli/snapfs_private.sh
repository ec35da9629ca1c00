# Copy-on-read from a snapfs mount: two VMs restored from one mounted uuid snapshot
# each own their guest RAM. In /proc/PID/smaps the guest-sized read-write mapping is
# private anonymous (no file, no shared pages, every resident page anonymous), no
# file on the mount is mapped at all, the two VMs' resident guest pages have
# disjoint physical frames (/proc/PID/pagemap, when readable; the kernel's shared
# zero page excepted), and they answer different UUIDs.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_kvm
need_fuse
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
C="python3 $ROOT/tests/cli/nano_client.py"
MIB=48
"$BIN/snap-make" --nano "$GUEST/uuid.elf" --mem $MIB --out "$T/uuid" >/dev/null || fail "snap-make"
id=$("$BIN/snap-chunk" put "$T/uuid" --store "dir:$T/store" --layer function) || fail "put"
mount_snapfs "$T/mnt" "$id" --store "dir:$T/store"

VMS=""
for n in a b; do
    "$BIN/fc-launch" --restore "$T/mnt" --vsock "$T/$n.sock" >/dev/null 2>"$T/$n.err" &
    PIDS="$PIDS $!"; VMS="$VMS $!"
done
ua=$($C "$T/a.sock" raw 'INVOKE 0\n') || fail "VM a: $(cat "$T/a.err")"
ub=$($C "$T/b.sock" raw 'INVOKE 0\n') || fail "VM b: $(cat "$T/b.err")"
case "$ua" in OK*-*-*-*-*) ;; *) fail "VM a answered: $ua" ;; esac
case "$ub" in OK*-*-*-*-*) ;; *) fail "VM b answered: $ub" ;; esac
[ "$ua" != "$ub" ] || fail "two VMs restored from one mount gave the same UUID: $ua"

# shellcheck disable=SC2086
python3 - $MIB "$T/mnt" $VMS <<'PY' || fail "guest memory is not private"
import struct, sys
mib, mnt, pids = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def guest_ram(pid):
    maps, cur = [], None
    for line in open("/proc/%s/smaps" % pid):
        f = line.split()
        if "-" in f[0] and ":" not in f[0]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            cur = {"lo": lo, "hi": hi, "perms": f[1], "inode": f[4], "path": " ".join(f[5:])}
            maps.append(cur)
        elif f[0].endswith(":") and len(f) >= 2 and f[1].isdigit():
            cur[f[0][:-1]] = int(f[1])
    on_mount = [m for m in maps if m["path"].startswith(mnt)]
    assert not on_mount, "pid %s maps files of the mount: %s" % (pid, on_mount)
    ram = [m for m in maps if m["Size"] == mib * 1024 and m["perms"].startswith("rw")]
    assert len(ram) == 1, "pid %s: want one rw mapping of %d MiB, got %s" % (pid, mib, ram)
    m = ram[0]
    assert m["perms"] == "rw-p" and m["inode"] == "0" and m["path"] == "", m
    assert m["Shared_Clean"] == 0 and m["Shared_Dirty"] == 0, m
    assert m["Rss"] > 0 and m["Anonymous"] == m["Rss"], m
    print("pid %s: guest RAM %x-%x %s, Rss %d kB, Anonymous %d kB, Shared %d kB"
          % (pid, m["lo"], m["hi"], m["perms"], m["Rss"], m["Anonymous"], m["Shared_Clean"] + m["Shared_Dirty"]),
          file=sys.stderr)
    return m

def frames(pid, m):
    out = {}
    with open("/proc/%s/pagemap" % pid, "rb") as f:
        f.seek(m["lo"] // 4096 * 8)
        data = f.read((m["hi"] - m["lo"]) // 4096 * 8)
    for i in range(len(data) // 8):
        e = struct.unpack_from("<Q", data, i * 8)[0]
        if e >> 63 and e & ((1 << 55) - 1):
            out.setdefault(e & ((1 << 55) - 1), []).append(i)
    return out

fr = [frames(p, guest_ram(p)) for p in pids]
if not any(fr):
    print("pagemap shows no frame numbers (not privileged): physical check skipped", file=sys.stderr)
else:
    shared = set(fr[0]) & set(fr[1])
    # The shared zero page backs every never-written page, many times in each VM.
    real = [p for p in shared if len(fr[0][p]) == 1 and len(fr[1][p]) == 1]
    print("resident guest frames: %d and %d, in both: %d (zero page: %d)"
          % (len(fr[0]), len(fr[1]), len(shared), len(shared) - len(real)), file=sys.stderr)
    assert not real, "physical frames in both VMs: %s" % real[:8]
PY
exit 0
