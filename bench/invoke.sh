#!/bin/sh
# bench/invoke: warm invoke latency added by routerd + assignd over a direct vsock
# invoke of the same sandbox (p50/p99), and keep-alive throughput through routerd vs
# straight to the sandboxes.  Needs KVM.  Knobs: INVOKE_RUNS (2000 sequential invokes
# each way), INVOKE_SECONDS (10 per throughput run), INVOKE_CONNS (64),
# INVOKE_SANDBOXES (2), INVOKE_ROUTERD_ARGS (extra routerd flags, e.g. "--workers 8").
# With wrk installed (install-deps does), the throughput is also measured with wrk.
O=${1:-build}
[ -c /dev/kvm ] || { echo "bench/invoke: skipped: no /dev/kvm"; exit 0; }
exec "$O/bench/invoke-bench" "$O" "${INVOKE_RUNS:-2000}" "${INVOKE_SECONDS:-10}" "${INVOKE_CONNS:-64}" \
    "${INVOKE_SANDBOXES:-2}"
