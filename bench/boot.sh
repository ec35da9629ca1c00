#!/bin/sh
# bench/boot: nano cold start vs native fork+exec, warm invoke round trip, exits
# per invoke, VMM memory overhead.  Needs KVM.
O=${1:-build}
[ -c /dev/kvm ] || { echo "bench/boot: skipped: no /dev/kvm"; exit 0; }
exec "$O/bench/boot-bench" "$O" "${BOOT_RUNS:-30}"
