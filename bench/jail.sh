#!/bin/sh
# bench/jail: what fc-launch --jail adds to a nano cold start (spawn -> first
# answer), each jailed run paired with a plain run: with a new network namespace per
# VM, and joining one made beforehand (--netns), both with a whole CPU; and with the
# default CPU share, Lambda's (32 MiB / 1769 MiB of a CPU), which throttles start-up
# itself.  Needs KVM and root.
O=${1:-build}
[ -c /dev/kvm ] || { echo "bench/jail: skipped: no /dev/kvm"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "bench/jail: skipped: --jail needs root"; exit 0; }
ns=kindling-bench-$$
ip netns add "$ns" || { echo "bench/jail: skipped: ip netns add failed"; exit 0; }
trap 'ip netns delete "$ns"' EXIT
echo "bench/jail: fc-launch --jail (namespaces, cgroup, pivot_root, uid drop) vs plain, same run"
BOOT_COLD_ONLY=1 "$O/bench/boot-bench" "$O" "${JAIL_RUNS:-30}" \
    "jail=--jail {tmp}/jail --uid 42000 --gid 42000 --cgroup-cpus 1" \
    "jail+shared-netns=--jail {tmp}/jail --uid 42000 --gid 42000 --cgroup-cpus 1 --netns /run/netns/$ns" \
    "jail+lambda-cpu-share=--jail {tmp}/jail --uid 42000 --gid 42000 --netns /run/netns/$ns"
