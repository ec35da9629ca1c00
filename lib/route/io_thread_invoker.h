// routerd's warm path: a sync invoke of a function whose sandbox this router holds
// (a lease in the LeaseCache with an idle pooled connection) is sent and its answer
// awaited on the HTTP server's I/O thread itself (HttpServer::watch,
// FdWatch::when_readable), with no worker and no thread hand-over: that is what keeps
// a warm invoke at ~50 us of routerd's time (docs/ARCHITECTURE.md).  At the
// function's concurrency limit, with invokes of the same function+version running
// here, later ones wait here for one of their leases to come back, up to the acquire
// wait (then 429).  Everything else goes to a worker, with the call already
// resolved.  Every member runs on the I/O thread.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "http/http_server.h"
#include "route/invocation.h"
#include "route/invoker.h"
#include "route/router_metrics.h"
#include "route/worker_pool.h"

namespace kindling::route {

class IoThreadInvoker {
public:
    // Serves a sync invoke on a worker (blocking), taking `respond`.
    using ToWorker = std::function<void(InvokeCall, HttpResponder)>;

    // Every reference must outlive the invoker; `server` is the one whose I/O thread
    // calls invoke().
    IoThreadInvoker(HttpServer& server, Invoker& invoker, WorkerPool& workers, RouterMetrics& metrics,
                    std::chrono::milliseconds acquire_wait, ToWorker to_worker);
    IoThreadInvoker(const IoThreadInvoker&) = delete;
    IoThreadInvoker& operator=(const IoThreadInvoker&) = delete;

    // On the I/O thread: runs a sync invoke (without Log-Type: Tail) here, queues it
    // behind the ones running here, or hands it to to_worker.  Always takes `respond`.
    void invoke(InvokeCall call, HttpResponder respond);

private:
    struct Running;
    // A sync invoke waiting here for a lease of its key to come back from an invoke
    // running here.
    struct Waiting {
        InvokeCall call;
        HttpResponder respond;
        std::chrono::steady_clock::time_point arrived;
        bool done = false;  // served, throttled or handed to a worker
    };
    // Sends the invoke on `lease`, and on kStarted takes `call` and `respond`.
    // kNoConnection: no idle pooled connection, nothing taken.  kDead: the sandbox
    // hung up; its lease is given back (on a worker) to be destroyed.
    enum class Launch { kStarted, kNoConnection, kDead };
    Launch launch(InvokeCall& call, HttpResponder& respond, const Lease& lease,
                  std::chrono::steady_clock::time_point arrived);
    void await_answer(const std::shared_ptr<Running>& x);
    // The answer (or its absence): the client is answered, and the lease goes to the
    // next invoke waiting here, back to the cache, or back to assignd.
    void finish(const std::shared_ptr<Running>& x, GuestAnswer answer);
    void hand_to_worker(const std::shared_ptr<Waiting>& w);

    HttpServer& server_;
    Invoker& invoker_;
    WorkerPool& workers_;
    RouterMetrics& metrics_;
    std::chrono::milliseconds acquire_wait_;
    ToWorker to_worker_;
    // Per lease key: invokes running here, and invokes waiting here for them.
    std::map<std::string, size_t> running_;
    std::map<std::string, std::deque<std::shared_ptr<Waiting>>> waiting_;
};

}  // namespace kindling::route
