#!/bin/sh
# The sha256 nano guest answers the SHA-256 of payloads of 0 bytes to 1 MiB exactly
# as sha256sum computes it.
. "$(dirname "$0")/../lib.sh"
need_kvm
command -v python3 >/dev/null || skip "python3 is needed for the vsock client"

"$BIN/fc-launch" --kernel "$GUEST/sha256.elf" --mem 64 --vsock "$T/v.sock" >"$T/console" 2>"$T/err" &
vm=$!
PIDS="$PIDS $vm"

steps=""
for n in 0 1 3 55 56 63 64 65 4095 4096 16384 65535 65537 300000 1048576; do
    head -c $n /dev/urandom >"$T/p$n"
    steps="$steps invoke $T/p$n"
done
printf abc >"$T/abc"
wait_for_file "$T/v.sock" 5 || fail "no vsock socket: $(cat "$T/err")"
# shellcheck disable=SC2086
python3 "$ROOT/tests/cli/nano_client.py" "$T/v.sock" invoke "$T/abc" $steps exit 0 >"$T/out" 2>"$T/client" ||
    fail "client: $(cat "$T/client") / fc-launch: $(cat "$T/err")"
wait $vm || fail "fc-launch exited $? after EXIT 0: $(cat "$T/err")"

{
    echo "OK ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    for n in 0 1 3 55 56 63 64 65 4095 4096 16384 65535 65537 300000 1048576; do
        echo "OK $(sha256sum <"$T/p$n" | cut -c1-64)"
    done
} >"$T/want"
diff "$T/want" "$T/out" >"$T/diff" || fail "digests differ: $(cat "$T/diff")"
