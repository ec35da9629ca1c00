// fc-launch --jail DIR: the VMM runs in namespaces of its own, chrooted (pivot_root)
// into DIR, as an unprivileged uid/gid with no capabilities, no_new_privs, rlimits
// and a cgroup of its own.
//
// Two steps, because a VMM opens its host resources (/dev/kvm, the snapshot's files,
// drives, the listening sockets, a userfaultfd, which needs privilege) before it can
// give up the right to open anything:
//
//   spawn()  at start-up, single-threaded: creates the cgroup and DIR, and forks the
//            VMM into new pid, mount, ipc and uts namespaces and a new (or the given)
//            network namespace.  The first process stays outside as a relay: it
//            forwards SIGINT/SIGTERM/SIGHUP, waits, removes the cgroup and the DIR it
//            created, and exits with the VMM's status.
//   enter()  in the VMM once everything is open and before any guest code runs:
//            cgroup limits, pivot_root into DIR (bind-mounted nosuid,nodev,noexec;
//            the old root detached), rlimits, the capability bounding set emptied,
//            groups/gid/uid dropped (every thread), no_new_privs, not dumpable.
//
// After enter() the VMM sees DIR as "/" and nothing else of the host: no /proc, no
// /dev, no other process (pid namespace), no network but its own loopback.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "jail/cgroup.h"

namespace kindling {

struct JailOptions {
    std::string dir;     // the VMM's root; created (and removed at exit) if absent
    uid_t uid = 0;       // who the VMM runs as: not 0, and one uid per VMM (RLIMIT_NPROC
    gid_t gid = 0;       // counts every thread of a uid, and a uid can signal its own)
    std::string netns;   // join this network namespace (a path, e.g. /run/netns/X)
                         // instead of creating one (a new one costs ~1 ms here)
    std::string cgroup_parent = "kindling";
    std::string name;    // the cgroup's and hostname's name; default DIR's basename
};

// What enter() limits the VMM to.  memory_bytes and cpus also size the cgroup.
struct JailLimits {
    CgroupLimits cgroup;
    uint64_t max_files = 4096;     // RLIMIT_NOFILE
    uint64_t max_file_bytes = 0;   // RLIMIT_FSIZE (0: unlimited)
    uint64_t max_threads = 0;      // RLIMIT_NPROC, counted per uid (0: unlimited)
    // (RLIMIT_CORE is always 0: a core dump would hold guest memory.)
};

// The VMM of a guest of `guest_mib` MiB and `vcpus` vCPUs: memory.max = guest
// memory + `overhead_mib` (the VMM's own); CPU in proportion to memory as Lambda
// allocates it (one CPU per 1769 MiB); threads: vCPUs + 16; files written at most
// the size of the guest memory + 64 MiB (a snapshot's memory file is the largest).
JailLimits jail_limits_for(uint64_t guest_mib, uint32_t vcpus, uint64_t overhead_mib = 64);

class Jail {
public:
    explicit Jail(JailOptions opts);

    // Forks the VMM into its namespaces.  Returns nullopt in the VMM; in the relay,
    // returns the VMM's exit status once it has exited and the jail is cleaned up.
    std::optional<int> spawn();
    // In the VMM, once every host resource is open.  Throws if a step fails (the
    // VMM must then not run the guest).
    void enter(const JailLimits& limits);

private:
    int relay(pid_t vmm);

    JailOptions opts_;
    Cgroup cgroup_;
    bool created_dir_ = false;
};

}  // namespace kindling
