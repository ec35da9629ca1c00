// assignd's core (issue 7): assigns sandboxes to acquires and places new ones on this
// host.  Acquires wait in arrival order; each is served by an idle sandbox of its
// function+version (warm) or by a new one restored from the snapshot (cold), the
// restore on a thread of its own so it never blocks the API: one restore per waiting
// acquire at most (no placement storm), bounded by the function's concurrency and the
// host's capacity (the least recently used idle sandbox of another function is
// evicted when the host is full).  A timer thread polls the sandboxes' pidfds (death
// -> dead, journaled, lease void), answers acquires whose wait ran out (throttled),
// reaps sandboxes idle past the TTL and compacts the journal; all of it on an
// injectable Clock.  Knows nothing of HTTP: assign_http.h serves it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "assign/sandbox_processes.h"
#include "assign/sandbox_table.h"
#include "assign/snapfs_mounts.h"
#include "base/clock.h"
#include "base/metrics.h"

namespace kindling {

class Journal;

struct AssignOptions {
    std::string socket;        // API Unix socket path
    std::string run_dir;       // sandbox sockets and logs
    std::string fc_launch = "fc-launch";
    std::string snapfs = "snapfs";
    size_t capacity = 64;      // live sandboxes on this host
    int64_t idle_ttl_ms = 300000;
    int64_t ready_timeout_ms = 10000;  // restore until the vsock socket accepts
    int64_t stop_timeout_ms = 3000;    // SIGTERM -> SIGKILL
    SandboxJail jail;                  // jail every sandbox (fc-launch --jail) if jail.root is set
    // An acquire's snapshot dir must lie in one of these (resolved); empty: anywhere.
    std::vector<std::string> snapshot_roots;
};

struct AcquireRequest {
    std::string function;
    std::string version = "$LATEST";
    std::string snapshot_dir;     // a local layer, or
    std::string manifest, store;  // a layer in a store, restored through a snapfs mount
    size_t concurrency = 1000;    // the function's limit on creating + busy sandboxes
    int64_t wait_ms = 0;          // how long to wait for one to free up
};

struct AcquireResult {
    enum Kind {
        kAcquired,     // sandbox, vsock, lease, cold, restore_ms, drains
        kThrottled,    // the concurrency limit or the capacity held for wait_ms
        kUnavailable,  // placement failed, or assignd is stopping
    };
    Kind kind = kAcquired;
    std::string sandbox, vsock, lease;
    bool cold = false;
    double restore_ms = 0;  // cold: spawn until the vsock socket accepted
    uint64_t drains = 0;    // drain() calls when the lease was handed out
    std::string message;    // kThrottled, kUnavailable: why
};

using AcquireCallback = std::function<void(AcquireResult)>;

enum class ReleaseOutcome {
    kOk,       // the sandbox goes back to idle
    kError,    // the same: the invoke failed, the sandbox did not
    kDestroy,  // the sandbox is stopped (a timed-out invoke: never reuse it)
};

struct SandboxInfo {
    Sandbox sandbox;
    int64_t last_used_ms = 0;  // wall clock, ms since the epoch
};

struct DrainResult {
    size_t stopped = 0;            // idle sandboxes stopped now
    size_t stopping_on_release = 0;  // busy or creating ones, stopped when released
};

struct AssignStats {
    size_t sandboxes[4] = {};  // by SandboxState
    size_t waiting = 0;        // acquires waiting for a sandbox to free up
    uint64_t acquires_warm = 0, acquires_cold = 0, throttles = 0, restores = 0, restore_failures = 0,
             deaths = 0, reaped = 0;
};

class Assigner {
public:
    // Creates the run dir and rebuilds the table from `journal`: recorded sandboxes
    // whose fc-launch still runs become idle, the others dead; strays are killed
    // (kill_stray_sandboxes).  `journal` and `clock` must outlive the assigner.
    Assigner(AssignOptions options, Journal& journal, std::unique_ptr<SandboxLauncher> launcher,
             const Clock& clock = Clock::steady());
    ~Assigner();
    Assigner(const Assigner&) = delete;
    Assigner& operator=(const Assigner&) = delete;

    // Starts the timer thread (pidfds, throttles, idle TTL, compaction).
    void start();
    // Answers waiting acquires kUnavailable, waits for placements in flight, stops
    // every sandbox (journaled as destroyed; SIGKILL after the stop timeout), stops
    // the timer thread and unmounts the snapfs mounts.  Idempotent.
    void stop();

    // Serves an acquire: `done` is called exactly once, without the assigner's lock,
    // either before acquire() returns (a warm sandbox, no time to wait, stopping) or
    // later from another thread (a restore, a sandbox freed up, the wait ran out).
    void acquire(AcquireRequest request, AcquireCallback done);
    // Throws DataError unless `dir` (resolved through symlinks) lies in one of the
    // options' snapshot_roots (when any are set).
    void check_snapshot_dir(const std::string& dir) const;
    // Ends a lease.  Returns "" or, for an unknown lease, why it is unknown ("unknown
    // or already released", or the death of its sandbox).
    std::string release(const std::string& lease, ReleaseOutcome outcome);
    // Stops the idle sandboxes of `function` (all functions if empty) and marks the
    // busy ones to stop on release; counts as one drain.
    DrainResult drain(const std::string& function);
    // Every sandbox in the table, sb-2 before sb-10.
    std::vector<SandboxInfo> sandboxes();

    // One pass of the timer: answers acquires whose wait ran out, stops sandboxes
    // idle past the TTL, compacts a grown journal, joins finished placements.  The
    // timer thread calls it every 50 ms; tests may call it after moving the clock.
    void tick();

    // Random per assignd process: a new one tells routerd its leases were voided.
    const std::string& instance() const { return instance_; }
    uint64_t drains() const { return drains_.load(); }
    AssignStats stats();
    // Spawn of fc-launch until its vsock socket accepts, in seconds.
    const Histogram& restore_seconds() const { return restore_seconds_; }

private:
    struct Waiter {
        AcquireRequest request;
        Clock::time_point start, deadline;
        AcquireCallback done;
    };
    struct Placement {
        std::string id;
        Waiter waiter;
    };
    struct PlacementThread {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
    };
    // Answers to send once mu_ is released.
    using Outbox = std::vector<std::pair<AcquireCallback, AcquireResult>>;

    void rebuild();
    void timer_loop();
    void on_exit(const std::string& id, int64_t pid, const std::string& how);
    void start_placement(Placement p);
    void place(Placement p);
    void stop_all();
    static void flush(Outbox& out);

    // Under mu_:
    void pump(Outbox& out);
    void stop_sandbox(Sandbox& s);
    void prune_dead();
    AcquireResult acquired(const Sandbox& s, bool cold, double restore_ms) const;
    AcquireResult throttled(const Waiter& w) const;

    const AssignOptions opt_;
    const Clock& clock_;
    Journal& journal_;
    std::unique_ptr<SandboxLauncher> launcher_;
    SnapfsMounts mounts_;
    const std::string instance_;
    std::atomic<uint64_t> drains_{0};

    std::mutex mu_;
    SandboxTable table_;
    std::list<Waiter> waiters_;
    std::map<std::string, std::string> void_leases_;  // lease -> why (sandbox died)
    std::atomic<bool> stopping_{false};
    AssignStats stats_;  // counters only (under mu_); stats() fills in the gauges
    Histogram restore_seconds_{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

    ProcessWatcher processes_;
    std::thread timer_;
    std::atomic<bool> timer_stop_{false};

    std::mutex threads_mu_;
    std::list<PlacementThread> placements_;
};

}  // namespace kindling
