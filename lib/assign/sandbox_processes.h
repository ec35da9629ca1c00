// The processes behind assignd's sandboxes (issue 7).  A sandbox is one `fc-launch
// --restore DIR --vsock RUN_DIR/sb-N.sock` process in a process group of its own (a
// terminal's ^C or assignd's own death does not take it along, and stopping it
// signals the whole group), its stderr in RUN_DIR/sb-N.log.  SandboxLauncher starts
// one; ProcessWatcher learns of each exit through the process's pidfd and turns a
// stop that takes too long into SIGKILL; the free functions recognise our fc-launch
// processes in /proc after a restart.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <initializer_list>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/event_loop.h"
#include "base/fd.h"

namespace kindling {

class SandboxTable;

// Starts sandbox processes.  An interface so that tests can start stand-ins.
class SandboxLauncher {
public:
    virtual ~SandboxLauncher() = default;
    // Starts sandbox `id` restored from `snapshot_dir` and serving its vsock at
    // `vsock`, in a process group of its own; returns its pid.  Throws if it cannot.
    virtual int64_t spawn(const std::string& id, const std::string& vsock, const std::string& snapshot_dir) = 0;
    // The last line sandbox `id` logged, for an error message; "" if none.
    virtual std::string log_tail(const std::string& id) const = 0;
};

// assignd --jail ROOT: sandbox sb-N runs `fc-launch --jail ROOT/sb-N` as uid
// first_uid + N % uids (so no two live sandboxes share a uid) and gid `gid`, in cgroup
// kindling/<ROOT's last component>/sb-N.
struct SandboxJail {
    std::string root;          // empty: sandboxes are not jailed
    uint32_t first_uid = 0;
    uint32_t uids = 65536;
    uint32_t gid = 0;
    std::string netns;         // fc-launch --netns, when set
};

// Runs `fc_launch --restore DIR --vsock PATH` with stdin and stdout on /dev/null,
// stderr in RUN_DIR/ID.log, an empty signal mask and default dispositions, and
// `--prefetch DIR/access.log` when the snapshot keeps one (REAP: a page access log
// recorded by a first restore is prefetched before the vCPUs run); jailed if
// `jail.root` is set.
class FcLauncher : public SandboxLauncher {
public:
    FcLauncher(std::string fc_launch, std::string run_dir, SandboxJail jail = {})
        : fc_launch_(std::move(fc_launch)), run_dir_(std::move(run_dir)), jail_(std::move(jail)) {}
    int64_t spawn(const std::string& id, const std::string& vsock, const std::string& snapshot_dir) override;
    std::string log_tail(const std::string& id) const override;

private:
    std::string fc_launch_;
    std::string run_dir_;
    SandboxJail jail_;
};

// Watches sandbox processes through their pidfds.  It has no thread: its owner calls
// poll() in a loop on one thread, where exits are reported.  The other methods are
// safe from any thread.
class ProcessWatcher {
public:
    // Called from poll() once per watched process that exits; `how` reads "exited",
    // "exited with status N" or "killed by SIGNAL".
    using ExitFn = std::function<void(const std::string& id, int64_t pid, const std::string& how)>;

    // A stop() turns into SIGKILL once `stop_timeout` has passed on `clock`, which
    // must outlive the watcher.
    ProcessWatcher(ExitFn on_exit, std::chrono::milliseconds stop_timeout, const Clock& clock);
    ProcessWatcher(const ProcessWatcher&) = delete;
    ProcessWatcher& operator=(const ProcessWatcher&) = delete;

    // Watches `pid` as sandbox `id` through `pidfd` (which pins the process).
    void watch(const std::string& id, int64_t pid, UniqueFd pidfd);
    // Waits up to `timeout` for exits and reports them, then SIGKILLs the process
    // group of every stop past its deadline (and again every second until it exits).
    void poll(std::chrono::milliseconds timeout);
    // Makes a poll() in progress return now.
    void wake() { loop_.wake(); }
    // SIGTERM to the process group of `pid`; poll() escalates after the stop timeout.
    void stop(int64_t pid);
    // Waits until every watched process has exited (poll() must go on meanwhile) or
    // `deadline` passes on the clock; true if none is left.
    bool wait_all_exited(Clock::time_point deadline);

private:
    void on_readable(const std::string& id, int fd);

    ExitFn on_exit_;
    std::chrono::milliseconds stop_timeout_;
    const Clock& clock_;
    EventLoop loop_;

    std::mutex mu_;
    std::condition_variable exited_cv_;  // an entry left watched_
    struct Watched {
        UniqueFd fd;
        int64_t pid = 0;
    };
    std::map<std::string, Watched> watched_;          // sandbox id -> its process
    std::map<int64_t, Clock::time_point> stopping_;   // pid -> when to SIGKILL it
};

// The environment a child of assignd gets: only the variables `names` that are set
// in assignd's own ("NAME=value" strings), never the rest (secrets, credentials).
class ChildEnvironment {
public:
    explicit ChildEnvironment(std::initializer_list<const char*> names);
    // A NULL-terminated envp for posix_spawn; valid while this object lives.
    char** envp() { return ptrs_.data(); }

private:
    std::vector<std::string> vars_;
    std::vector<char*> ptrs_;
};

// The pidfd of `pid` if it is the fc-launch serving `vsock` (checked before and after
// pidfd_open, which pins the process against pid reuse), else an invalid fd.
UniqueFd pin_fc_launch(int64_t pid, const std::string& vsock);

// pidfd_open(2) of `pid`; an invalid fd (errno set) if it fails.
UniqueFd open_pidfd(int64_t pid);

// A crash between spawning a sandbox and journaling its pid leaves an fc-launch the
// journal does not know; one still restoring is marked dead while its process runs on.
// Both serve a socket sb-N.sock in `run_dir`: SIGKILLs (process group and process)
// every such fc-launch that is not a live sandbox of `table` with that pid, and notes
// every sb-N seen in the run dir (files and processes) so that `table` never hands
// the id out again.
void kill_stray_sandboxes(const std::string& run_dir, SandboxTable& table);

}  // namespace kindling
