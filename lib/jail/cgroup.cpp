#include "jail/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "base/io.h"

namespace kindling {

namespace {

struct Mount {
    std::string dir;
    std::string type;     // cgroup2 or cgroup
    std::string options;  // super options: v1's controller names
};

std::vector<Mount> cgroup_mounts() {
    // /proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS] - TYPE SOURCE SUPEROPTS
    std::ifstream in("/proc/self/mountinfo");
    std::vector<Mount> out;
    std::string line;
    while (std::getline(in, line)) {
        size_t dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream pre(line.substr(0, dash)), post(line.substr(dash + 3));
        std::string id, parent, dev, root, dir, type, source, super;
        pre >> id >> parent >> dev >> root >> dir;
        post >> type >> source >> super;
        if (type == "cgroup2" || type == "cgroup") out.push_back({dir, type, super});
    }
    return out;
}

bool has_word(const std::string& list, const std::string& word, char sep) {
    std::istringstream s(list);
    std::string w;
    while (std::getline(s, w, sep))
        if (w == word) return true;
    return false;
}

void write_value(const std::string& path, const std::string& value) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
        throw SysError("cgroup: write '" + value + "' to " + path, errno, kExitOsErr);
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw SysError("cgroup: create " + path, errno, kExitOsErr);
}

// "key value" lines (memory.events, memory.oom_control): the value of `key`, or 0.
uint64_t keyed_value(const std::string& path, const std::string& key) {
    std::ifstream in(path);
    std::string k;
    uint64_t v = 0;
    while (in >> k >> v)
        if (k == key) return v;
    return 0;
}

}  // namespace

Cgroup Cgroup::create(const std::string& parent, const std::string& name) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw UsageError("cgroup name '" + name + "': must be one path component");
    std::vector<Mount> mounts = cgroup_mounts();
    Cgroup g;
    // v2 first, when its root offers the memory controller (a pure v2 host, or a
    // hybrid one whose v1 hierarchies left memory to it).
    for (const Mount& m : mounts) {
        if (m.type != "cgroup2") continue;
        std::string controllers;
        try {
            controllers = read_file(m.dir + "/cgroup.controllers");
        } catch (const std::exception&) {
            continue;
        }
        controllers = controllers.substr(0, controllers.find('\n'));
        if (!has_word(controllers, "memory", ' ')) continue;
        g.v2_ = true;
        std::string dir = m.dir;
        std::string want;
        for (const char* c : {"memory", "cpu", "pids"})
            if (has_word(controllers, c, ' ')) want += std::string(want.empty() ? "" : " ") + "+" + c;
        // Controllers are enabled in every ancestor's subtree_control down to the group.
        std::istringstream parts(parent);
        std::string part;
        write_value(dir + "/cgroup.subtree_control", want);
        while (std::getline(parts, part, '/')) {
            if (part.empty()) continue;
            dir += "/" + part;
            make_dir(dir);
            write_value(dir + "/cgroup.subtree_control", want);
        }
        dir += "/" + name;
        make_dir(dir);
        g.dirs_ = {dir};
        return g;
    }
    for (const char* controller : {"memory", "cpu", "pids"}) {
        const Mount* found = nullptr;
        for (const Mount& m : mounts)
            if (m.type == "cgroup" && has_word(m.options, controller, ',')) found = &m;
        if (!found) {
            if (std::string(controller) == "memory")
                throw UnavailableError("cgroup: no hierarchy has the memory controller (mount cgroup2 with it, or v1's memory)");
            continue;  // cpu or pids limits are then not enforced
        }
        std::string dir = found->dir;
        std::istringstream parts(parent);
        std::string part;
        while (std::getline(parts, part, '/'))
            if (!part.empty()) make_dir(dir += "/" + part);
        dir += "/" + name;
        make_dir(dir);
        g.dirs_.push_back(dir);
    }
    return g;
}

void Cgroup::join() const {
    // "0" is the writing process itself, whatever pid namespace it is in.
    for (const std::string& d : dirs_) write_value(d + "/cgroup.procs", "0");
}

void Cgroup::set_limits(const CgroupLimits& l) const {
    const uint64_t period_us = 100000;
    uint64_t quota_us = l.cpus > 0 ? std::max<uint64_t>(1000, static_cast<uint64_t>(std::llround(l.cpus * period_us))) : 0;
    if (v2_) {
        const std::string& d = dirs_.front();
        if (l.memory_bytes) {
            write_value(d + "/memory.max", std::to_string(l.memory_bytes));
            // Guest memory a VMM cannot hold must not go to swap either.
            if (::access((d + "/memory.swap.max").c_str(), F_OK) == 0) write_value(d + "/memory.swap.max", "0");
        }
        if (quota_us) write_value(d + "/cpu.max", std::to_string(quota_us) + " " + std::to_string(period_us));
        if (l.pids) write_value(d + "/pids.max", std::to_string(l.pids));
        return;
    }
    for (const std::string& d : dirs_) {
        if (l.memory_bytes && ::access((d + "/memory.limit_in_bytes").c_str(), F_OK) == 0) {
            write_value(d + "/memory.limit_in_bytes", std::to_string(l.memory_bytes));
            if (::access((d + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0)
                write_value(d + "/memory.memsw.limit_in_bytes", std::to_string(l.memory_bytes));
        }
        if (quota_us && ::access((d + "/cpu.cfs_quota_us").c_str(), F_OK) == 0) {
            write_value(d + "/cpu.cfs_period_us", std::to_string(period_us));
            write_value(d + "/cpu.cfs_quota_us", std::to_string(quota_us));
        }
        if (l.pids && ::access((d + "/pids.max").c_str(), F_OK) == 0) write_value(d + "/pids.max", std::to_string(l.pids));
    }
}

uint64_t Cgroup::oom_kills() const {
    if (dirs_.empty()) return 0;
    return v2_ ? keyed_value(dirs_.front() + "/memory.events", "oom_kill")
               : keyed_value(dirs_.front() + "/memory.oom_control", "oom_kill");
}

bool Cgroup::remove() const {
    bool ok = true;
    for (const std::string& d : dirs_) {
        // An exited process leaves its group a moment after its parent reaped it.
        int tries = 0;
        while (::rmdir(d.c_str()) != 0 && errno == EBUSY && ++tries < 200)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (::access(d.c_str(), F_OK) == 0) ok = false;
    }
    return ok;
}

}  // namespace kindling
