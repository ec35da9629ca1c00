#include "jail/jail.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/fd.h"
#include "base/log.h"

namespace kindling {

namespace {

void check(int rc, const std::string& what) {
    if (rc != 0) throw SysError("jail: " + what, errno, kExitOsErr);
}

void set_rlimit(int resource, uint64_t value, const char* name) {
    if (value == 0) return;
    rlimit r{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
    check(::setrlimit(resource, &r), std::string("setrlimit ") + name);
}

// The signals the relay waits for: the three it forwards, and SIGCHLD.
sigset_t relayed_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
    return set;
}

std::string basename_of(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    size_t slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

JailLimits jail_limits_for(uint64_t guest_mib, uint32_t vcpus, uint64_t overhead_mib) {
    JailLimits l;
    l.cgroup.memory_bytes = (guest_mib + overhead_mib) << 20;
    l.cgroup.cpus = static_cast<double>(guest_mib) / 1769.0;
    l.cgroup.pids = vcpus + 16;
    l.max_threads = vcpus + 16;
    l.max_file_bytes = (guest_mib + 64) << 20;
    return l;
}

Jail::Jail(JailOptions opts) : opts_(std::move(opts)) {
    if (opts_.name.empty()) opts_.name = basename_of(opts_.dir);
}

std::optional<int> Jail::spawn() {
    if (::geteuid() != 0) throw Error("--jail needs root (namespaces, a cgroup, pivot_root and the uid drop)", kExitNoPerm);
    if (opts_.uid == 0 || opts_.gid == 0) throw UsageError("--jail: the VMM must not run as uid or gid 0");
    struct stat st {};
    if (::lstat(opts_.dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) throw UsageError("--jail " + opts_.dir + ": not a directory");
    } else if (errno == ENOENT) {
        check(::mkdir(opts_.dir.c_str(), 0755), "create " + opts_.dir);
        created_dir_ = true;
    } else {
        throw SysError("--jail " + opts_.dir, errno);
    }
    UniqueFd netns;
    if (!opts_.netns.empty()) {
        netns = UniqueFd(::open(opts_.netns.c_str(), O_RDONLY | O_CLOEXEC));
        if (!netns) throw SysError("--netns " + opts_.netns, errno);
    }
    try {
        cgroup_ = Cgroup::create(opts_.cgroup_parent, opts_.name);
    } catch (...) {
        if (created_dir_) ::rmdir(opts_.dir.c_str());
        throw;
    }

    // The relay waits for these synchronously; the VMM gets the caller's mask back.
    sigset_t relayed = relayed_signals(), old;
    pthread_sigmask(SIG_BLOCK, &relayed, &old);
    // The relay stays in the caller's pid namespace; its (only) child starts a new one.
    check(::unshare(CLONE_NEWPID), "new pid namespace");
    pid_t pid = ::fork();
    if (pid < 0) throw SysError("jail: fork", errno, kExitOsErr);
    if (pid > 0) return relay(pid);

    // The VMM, pid 1 of its namespace.  It dies with the relay.
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    cgroup_.join();
    check(::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (netns ? 0 : CLONE_NEWNET)), "new namespaces");
    if (netns) check(::setns(netns.get(), CLONE_NEWNET), "join network namespace " + opts_.netns);
    // Nothing mounted here shows outside, and nothing the host mounts later shows in.
    check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mounts private");
    check(::sethostname(opts_.name.data(), opts_.name.size()), "sethostname");
    return std::nullopt;
}

int Jail::relay(pid_t vmm) {
    const sigset_t relayed = relayed_signals();
    int status = 0;
    for (;;) {
        siginfo_t si{};
        int sig = ::sigwaitinfo(&relayed, &si);
        if (sig < 0) continue;  // EINTR
        if (sig != SIGCHLD) {
            ::kill(vmm, sig);
            continue;
        }
        pid_t r = ::waitpid(vmm, &status, WNOHANG);
        if (r == vmm) break;
    }
    uint64_t ooms = cgroup_.oom_kills();
    if (!cgroup_.remove()) log_warn("jail: cgroup %s could not be removed", cgroup_.path().c_str());
    if (created_dir_ && ::rmdir(opts_.dir.c_str()) != 0)
        log_warn("jail: %s: %s (left in place)", opts_.dir.c_str(), std::strerror(errno));
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    int sig = WTERMSIG(status);
    if (sig == SIGKILL && ooms > 0)
        log_error("the VMM was killed by the OOM killer: it reached the memory limit of cgroup %s", cgroup_.path().c_str());
    else
        log_error("the VMM was killed by %s", strsignal(sig));
    return 128 + sig;
}

void Jail::enter(const JailLimits& limits) {
    cgroup_.set_limits(limits.cgroup);

    // DIR becomes "/": bind it onto itself (pivot_root needs a mount point), without
    // setuid binaries, device nodes or execution, then detach the host's root.
    const char* dir = opts_.dir.c_str();
    check(::mount(dir, dir, nullptr, MS_BIND, nullptr), std::string("bind ") + dir);
    check(::mount(nullptr, dir, nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
          std::string("remount ") + dir + " nosuid,nodev,noexec");
    check(::chdir(dir), std::string("chdir ") + dir);
    check(static_cast<int>(::syscall(SYS_pivot_root, ".", ".")), std::string("pivot_root ") + dir);
    check(::umount2(".", MNT_DETACH), "detach the host's root");
    check(::chdir("/"), "chdir /");

    set_rlimit(RLIMIT_NOFILE, limits.max_files, "NOFILE");
    set_rlimit(RLIMIT_FSIZE, limits.max_file_bytes, "FSIZE");
    set_rlimit(RLIMIT_NPROC, limits.max_threads, "NPROC");
    rlimit no_core{0, 0};  // a core dump would hold guest memory
    check(::setrlimit(RLIMIT_CORE, &no_core), "setrlimit CORE");
    // Threads created later inherit the empty bounding set; the uid drop below takes
    // every capability from every thread (glibc applies set*id to all of them).
    for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap) >= 0; ++cap) check(::prctl(PR_CAPBSET_DROP, cap), "drop capability bounding set");
    check(::setgroups(0, nullptr), "setgroups");
    check(::setresgid(opts_.gid, opts_.gid, opts_.gid), "setresgid " + std::to_string(opts_.gid));
    check(::setresuid(opts_.uid, opts_.uid, opts_.uid), "setresuid " + std::to_string(opts_.uid));
    check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
    check(::prctl(PR_SET_DUMPABLE, 0), "not dumpable");
    // A uid change clears the parent-death signal: set it again.
    check(::prctl(PR_SET_PDEATHSIG, SIGKILL), "parent-death signal");
}

}  // namespace kindling
