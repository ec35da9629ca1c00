// A cgroup per sandbox, on whichever hierarchy holds the memory controller:
// cgroup v2 (one directory, memory + cpu + pids enabled down the path) or, on hosts
// that still mount the v1 controllers, one directory in each of v1's memory, cpu and
// pids hierarchies.  Limits: memory.max (v1 memory.limit_in_bytes, swap included
// where the host accounts it), cpu.max (v1 cfs quota/period), pids.max.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kindling {

struct CgroupLimits {
    uint64_t memory_bytes = 0;  // 0: unlimited
    double cpus = 0;            // CPUs' worth of time per period; 0: unlimited
    uint64_t pids = 0;          // 0: unlimited
};

class Cgroup {
public:
    // Creates PARENT/NAME (PARENT a relative path such as "kindling") in the
    // hierarchy with the memory controller; an error names the cgroup and the cause.
    // A leftover empty group of that name (a VMM killed before it cleaned up) is
    // reused.
    static Cgroup create(const std::string& parent, const std::string& name);

    Cgroup() = default;
    Cgroup(Cgroup&&) = default;
    Cgroup& operator=(Cgroup&&) = default;

    // Moves the calling process (all its threads) into the group.
    void join() const;
    void set_limits(const CgroupLimits& l) const;
    // How many times the kernel's OOM killer killed a process of the group.
    uint64_t oom_kills() const;
    // Removes the group's directories; its processes must have exited.  Best effort
    // (retries briefly while the kernel finishes detaching them); false if one stays.
    bool remove() const;

    bool v2() const { return v2_; }
    // The group's directory (v2) or its memory-controller directory (v1).
    const std::string& path() const { return dirs_.front(); }

private:
    bool v2_ = false;
    std::vector<std::string> dirs_;  // v2: one; v1: memory, cpu, pids
};

}  // namespace kindling
