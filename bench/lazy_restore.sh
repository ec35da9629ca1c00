#!/bin/sh
# bench/lazy_restore: issue 6's figures.  An init-heavy snapshot (whose first restore
# recorded its page access log, kept in the snapshot directory as access.log) is put
# into an s3rver bucket; a cold worker (empty local cache dir each run) then answers
# its first `walk` by
#   (a) snap-fetch of the whole layer to a local dir, then fc-launch --restore DIR
#   (b) snapfs --no-prefetch mount, fc-launch --restore MOUNT (lazy, uffd copy-on-read)
#   (c) snapfs mount (which prefetches the chunks named by the layer's access.log from
#       the moment it is mounted), fc-launch --prefetch MOUNT/access.log (REAP)
# with the origin S3 only, and with a warm memcached in front of S3.  Times are from
# the start of the fetch/mount to the answer (median, min-max over runs); bytes are
# snapfs's fetched_bytes at unmount (right after the answer) against the working set
# (the pages in the access log x 4 KiB: what the VM touched up to its first answer).  Then FUSE read throughput of mem vs the reassembled file.
# Figures only, never pass/fail.  Usage: sh bench/lazy_restore.sh [BUILD_DIR]
#   LAZY_RUNS=5  runs per figure    LAZY_TABLE=48  table MiB    LAZY_TOUCH=10  touch %
#   LAZY_MEM=128 guest MiB          LAZY_DIR=...   scratch dir (default /dev/shm)
set -u
O=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/$O/bin
RUNS=${LAZY_RUNS:-5}
TABLE=${LAZY_TABLE:-48}
TOUCH=${LAZY_TOUCH:-10}
# Working-set pages come in runs of CLUSTER contiguous pages: 128 (one 512 KiB chunk)
# by default; LAZY_CLUSTER=1 scatters single pages, which defeats chunked lazy loading.
CLUSTER=${LAZY_CLUSTER:-128}
MEM=${LAZY_MEM:-128}
skip() { echo "bench/lazy_restore: skipped: $*"; exit 0; }
for t in snap-make snap-chunk snap-fetch snapfs fc-launch; do [ -x "$B/$t" ] || skip "$B/$t not built"; done
[ -c /dev/kvm ] || skip "no /dev/kvm"
[ -c /dev/fuse ] && command -v fusermount3 >/dev/null || skip "no FUSE (/dev/fuse, fusermount3)"
command -v memcached >/dev/null || skip "no memcached"
why=$("$ROOT/scripts/s3rver.sh" check 2>&1) || skip "$why"
D=${LAZY_DIR:-/dev/shm}; [ -d "$D" ] || D=${TMPDIR:-/tmp}
W=$(mktemp -d "$D/kindling-bench-lazy.XXXXXX")
cleanup() {
    for m in "$W"/mnt.*; do [ -d "$m" ] && grep -q " $m " /proc/mounts && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done
    [ -f "$W/s3/pid" ] && kill "$(cat "$W/s3/pid")" 2>/dev/null
    for p in "$W"/mc/memcached.*.pid; do [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    sleep 0.2
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE="$W/none" AWS_SHARED_CREDENTIALS_FILE="$W/none" AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION 2>/dev/null || true
export KINDLING_TENANT_KEY=6b696e646c696e672062656e63682074656e616e74206b65792030303030303031
C="python3 $ROOT/tests/cli/nano_client.py"
F=$ROOT/$O/bench/answer-bench  # native client inside the timed part: no interpreter start-up
[ -x "$F" ] || skip "$F not built (make bench-bins)"
now_ns() { date +%s%N; }

ep=$("$ROOT/scripts/s3rver.sh" start "$W/s3" lazy) || skip "s3rver did not start"
mc=$("$ROOT/scripts/memcached.sh" "$W/mc" 1 -m 256) || skip "memcached did not start"
S="s3://lazy/snaps?endpoint=$ep&region=us-east-1"
printf walk >"$W/walk"

echo "bench/lazy_restore: init-heavy --mem $MEM table=$TABLE touch=$TOUCH cluster=$CLUSTER, $RUNS runs per figure, scratch $W"
"$B/snap-make" --nano "$ROOT/$O/guest/init-heavy.elf" --mem "$MEM" --boot-args "table=$TABLE touch=$TOUCH cluster=$CLUSTER" \
    --out "$W/snap" >/dev/null || skip "snap-make failed"
"$B/fc-launch" --restore "$W/snap" --vsock "$W/rec.sock" --record-access "$W/snap/access.log" >/dev/null 2>"$W/rec.err" &
$C "$W/rec.sock" invoke "$W/walk" exit 0 >"$W/answer" || skip "first restore: $(cat "$W/rec.err")"
wait
id=$("$B/snap-chunk" put "$W/snap" --store "$S" --layer function) || skip "snap-chunk put to S3 failed"
"$B/snap-chunk" stat "$id" --store "$S" --json >"$W/stat.json"
"$B/snap-fetch" "$id" --store "memcached://$mc|$S" --warm >/dev/null 2>&1 ||
    "$B/snap-fetch" "$id" --store "tiered:memcached://$mc|$S" --warm >/dev/null || skip "warming memcached failed"
walk=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read()[3:])["pages"])' "$W/answer")
# The working set: every page the restored VM touched up to its first answer (the
# access log's count: walk's table pages plus the runtime's code, stack and rings).
pages=$(python3 -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1], "rb").read(), 24)[0])' "$W/snap/access.log")
python3 - "$W/stat.json" "$pages" "$walk" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); p = int(sys.argv[2]); w = int(sys.argv[3])
print("layer: %d logical bytes, %d stored in %d chunks (%d zero); working set %d pages = %.1f MiB"
      " (access log; walk reads %d table pages of them)"
      % (s["logical_bytes"], s["stored_bytes"], s["chunks"], s["zero_chunks"], p, p * 4096 / 2**20, w))
