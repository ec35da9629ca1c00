#include "route/io_thread_invoker.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "route/lambda_api.h"
#include "route/lambda_format.h"

namespace kindling::route {

using SteadyClock = std::chrono::steady_clock;

namespace {
constexpr size_t kMaxPayload = 64 * 1024;  // larger payloads go to a worker (a send could block)
}  // namespace

// A sync invoke running on the I/O thread: the lease, the pooled connection, and the
// client's responder.  Dropped unfinished (the server stopped), it destroys the
// sandbox: its state mid-invoke is unknown.
struct IoThreadInvoker::Running {
    Invoker* invoker = nullptr;
    InvokeCall call;
    std::string request_id;
    Lease lease;
    VsockConn conn;
    AnswerParser parser;
    HttpResponder respond;
    Invoker::Timing timing;
    SteadyClock::time_point deadline;
    bool finished = false;

    ~Running() {
        if (finished) return;
        try {
            invoker->give_back({lease, "destroy"});
        } catch (...) {
        }
    }
};

IoThreadInvoker::IoThreadInvoker(HttpServer& server, Invoker& invoker, WorkerPool& workers, RouterMetrics& metrics,
                                 std::chrono::milliseconds acquire_wait, ToWorker to_worker)
    : server_(server),
      invoker_(invoker),
      workers_(workers),
      metrics_(metrics),
      acquire_wait_(acquire_wait),
      to_worker_(std::move(to_worker)) {}

void IoThreadInvoker::invoke(InvokeCall call, HttpResponder respond) {
    if (call.payload.size() > kMaxPayload) return to_worker_(std::move(call), std::move(respond));
    const Function& f = *call.function;
    std::string key = lease_key(f.name, call.version);
    std::optional<Lease> held = invoker_.leases().take_held(key);
    if (!held) {
        // Every lease the function may have is out and some are running here: wait
        // here for one of them (served in finish) rather than on a worker.
        if (running_[key] == 0 || invoker_.leases().out(f.name) < f.concurrency)
            return to_worker_(std::move(call), std::move(respond));
        auto w = std::make_shared<Waiting>();
        w->call = std::move(call);
        w->call.counted = true;
        w->respond = std::move(respond);
        w->arrived = SteadyClock::now();
        metrics_.invokes_sync++;
        waiting_[key].push_back(w);
        server_.at(w->arrived + acquire_wait_, [this, w, key] {
            if (w->done) return;
            w->done = true;
            std::erase(waiting_[key], w);
            metrics_.throttles++;
            HttpResponse r = invoke_response(invoker_.throttled(*w->call.function), w->call.version, false);
            r.headers.set("x-amzn-RequestId", request_id());
            w->respond(std::move(r));
        });
        return;
    }
    switch (launch(call, respond, *held, SteadyClock::now())) {
    case Launch::kStarted: return;
    case Launch::kNoConnection:
        invoker_.leases().put(std::move(*held));
        return to_worker_(std::move(call), std::move(respond));
    case Launch::kDead: return to_worker_(std::move(call), std::move(respond));  // a worker acquires another sandbox
    }
}

IoThreadInvoker::Launch IoThreadInvoker::launch(InvokeCall& call, HttpResponder& respond, const Lease& lease,
                                                SteadyClock::time_point arrived) {
    VsockConn c = invoker_.pool().take(lease.sandbox, lease.vsock);
    if (!c) return Launch::kNoConnection;  // the worker path opens one
    const Function& f = *call.function;
    auto deadline = SteadyClock::now() + std::chrono::microseconds(static_cast<int64_t>(f.timeout_s * 1e6));
    // Sent before the wait is queued, on this thread: the answer's readiness edge is
    // collected by the next epoll_wait, after the wait is in place.
    if (!send_invoke(c.fd.get(), call.payload, deadline)) {
        // The sandbox hung up while idle (its fc-launch died): nothing was sent.
        // Destroy it; the invoke goes to a worker, which gets another.
        log_info("%s: connection closed while idle (%s): destroyed", lease.sandbox.c_str(), std::strerror(errno));
        c = {};
        invoker_.pool().forget(lease.sandbox, lease.vsock);
        workers_.submit([this, r = LeaseRelease{lease, "destroy"}] { invoker_.give_back(r); });
        return Launch::kDead;
    }
    if (!c.watch) c.watch = server_.watch(c.fd.get());
    auto x = std::make_shared<Running>();
    x->invoker = &invoker_;
    bool counted = call.counted;
    x->call = std::move(call);
    x->request_id = request_id();
    x->lease = lease;
    x->lease.cold = false;
    x->conn = std::move(c);
    x->respond = std::move(respond);
    x->timing = {arrived, SteadyClock::now()};
    x->deadline = deadline;
    if (!counted) metrics_.invokes_sync++;
    running_[x->lease.key]++;
    metrics_.warm_starts++;
    metrics_.held_lease_hits++;
    await_answer(x);
    return Launch::kStarted;
}

void IoThreadInvoker::await_answer(const std::shared_ptr<Running>& x) {
    x->conn.watch->when_readable(x->deadline, [this, x](bool readable) {
        if (!readable) return finish(x, {GuestAnswer::kTimeout, "timeout"});
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(x->conn.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return await_answer(x);
            if (n <= 0)
                return finish(x, {GuestAnswer::kBroken, x->parser.received_any() ? "connection closed mid-answer"
                                                                                  : "connection closed by the sandbox"});
            if (x->parser.feed(buf, static_cast<size_t>(n)) != AnswerParser::kMore)
                return finish(x, x->parser.answer());
        }
    });
}

void IoThreadInvoker::finish(const std::shared_ptr<Running>& x, GuestAnswer ans) {
    if (ans.kind == GuestAnswer::kOk || ans.kind == GuestAnswer::kErr)
        invoker_.pool().put_back(x->lease.sandbox, x->lease.vsock, std::move(x->conn));
    x->finished = true;
    const Function& f = *x->call.function;
    const std::string& key = x->lease.key;
    running_[key]--;
    // The next invoke waiting here gets this sandbox at once, unless a worker has
    // waited longer for one of the function's leases.
    auto& queue = waiting_[key];
    std::shared_ptr<Waiting> next;
    if (!queue.empty()) {
        auto older = invoker_.leases().oldest_wait(f.name);
        if (!older || *older > queue.front()->arrived) next = queue.front();
    }
    Invocation inv;
    HttpResponse r;
    try {
        inv = invoker_.settle(f, x->call.version, x->lease, std::move(ans), x->timing, false, true, x->request_id,
                              next != nullptr);
        r = invoke_response(inv.result, x->call.version, false);
    } catch (const std::exception& e) {
        log_error("invoke %s: %s", f.name.c_str(), e.what());
        metrics_.service_errors++;
        r = lambda_error(500, "ServiceException", e.what());
    }
    r.headers.set("x-amzn-RequestId", x->request_id);
    x->respond(std::move(r));
    // Never an assignd round trip on the I/O thread.
    if (inv.release) workers_.submit([this, rel = std::move(*inv.release)] { invoker_.give_back(rel); });
    if (inv.kept) {
        queue.pop_front();
        next->done = true;
        Launch launched = launch(next->call, next->respond, x->lease, next->arrived);
        if (launched != Launch::kStarted) {
            // No usable connection: the lease goes back (unless the sandbox is dead),
            // the request to a worker.
            if (launched == Launch::kNoConnection && !invoker_.leases().put(x->lease))
                workers_.submit([this, rel = LeaseRelease{x->lease, "ok"}] { invoker_.give_back(rel); });
            hand_to_worker(next);
        }
    }
    // Nothing of this key runs here any more: what waits here would wait for nothing.
    if (running_[key] == 0)
        while (!queue.empty()) {
            auto w = queue.front();
            queue.pop_front();
            w->done = true;
            hand_to_worker(w);
        }
}

void IoThreadInvoker::hand_to_worker(const std::shared_ptr<Waiting>& w) {
    to_worker_(std::move(w->call), std::move(w->respond));
}

}  // namespace kindling::route
