// routerd's invoker: runs an invoke on a sandbox under a lease -- one the router holds
// from an earlier invoke (lease_cache), else one acquired from assignd -- over the
// pooled vsock connections, then settles the lease: kept for the next invoke, or
// given back to assignd.  It also follows assignd's epoch (its instance id and drain
// count): a lease granted before a restart is forgotten, one from before a drain is
// given back.  A thread of its own hands back leases unused for the hold time and,
// while leases are out, asks assignd for its epoch (GET /v1/instance).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/clock.h"
#include "route/assign_client.h"
#include "route/invocation.h"
#include "route/lease_cache.h"
#include "route/router_metrics.h"
#include "route/sandbox_client.h"

namespace kindling::route {

struct InvokerOptions {
    std::string assignd_socket;
    unsigned acquire_wait_ms = 100;  // for a sandbox to come free, before a 429
    unsigned lease_hold_ms = 100;    // keep a sandbox this long for the next invoke (0: off)
};

// A lease to give back to assignd (POST /v1/release) once the client has its answer.
struct LeaseRelease {
    Lease lease;
    std::string outcome;  // "ok", "error", "destroy"
};

struct Invocation {
    InvokeResult result;
    // For the caller to pass to Invoker::give_back() after it answered its client:
    // the release is one more assignd round trip the client need not wait for (a
    // later acquire that finds the sandbox still busy waits for it).  Never on the
    // HTTP I/O thread.
    std::optional<LeaseRelease> release;
    // settle(keep_for_caller): the caller runs its next invoke on the lease.
    bool kept = false;
};

class Invoker {
public:
    // `clock` times the lease hold; it must outlive the invoker.
    Invoker(InvokerOptions options, RouterMetrics& metrics, const Clock& clock = Clock::steady());
    ~Invoker();
    Invoker(const Invoker&) = delete;
    Invoker& operator=(const Invoker&) = delete;

    // Joins the lease thread and gives every held lease back.  Idempotent.
    void stop();

    // Runs one invoke, blocking (on a worker): a held lease of function+version (one
    // whose sandbox hung up is destroyed and the next tried), else an acquire from
    // assignd, waiting up to acquire_wait_ms for the function's limit; then settle().
    // `request_id` appears in error bodies and the log tail.
    Invocation invoke(const Function& f, const std::string& version, const std::string& payload, bool log_tail,
                      const std::string& request_id);

    struct Timing {
        std::chrono::steady_clock::time_point arrived;   // the request (latency)
        std::chrono::steady_clock::time_point acquired;  // the lease (REPORT Duration)
    };
    // After the guest answered (or did not): the result, the metrics, and the lease
    // put in the cache (before the answer goes out, so a client's next request finds
    // it), forgotten (granted by an assignd that restarted since), or in
    // Invocation::release.  With `keep_for_caller` a lease that may be kept is left to
    // the caller instead (Invocation::kept).  `reused`: on a pooled connection (log).
    Invocation settle(const Function& f, const std::string& version, const Lease& lease, GuestAnswer answer,
                      Timing timing, bool log_tail, bool reused, const std::string& request_id, bool keep_for_caller);

    // Releases to assignd (blocking) and ends the lease's count.
    void give_back(const LeaseRelease& r);

    // Rate Exceeded: the function's limit of leases stayed out for acquire_wait_ms.
    InvokeResult throttled(const Function& f) const;

    LeaseCache& leases() { return leases_; }
    VsockPool& pool() { return pool_; }

private:
    void release(const std::string& lease_id, const std::string& outcome);
    // From an acquire answer or GET /v1/instance: a new instance voids every lease
    // from before, a new drain count gives the held ones back.
    void note_assignd_epoch(const std::string& instance, uint64_t drains);
    enum class Epoch { kCurrent, kDrained, kRestarted };
    // A lease granted at (instance, drains), compared with assignd now.
    Epoch epoch_of(const std::string& instance, uint64_t drains);
    void lease_loop();

    InvokerOptions opts_;
    RouterMetrics& metrics_;
    AssignClient assign_;
    VsockPool pool_;
    LeaseCache leases_;

    std::mutex epoch_mu_;
    std::string instance_;  // assignd's, from acquire answers and GET /v1/instance
    uint64_t drains_ = 0;

    std::mutex stop_mu_;
    std::condition_variable stop_cv_;  // wakes lease_loop to stop
    bool stopping_ = false;
    std::thread lease_thread_;
};

}  // namespace kindling::route