PY

mount_fs() {  # MNT STORE [ARGS]: mounts, waits; pid in $FS
    m=$1; shift
    mkdir -p "$m"
    "$B/snapfs" "$id" "$m" --store "$@" -f --json >"$m.json" 2>"$m.err" &
    FS=$!
    i=0
    while ! grep -q " $m fuse.snapfs " /proc/mounts; do
        kill -0 $FS 2>/dev/null || { echo "snapfs failed: $(cat "$m.err")"; exit 1; }
        i=$((i + 1)); [ $i -gt 1000 ] && { echo "snapfs did not mount"; exit 1; }
        sleep 0.005
    done
}
first_answer() {  # DIR NAME [fc-launch flags]: restore, walk, exit; checks the answer
    dir=$1 n=$2; shift 2
    "$B/fc-launch" --restore "$dir" --vsock "$W/$n.sock" "$@" >/dev/null 2>"$W/$n.err" &
    vm=$!
    "$F" "$W/$n.sock" "$W/walk" >"$W/$n.answer" || { echo "restore $n failed: $(cat "$W/$n.err")"; exit 1; }
    wait $vm
    cmp -s "$W/$n.answer" "$W/answer" || { echo "wrong answer from $n: $(cat "$W/$n.answer")"; exit 1; }
}
# One figure per line of $W/res: ORIGIN MODE MS BYTES
for origin in s3 memcached; do
    if [ $origin = s3 ]; then U=$S; else U="memcached://$mc|$S"; fi
    r=1
    while [ $r -le "$RUNS" ]; do
        n=$origin.$r
        t0=$(now_ns)
        "$B/snap-fetch" "$id" --store "tiered:dir:$W/cache.a.$n|$U" --out "$W/full.$n" >/dev/null || exit 1
        first_answer "$W/full.$n" a.$n
        t1=$(now_ns)
        echo "$origin a $(((t1 - t0) / 1000)) $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stored_bytes"])' "$W/stat.json")" >>"$W/res"
        rm -rf "$W/full.$n" "$W/cache.a.$n"
        for mode in b c; do
            m=$W/mnt.$mode.$n
            t0=$(now_ns)
            if [ $mode = b ]; then mount_fs "$m" "tiered:dir:$W/cache.$mode.$n|$U" --no-prefetch
            else mount_fs "$m" "tiered:dir:$W/cache.$mode.$n|$U"; fi  # snapfs prefetches the layer's access.log
            if [ $mode = b ]; then first_answer "$m" $mode.$n; else first_answer "$m" $mode.$n --prefetch "$m/access.log"; fi
            t1=$(now_ns)
            kill -TERM $FS; wait $FS
            echo "$origin $mode $(((t1 - t0) / 1000)) $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fetched_bytes"])' "$m.json")" >>"$W/res"
            rm -rf "$W/cache.$mode.$n"
        done
        r=$((r + 1))
    done
