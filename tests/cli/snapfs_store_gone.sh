# snapfs when the store goes away: the store directory renamed mid-use turns reads of
# chunks not in memory into EIO (fast: a miss), a chunk whose store read hangs (a FIFO
# in its place) into EIO within --timeout-ms, and the mount stays responsive meanwhile;
# once the store is back, the same reads return the right bytes.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
random_layer

mount_snapfs "$T/mnt" "$id" --store "dir:$T/store" --timeout-ms 2000 --cache-mb 1 -vv
read_chunk "$T/mnt" 0 | cmp - "$T/layer/mem" -n 524288 || fail "chunk 0 before the outage"

mv "$T/store" "$T/store.away"
t0=$(now_ms)
read_chunk "$T/mnt" 6 >/dev/null 2>"$T/dd.err" && fail "a read succeeded with the store gone"
[ $(($(now_ms) - t0)) -lt 3000 ] || fail "the failed read took longer than the timeout"
ls "$T/mnt" | grep -q vmstate || fail "the mount does not answer with the store gone"
grep -q "chunk 6 at offset 3145728" "$T/mnt.err" || fail "snapfs did not log the failed chunk: $(cat "$T/mnt.err")"
mv "$T/store.away" "$T/store"
read_chunk "$T/mnt" 6 | cmp - "$T/layer/mem" -i 0:3145728 -n 524288 || fail "chunk 6 after the store came back"

# A store read that hangs: EIO after the timeout, and other reads go on meanwhile.
# The mount logs each fetch at -vv: the test waits for the hanging one to be in the
# store, and for it to have ended, instead of sleeping.
obj=$(chunk_object 7); obj7=$(chunk_id 7)
[ -f "$obj" ] || fail "no store object for chunk 7: $obj"
mv "$obj" "$T/obj7"; mkfifo "$obj"
t0=$(now_ms)
read_chunk "$T/mnt" 7 >/dev/null 2>&1 &
hung=$!
wait_log "$T/mnt.err" "chunk $obj7: fetching"
read_chunk "$T/mnt" 5 | cmp - "$T/layer/mem" -i 0:2621440 -n 524288 || fail "a read of another chunk while one hangs"
wait $hung && fail "the read of a hanging chunk succeeded"
dt=$(($(now_ms) - t0))
[ $dt -ge 1500 ] && [ $dt -lt 5000 ] || fail "the hanging read failed after $dt ms, want about 2000"
grep -q "within 2000 ms" "$T/mnt.err" || fail "no timeout message: $(cat "$T/mnt.err")"
# Unblock the stuck store read (it hangs in open(2) of the FIFO): the writer's open
# returns once the reader is there; the store then reads the FIFO as an empty object.
timeout 10 sh -c ': >"$1"' _ "$obj" || fail "the stuck store read never opened the FIFO"
wait_log "$T/mnt.err" "chunk $obj7: fetch failed"
rm -f "$obj"; mv "$T/obj7" "$obj"
read_chunk "$T/mnt" 7 | cmp - "$T/layer/mem" -i 0:3670016 -n 524288 || fail "chunk 7 after the store recovered"
exit 0
