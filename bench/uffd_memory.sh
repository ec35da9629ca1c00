#!/bin/sh
# bench/uffd_memory: lazy userfaultfd faults against prefetch (2 MiB and 4 KiB
# batches, sync and async), page cache warm and cold, without KVM.
# Knob: UFFD_MIB (64).
O=${1:-build}
exec "$O/bench/uffd_memory-bench" "${UFFD_MIB:-64}"
