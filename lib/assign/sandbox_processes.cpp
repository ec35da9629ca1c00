#include "assign/sandbox_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "assign/sandbox_table.h"
#include "base/error.h"
#include "base/io.h"
#include "base/log.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace kindling {

namespace {

// N of a run-dir file named sb-N.<anything>, or 0.
uint64_t sandbox_number(const std::string& filename) {
    if (filename.rfind("sb-", 0) != 0) return 0;
    size_t dot = filename.find('.');
    std::string digits = filename.substr(3, dot == std::string::npos ? std::string::npos : dot - 3);
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return 0;
    return std::stoull(digits);
}

// The --vsock path of process `pid` if it is an fc-launch, else "".  (After a restart
// a recorded pid may have been reused by anything.)
std::string fc_launch_vsock(int64_t pid) {
    // /proc files report size 0: read to EOF rather than by size.
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> argv;
    size_t start = 0;
    for (size_t i = 0; i < cmd.size(); i++)
        if (cmd[i] == '\0') argv.push_back(cmd.substr(start, i - start)), start = i + 1;
    if (argv.empty() || std::filesystem::path(argv[0]).filename() != "fc-launch") return "";
    for (size_t i = 0; i + 1 < argv.size(); i++)
        if (argv[i] == "--vsock") return argv[i + 1];
    return "";
}

bool is_our_fc_launch(int64_t pid, const std::string& vsock) { return fc_launch_vsock(pid) == vsock; }

// The parent pid of `pid`, or 0.  (A jailed sandbox is two fc-launch processes: the
// relay assignd started and, its child, the VMM.)
int64_t parent_of(int64_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    long long ppid = 0;
    return std::sscanf(stat.c_str() + close + 1, " %*c %lld", &ppid) == 1 ? ppid : 0;
}

}  // namespace

// ---- ChildEnvironment ----

ChildEnvironment::ChildEnvironment(std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (const char* v = std::getenv(n)) vars_.push_back(std::string(n) + "=" + v);
    for (std::string& v : vars_) ptrs_.push_back(v.data());
    ptrs_.push_back(nullptr);
}

// ---- FcLauncher ----

int64_t FcLauncher::spawn(const std::string& id, const std::string& vsock, const std::string& snapshot_dir) {
    std::string log_path = run_dir_ + "/" + id + ".log";
    ::unlink(vsock.c_str());
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // Own process group: a terminal's ^C or assignd's own death doesn't take the
    // sandboxes with it, and stopping one signals its whole group.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, sig);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<std::string> args = {fc_launch_, "--restore", snapshot_dir, "--vsock", vsock};
    if (!jail_.root.empty()) {
        std::string root = std::filesystem::path(jail_.root).lexically_normal().string();
        while (root.size() > 1 && root.back() == '/') root.pop_back();
        uint64_t n = sandbox_number(id);
        for (std::string a : std::initializer_list<std::string>{"--jail", root + "/" + id, "--uid", std::to_string(jail_.first_uid + n % jail_.uids), "--gid",
                              std::to_string(jail_.gid), "--cgroup-parent",
                              "kindling/" + std::filesystem::path(root).filename().string()})
            args.push_back(std::move(a));
        if (!jail_.netns.empty()) args.insert(args.end(), {"--netns", jail_.netns});
    }
    if (std::string log = snapshot_dir + "/access.log"; ::access(log.c_str(), R_OK) == 0) {
        args.push_back("--prefetch");
        args.push_back(log);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // A VMM needs no variable of assignd's (KINDLING_KVM_DEV: tests' /dev/kvm stand-in).
    ChildEnvironment env({"KINDLING_KVM_DEV"});
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, fc_launch_.c_str(), &fa, &attr, argv.data(), env.envp());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw SysError("spawn " + fc_launch_, rc);
    return pid;
}

std::string FcLauncher::log_tail(const std::string& id) const {
    try {
        std::string l = read_file(run_dir_ + "/" + id + ".log");
        while (!l.empty() && l.back() == '\n') l.pop_back();
        size_t nl = l.rfind('\n');
        return nl == std::string::npos ? l : l.substr(nl + 1);
    } catch (const std::exception&) {
        return "";
    }
}

