#!/bin/sh
# bench/restore: init-heavy cold boot + init vs restore (file, uffd lazy, uffd +
# REAP prefetch) -> first answer at 16 and 64 MiB working sets; small-function
# restore -> first answer; concurrent restores per second; uffd fault counters.
# Needs KVM.  Knobs: RESTORE_RUNS (15), RESTORE_COLD_RUNS (5), RESTORE_CLONES (32),
# RESTORE_ROUNDS (3).
O=${1:-build}
[ -c /dev/kvm ] || { echo "bench/restore: skipped: no /dev/kvm"; exit 0; }
exec "$O/bench/restore-bench" "$O" "${RESTORE_RUNS:-15}" "${RESTORE_COLD_RUNS:-5}" \
    "${RESTORE_CLONES:-32}" "${RESTORE_ROUNDS:-3}"