done
python3 - "$W/res" "$pages" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
ws = int(sys.argv[2]) * 4096
name = {"a": "(a) fetch all, restore", "b": "(b) lazy snapfs", "c": "(c) lazy + prefetch"}
print("\n%-10s %-24s %10s %17s %12s %9s" % ("origin", "mode", "median ms", "min-max ms", "fetched MiB", "x wset"))
med = {}
for o in ("s3", "memcached"):
    for m in "abc":
        t = [int(r[2]) / 1000 for r in rows if r[0] == o and r[1] == m]
        b = [int(r[3]) for r in rows if r[0] == o and r[1] == m]
        med[o, m] = statistics.median(t)
        print("%-10s %-24s %10.0f %8.0f-%-8.0f %12.1f %9.2f" % (o, name[m], med[o, m], min(t), max(t),
              statistics.median(b) / 2**20, statistics.median(b) / ws))
for o in ("s3", "memcached"):
    print("%s: (a)/(c) = %.2fx (goal >= 3x), (a)/(b) = %.2fx" % (o, med[o, "a"] / med[o, "c"], med[o, "a"] / med[o, "b"]))
PY
echo "(fetched for (a): the layer's stored bytes; for (b)/(c): snapfs fetched_bytes, goal <= 1.5x the working set)"

# FUSE read throughput of mem vs the reassembled file on local disk.
"$B/snap-fetch" "$id" --store "tiered:dir:$W/chunks|$S" --out "$W/full" >/dev/null || exit 1
mount_fs "$W/mnt.tp" "dir:$W/chunks"
rd() {  # FILE: MB/s of one sequential read, 1 MiB blocks
    t0=$(now_ns); dd if="$1" of=/dev/null bs=1M 2>/dev/null; t1=$(now_ns)
    echo "$(stat -c %s "$1") $t0 $t1" | awk '{ printf "%.0f", $1 / (($3 - $2) / 1e9) / 1e6 }'
}
cold=$(rd "$W/mnt.tp/mem"); warm=$(rd "$W/mnt.tp/mem"); local=$(rd "$W/full/mem")
kill -TERM $FS; wait $FS
echo
echo "read of mem ($(($(stat -c %s "$W/full/mem") >> 20)) MiB, holes included), MB/s: FUSE cold (local chunk dir, decrypt) $cold," \
    "FUSE warm (snapfs chunk cache) $warm, reassembled file on $D (page cache) $local;" \
    "ratio local/FUSE: cold $(echo "$local $cold" | awk '{printf "%.1f", $1/$2}')x, warm $(echo "$local $warm" | awk '{printf "%.1f", $1/$2}')x"
cat <<EOF2

Reproduce (ID = layer id, S = s3://lazy/snaps?endpoint=...&region=us-east-1, U = \$S or memcached://HOST:PORT|\$S):
  snap-make --nano $O/guest/init-heavy.elf --mem $MEM --boot-args "table=$TABLE touch=$TOUCH cluster=$CLUSTER" --out SNAP
  fc-launch --restore SNAP --vsock r.sock --record-access SNAP/access.log   # + invoke walk, EXIT 0
  snap-chunk put SNAP --store "\$S" --layer function; snap-fetch ID --store "memcached://HOST:PORT|\$S" --warm
  (a) snap-fetch ID --store "tiered:dir:EMPTY|\$U" --out DIR && fc-launch --restore DIR --vsock a.sock   # + walk
  (b) snapfs ID MNT --store "tiered:dir:EMPTY|\$U" --json && fc-launch --restore MNT --vsock b.sock      # + walk
  (c) as (b), fc-launch --restore MNT --vsock c.sock --prefetch MNT/access.log
  throughput: snapfs ID MNT --store dir:CHUNKS; dd if=MNT/mem of=/dev/null bs=1M (twice); dd if=DIR/mem of=/dev/null bs=1M
  LAZY_RUNS=$RUNS sh bench/lazy_restore.sh $O
EOF2
