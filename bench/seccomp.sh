#!/bin/sh
# bench/seccomp: cold start and warm invoke cost of fc-launch's per-thread seccomp
# filters (on vs --no-seccomp, same run), and the cost per allowed system call.
O=${1:-build}
[ -c /dev/kvm ] || { echo "bench/seccomp: skipped: no /dev/kvm"; exit 0; }
exec "$O/bench/seccomp-bench" "$O" "${SECCOMP_RUNS:-30}"
