# snapfs unmounts cleanly on SIGTERM (and SIGINT) while reads are in flight: a read
# stuck on a hanging store read (a FIFO in place of the chunk) fails, snapfs exits 0
# within a second or two, and /proc/mounts no longer lists the mountpoint.
. "$(dirname "$0")/../lib.sh"
. "$ROOT/tests/cli/snapfs.lib"
need_fuse
export KINDLING_CONVERGENCE_SECRET=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
random_layer

obj=$(chunk_object 3); obj3=$(chunk_id 3)
mv "$obj" "$T/obj3"; mkfifo "$obj"
for sig in TERM INT; do
    mount_snapfs "$T/mnt$sig" "$id" --store "dir:$T/store" --timeout-ms 60000 -vv
    read_chunk "$T/mnt$sig" 3 >/dev/null 2>&1 &
    r1=$!
    read_chunk "$T/mnt$sig" 1 >/dev/null 2>&1 &
    r2=$!
    # -vv logs each fetch: the read of chunk 3 is in flight once its fetch started.
    wait_log "$T/mnt$sig.err" "chunk $obj3: fetching"
    kill -0 $r1 2>/dev/null || fail "the read of the hanging chunk did not hang"
    t0=$(date +%s%3N)
    kill -$sig $SNAPFS_PID
    wait $SNAPFS_PID; rc=$?
    dt=$(($(date +%s%3N) - t0))
    [ $rc = 0 ] || fail "snapfs exit status $rc after SIG$sig: $(cat "$T/mnt$sig.err")"
    [ $dt -lt 5000 ] || fail "snapfs took $dt ms to stop on SIG$sig"
    mounted "$T/mnt$sig" && fail "still mounted after SIG$sig"
    wait $r1 && fail "the stuck read succeeded"
    wait $r2
    [ -z "$(ls -A "$T/mnt$sig")" ] || fail "mountpoint not left empty"
done
exit 0
