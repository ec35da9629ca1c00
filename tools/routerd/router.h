// routerd: the Lambda API front end (routerd(1)).  Authenticates with SigV4, resolves
// the function, acquires a sandbox from assignd, invokes it over vsock, releases it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "event_queue.h"
#include "http/http_server.h"
#include "http/sigv4_verify.h"
#include "lease_cache.h"
#include "registry.h"
#include "sandbox_client.h"

namespace kindling::routerd {

struct RouterOptions {
    std::string functions_path;
    std::string credentials_path;
    std::string assignd_socket;
    std::string queue_dir;
    unsigned workers = 32;
    unsigned acquire_wait_ms = 100;
    unsigned lease_hold_ms = 100;  // keep a sandbox this long for the next invoke (0: off)
    unsigned event_retry_delay_ms = 1000;  // doubled for the second retry
};

class Router {
public:
    explicit Router(RouterOptions opts);
    ~Router();
    // Re-reads the functions and credentials files; keeps the old ones on error.
    void reload();
    // Lets handle() run warm invokes on the server's I/O thread (HttpServer::watch).
    // Before server->start(); the server must outlive the router's use of it.
    void attach(HttpServer* server) { server_ = server; }
    void handle(const HttpRequest& req, HttpResponder respond);
    HttpResponse error_response(int status, const std::string& message) const;
    void stop();

private:
    struct InvokeResult {
        enum Kind { kOk, kFunctionError, kThrottled, kServiceError } kind = kServiceError;
        std::string body;     // payload, or error JSON for a function error
        std::string message;  // throttle / service error message
        std::string log;
        bool cold = false;
    };
    struct FastInvoke;
    struct Lease {
        std::string key, sandbox, vsock, lease, instance;
        uint64_t drains = 0;
        bool cold = false;
    };
    HttpResponse route(const HttpRequest& req);
    HttpResponse invoke(const HttpRequest& req, const SigV4Identity& who, const std::string& name,
                        const std::string& qualifier);
    InvokeResult run(const Function& f, const std::string& version, const std::string& payload, bool tail);
    // After the guest answered (or did not): the result, the lease kept or given back,
    // metrics.
    InvokeResult settle(const Function& f, const std::string& version, const Lease& l, GuestAnswer ans,
                        std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t_acq,
                        bool tail, bool reused, const std::string& rid, bool* kept);
    InvokeResult throttled(const Function& f) const;
    HttpResponse to_response(const InvokeResult& res, const std::string& version, bool tail) const;
    // On the I/O thread (router_io.cpp): a sync invoke on a held lease with an idle
    // pooled connection, sent now and answered from FdWatch::when_readable, or queued
    // behind one at the concurrency limit; takes `respond`.  False: the caller hands
    // the request to a worker.
    bool start_fast(std::shared_ptr<const Registry> reg, const Function& f, const std::string& version,
                    const std::string& payload, HttpResponder& respond);
    // Sends the invoke on lease `l`.  kNoConnection: no idle pooled connection,
    // nothing taken.  kDead: the sandbox hung up; its lease is given back to be
    // destroyed.  `counted`: a queued invoke, counted when it came.
    enum class Launch { kStarted, kNoConnection, kDead };
    Launch launch_fast(std::shared_ptr<const Registry> reg, const Function& f, const std::string& version,
                       const std::string& payload, HttpResponder&& respond, Lease l,
                       std::chrono::steady_clock::time_point t0, bool counted);
    void await_fast(const std::shared_ptr<FastInvoke>& x);
    // A sync invoke waiting on the I/O thread for a lease of its key to come back
    // from an invoke running there.
    struct Queued {
        std::shared_ptr<const Registry> reg;
        const Function* f = nullptr;
        std::string version, payload;
        HttpResponder respond;
        std::chrono::steady_clock::time_point arrived;
        bool done = false;  // served, throttled or handed to a worker
    };
    void to_worker(const std::shared_ptr<Queued>& q);
    void finish_fast(const std::shared_ptr<FastInvoke>& x, GuestAnswer ans);
    void submit(std::function<void()> job);
    // On a worker: answers `respond` with make(); an exception is a 500
    // ServiceException logged with `what`; a release to assignd waits until after.
    void on_worker(std::string what, HttpResponder respond, std::function<HttpResponse()> make);
    void worker_loop();
    void event_loop();
    void release(const std::string& lease, const std::string& outcome);
    // From an acquire answer or GET /v1/instance: a new instance voids every lease
    // from before, a new drain count gives the held ones back.
    void assignd_epoch(const std::string& instance, uint64_t drains);
    enum class Epoch { kCurrent, kDrained, kRestarted };
    // A lease granted at (instance, drains), compared with assignd now.
    Epoch epoch(const std::string& instance, uint64_t drains);
    void lease_loop();
    void enqueue_event(QueuedEvent e, int attempt, std::chrono::steady_clock::time_point when);
    std::shared_ptr<const Registry> registry() const;
    std::string metrics() const;

    RouterOptions opts_;
    HttpServer* server_ = nullptr;
    // I/O thread only: invokes running there, and requests waiting for them, per key.
    std::map<std::string, size_t> io_inflight_;
    std::map<std::string, std::deque<std::shared_ptr<Queued>>> io_queue_;
    SigV4Verifier verifier_;
    AssignClient assign_;
    VsockPool pool_;
    LeaseCache leases_;
    std::mutex instance_mu_;
    std::string instance_;  // assignd's, from acquire answers and GET /v1/instance
    uint64_t drains_ = 0;
    std::thread lease_thread_;
    std::condition_variable lease_cv_;  // with jobs_mu_: wakes lease_loop to stop
    EventQueue queue_;
    mutable std::mutex reg_mu_;
    std::shared_ptr<const Registry> registry_;

    std::mutex jobs_mu_;
    std::condition_variable jobs_cv_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false;
    std::vector<std::thread> workers_;

    struct Delayed {
        std::chrono::steady_clock::time_point when;
        QueuedEvent e;
        int attempt;
    };
    std::mutex ev_mu_;
    std::condition_variable ev_cv_;
    std::vector<Delayed> events_;
    std::thread event_thread_;

    // Metrics.
    std::atomic<uint64_t> invokes_sync_{0}, invokes_event_{0}, invokes_dry_{0};
    std::atomic<uint64_t> function_errors_{0}, timeouts_{0}, throttles_{0}, auth_failures_{0},
        not_found_{0}, too_large_{0}, service_errors_{0}, cold_{0}, warm_{0}, held_hits_{0}, event_retries_{0},
        events_dropped_{0};
    static constexpr int kBuckets = 14;
    std::atomic<uint64_t> latency_buckets_[kBuckets + 1] = {};
    std::atomic<uint64_t> latency_count_{0};
    std::atomic<uint64_t> latency_sum_us_{0};
};

}  // namespace kindling::routerd
