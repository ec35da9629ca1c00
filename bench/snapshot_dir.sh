#!/bin/sh
# bench/snapshot_dir: writing, opening and verifying snapshot layers of one guest
# memory size, without KVM.  Knobs: SNAPDIR_MIB (128), SNAPDIR_RUNS (5).
O=${1:-build}
exec "$O/bench/snapshot_dir-bench" "${SNAPDIR_MIB:-128}" "${SNAPDIR_RUNS:-5}"
