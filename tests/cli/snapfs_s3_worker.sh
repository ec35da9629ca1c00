# A cold worker restores an init-heavy snapshot through snapfs from S3 (s3rver):
# the first restore of the original directory records the page access log into the
# snapshot directory (REAP), snap-chunk put stores it with the layer, and a worker
# with an empty local cache mounts the layer with tiered:dir:CACHE|s3://... and
# restores from the mount, once lazily (--no-prefetch) and once with prefetching: snapfs
# queues the chunks the layer's access.log names, fc-launch --prefetch MOUNT/access.log.
# Both answer `walk` exactly as the original; snapfs's --json counters give the bytes
# fetched (printed), which must be at most the stored bytes (no chunk fetched twice)
# and under half of the logical snapshot (zero chunks cost nothing).
# Note: init-heavy's touch= working set is spread evenly over the table, one page in
# ten, so every 512 KiB chunk of the table holds working-set pages and the worker
# fetches (almost) all of the table's stored bytes; the figure vs the working set is
# printed, not asserted.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_kvm
need_fuse
"$ROOT/scripts/s3rver.sh" check 2>"$T/why" || skip "$(cat "$T/why")"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE 2>/dev/null || true
export KINDLING_TENANT_KEY=f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000
C="python3 $ROOT/tests/cli/nano_client.py"
bg "$ROOT/scripts/s3rver.sh" run "$T/s3" kt
wait_for_file "$T/s3/endpoint" 20 || fail "s3rver did not start"
S="s3://kt/snaps?endpoint=$(cat "$T/s3/endpoint")&region=us-east-1"

"$BIN/snap-make" --nano "$GUEST/init-heavy.elf" --mem 128 --boot-args "table=48 touch=10" --out "$T/snap" >/dev/null ||
    fail "snap-make"
printf 'walk' >"$T/walk"
restore() {  # NAME DIR FLAGS...: restore DIR, one walk, EXIT; answer in $T/NAME.answer
    name=$1 dir=$2; shift 2
    "$BIN/fc-launch" --restore "$dir" --vsock "$T/$name.sock" --json "$@" >"$T/$name.json" 2>"$T/$name.err" &
    pid=$!
    $C "$T/$name.sock" invoke "$T/walk" exit 0 >"$T/$name.answer" || fail "$name: $(cat "$T/$name.err")"
    wait $pid || fail "$name: exit status: $(cat "$T/$name.err")"
}
restore orig "$T/snap" --record-access "$T/snap/access.log"
[ -s "$T/snap/access.log" ] || fail "no access log recorded"
grep -q '"percent":10' "$T/orig.answer" || fail "walk answered: $(cat "$T/orig.answer")"
id=$("$BIN/snap-chunk" put "$T/snap" --store "$S" --layer function) || fail "put to S3"
"$BIN/snap-chunk" stat "$id" --store "$S" --json >"$T/stat.json" || fail "stat"

for mode in lazy prefetch; do
    # lazy: nothing fetched ahead; prefetch: snapfs queues the chunks the layer's own
    # access.log names as soon as it is mounted (REAP), fc-launch installs its pages.
    if [ $mode = lazy ]; then mount_snapfs "$T/$mode" "$id" --store "tiered:dir:$T/cache.$mode|$S" --no-prefetch
    else mount_snapfs "$T/$mode" "$id" --store "tiered:dir:$T/cache.$mode|$S"; fi
    fspid=$SNAPFS_PID
    cmp "$T/$mode/access.log" "$T/snap/access.log" || fail "the access log on the mount differs"
    if [ $mode = lazy ]; then restore $mode "$T/$mode"; else restore $mode "$T/$mode" --prefetch "$T/$mode/access.log"; fi
    cmp -s "$T/orig.answer" "$T/$mode.answer" ||
        fail "$mode: answer differs: $(cat "$T/orig.answer") / $(cat "$T/$mode.answer")"
    kill -TERM $fspid; wait $fspid || fail "snapfs exit status: $(cat "$T/$mode.err")"
    python3 - "$mode" "$T/$mode.out" "$T/stat.json" "$T/$mode.json" "$T/orig.answer" <<'PY' || fail "$mode: bytes fetched"
import json, sys
mode = sys.argv[1]
fs = json.load(open(sys.argv[2])); st = json.load(open(sys.argv[3])); vm = json.load(open(sys.argv[4]))["memory"]
pages = json.loads(open(sys.argv[5]).read()[3:])["pages"]
ws = pages * 4096
print("snapfs %s worker: fetched %d chunks, %d stored bytes of %d stored (%.0f%%), %d logical (%.0f%%); "
      "working set %d pages = %d bytes -> %.1fx; fc-launch: %d faults, %d prefetched pages"
      % (mode, fs["chunks_fetched"], fs["fetched_bytes"], st["stored_bytes"], 100.0 * fs["fetched_bytes"] / st["stored_bytes"],
         st["logical_bytes"], 100.0 * fs["fetched_bytes"] / st["logical_bytes"], pages, ws, fs["fetched_bytes"] / ws,
         vm["faults"], vm["prefetched_pages"]), file=sys.stderr)
assert fs["failures"] == 0 and fs["timeouts"] == 0, fs
assert 0 < fs["fetched_bytes"] <= st["stored_bytes"], (fs, st)
assert fs["fetched_bytes"] < st["logical_bytes"] / 2, (fs, st)
if mode == "prefetch":
    assert vm["prefetched_pages"] > 0 and vm["faults"] < vm["prefetched_pages"] / 10, vm
    assert fs["prefetched_chunks"] > 0, fs
else:
    assert fs["prefetched_chunks"] == 0, fs
PY
done
exit 0
