#!/bin/sh
# make demo: boot the example nano functions in microVMs, invoke them over vsock,
# and print the figures that matter (cold start, warm round trip, exits per invoke).
# Usage: scripts/demo.sh [BUILD_DIR]
set -eu
O=${1:-build}
cd "$(dirname "$0")/.."
BIN=$O/bin GUEST=$O/guest
CLIENT=tests/cli/nano_client.py
T=$(mktemp -d /tmp/kindling-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT

if [ ! -c /dev/kvm ]; then
    echo "demo: /dev/kvm is missing: kindling needs KVM to run microVMs" >&2
    exit 69
fi

step() { printf '\n== %s\n' "$*"; }

step "boot the 'hello' function in a microVM (fc-launch, nano guest, vsock at $T/hello.sock)"
"$BIN/fc-launch" --kernel "$GUEST/hello.elf" --mem 32 --vsock "$T/hello.sock" &
vm=$!
printf '{"name":"kindling"}' >"$T/req.json"
echo "request:  $(cat "$T/req.json")"
echo "response: $(python3 $CLIENT "$T/hello.sock" invoke "$T/req.json")"
python3 $CLIENT "$T/hello.sock" hello-repeat 1000 exit 0
wait $vm
echo "1000 more invokes answered on one VM; the guest exited with status $?"

step "the 'sha256' function hashes a 1 MiB payload inside the VM"
head -c 1048576 /dev/urandom >"$T/blob"
"$BIN/fc-launch" --kernel "$GUEST/sha256.elf" --mem 32 --vsock "$T/sha.sock" --boot-args quiet &
vm=$!
echo "guest:     $(python3 $CLIENT "$T/sha.sock" invoke "$T/blob" exit 0 | cut -d' ' -f2)"
echo "sha256sum: $(sha256sum "$T/blob" | cut -d' ' -f1)"
wait $vm

step "figures (bench/boot, 20 runs)"
"$O/bench/boot-bench" "$O" 20

step "next: snapshots (snap-make), chunk stores (snap-chunk), and the Lambda API (routerd)"
echo "see README.md and docs/ARCHITECTURE.md"