// ---- ProcessWatcher ----

ProcessWatcher::ProcessWatcher(ExitFn on_exit, std::chrono::milliseconds stop_timeout, const Clock& clock)
    : on_exit_(std::move(on_exit)), stop_timeout_(stop_timeout), clock_(clock) {}

void ProcessWatcher::watch(const std::string& id, int64_t pid, UniqueFd pidfd) {
    int fd = pidfd.get();
    {
        std::lock_guard lk(mu_);
        watched_[id] = Watched{std::move(pidfd), pid};
    }
    loop_.add(fd, EPOLLIN, [this, id, fd](uint32_t) { on_readable(id, fd); });
}

void ProcessWatcher::on_readable(const std::string& id, int fd) {
    loop_.remove(fd);
    siginfo_t si{};
    std::string how = "exited";
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | WNOHANG) == 0 &&
        si.si_pid != 0) {
        how = si.si_code == CLD_EXITED ? "exited with status " + std::to_string(si.si_status)
                                       : std::string("killed by ") + strsignal(si.si_status);
    }
    int64_t pid = 0;
    {
        std::lock_guard lk(mu_);
        pid = watched_[id].pid;
        watched_.erase(id);  // closes the pidfd
        stopping_.erase(pid);
    }
    on_exit_(id, pid, how);
    exited_cv_.notify_all();
}

void ProcessWatcher::poll(std::chrono::milliseconds timeout) {
    loop_.run_once(static_cast<int>(timeout.count()));
    std::lock_guard lk(mu_);
    Clock::time_point now = clock_.now();
    for (auto& [pid, deadline] : stopping_)
        if (now >= deadline) {
            ::kill(static_cast<pid_t>(-pid), SIGKILL);
            deadline = now + std::chrono::seconds(1);
        }
}

void ProcessWatcher::stop(int64_t pid) {
    ::kill(static_cast<pid_t>(-pid), SIGTERM);
    std::lock_guard lk(mu_);
    stopping_[pid] = clock_.now() + stop_timeout_;
}

bool ProcessWatcher::wait_all_exited(Clock::time_point deadline) {
    std::unique_lock lk(mu_);
    return wait_until(clock_, exited_cv_, lk, deadline, [&] { return watched_.empty(); });
}

// ---- recognising our processes ----

UniqueFd open_pidfd(int64_t pid) {
    // glibc's wrapper is missing from some versions; the system call is Linux 5.3+.
    return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)));
}

UniqueFd pin_fc_launch(int64_t pid, const std::string& vsock) {
    UniqueFd pfd;
    if (pid > 0 && is_our_fc_launch(pid, vsock) && std::filesystem::exists(vsock)) pfd = open_pidfd(pid);
    // Checked again after pidfd_open: the pidfd now pins this process.
    if (pfd && !is_our_fc_launch(pid, vsock)) pfd.reset();
    return pfd;
}

void kill_stray_sandboxes(const std::string& run_dir, SandboxTable& table) {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::path(run_dir).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path();  // "run/" -> "run"
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        table.note_id(sandbox_number(e.path().filename().string()));
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        int64_t pid = std::stoll(name);
        std::filesystem::path vsock = fc_launch_vsock(pid);
        if (vsock.empty() || vsock.lexically_normal().parent_path() != dir) continue;
        uint64_t n = sandbox_number(vsock.filename().string());
        if (n == 0) continue;
        table.note_id(n);
        const Sandbox* s = table.find("sb-" + std::to_string(n));
        if (s && (s->pid == pid || parent_of(pid) == s->pid) && s->state != SandboxState::kDead) continue;
        log_warn("stray fc-launch pid %lld serving %s (not live in the journal): killed",
                 static_cast<long long>(pid), vsock.c_str());
        ::kill(static_cast<pid_t>(-pid), SIGKILL);  // its process group, as a stop does
        ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
}

}  // namespace kindling
