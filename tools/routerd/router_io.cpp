// routerd's I/O-thread path (see "The HTTP server's I/O thread first tries a request
// itself" in router.cpp): a sync invoke on a sandbox this router holds is sent and its
// answer awaited in the HTTP server's event loop, with no worker thread; at the
// function's concurrency limit, later invokes of the same function+version wait here
// for it.  Everything on this path runs on the I/O thread.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "lambda_api.h"
#include "router.h"

namespace kindling::routerd {

using Clock = std::chrono::steady_clock;

namespace {
constexpr size_t kFastPayloadMax = 64 * 1024;  // larger payloads go to a worker (a send could block)
}  // namespace

// A sync invoke running on the I/O thread: the lease, the pooled connection, and the
// client's responder.  Dropped unfinished (the server stopped), it destroys the
// sandbox: its state mid-invoke is unknown.
struct Router::FastInvoke {
    Router* r = nullptr;
    std::shared_ptr<const Registry> reg;  // keeps `f` alive
    const Function* f = nullptr;
    std::string version, rid;
    Lease l;
    VsockConn conn;
    AnswerParser parser;
    HttpResponder respond;
    Clock::time_point t0, t_acq, deadline;
    bool finished = false;

    ~FastInvoke() {
        if (finished) return;
        try {
            r->release(l.lease, "destroy");
        } catch (...) {
        }
        r->leases_.ended(f->name);
    }
};

bool Router::start_fast(std::shared_ptr<const Registry> reg, const Function& f, const std::string& version,
                        const std::string& payload, HttpResponder& respond) {
    if (payload.size() > kFastPayloadMax) return false;
    std::string key = f.name + '\0' + version;
    std::optional<HeldLease> h = leases_.take_held(key);
    if (!h) {
        // Every lease the function may have is out and some are running here: wait
        // here for one of them (served in finish_fast) rather than on a worker.
        if (io_inflight_[key] == 0 || leases_.out(f.name) < f.concurrency) return false;
        auto q = std::make_shared<Queued>();
        q->reg = std::move(reg);
        q->f = &f;
        q->version = version;
        q->payload = payload;
        q->respond = std::move(respond);
        q->arrived = Clock::now();
        invokes_sync_++;
        io_queue_[key].push_back(q);
        server_->at(q->arrived + std::chrono::milliseconds(opts_.acquire_wait_ms), [this, q, key] {
            if (q->done) return;
            q->done = true;
            std::erase(io_queue_[key], q);
            throttles_++;
            HttpResponse r = to_response(throttled(*q->f), q->version, false);
            r.headers.set("x-amzn-RequestId", request_id());
            q->respond(std::move(r));
        });
        return true;
    }
    Lease l{key, h->sandbox, h->vsock, h->lease, h->instance, h->drains, false};
    switch (launch_fast(std::move(reg), f, version, payload, std::move(respond), l, Clock::now(), false)) {
    case Launch::kStarted: return true;
    case Launch::kNoConnection: leases_.put(key, std::move(*h)); return false;
    case Launch::kDead: return false;  // a worker acquires another sandbox
    }
    return false;
}

Router::Launch Router::launch_fast(std::shared_ptr<const Registry> reg, const Function& f, const std::string& version,
                                  const std::string& payload, HttpResponder&& respond, Lease l, Clock::time_point t0,
                                  bool counted) {
    VsockConn c = pool_.take(l.sandbox, l.vsock);
    if (!c) return Launch::kNoConnection;  // the worker path opens one
    auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(f.timeout_s * 1e6));
    // Sent before the wait is queued, on this thread: the answer's readiness edge is
    // collected by the next epoll_wait, after the wait is in place.
    if (!send_invoke(c.fd.get(), payload, deadline)) {
        // The sandbox hung up while idle (its fc-launch died): nothing was sent.
        // Destroy it; the invoke goes to a worker, which gets another.
        log_info("%s: connection closed while idle (%s): destroyed", l.sandbox.c_str(), std::strerror(errno));
        c = {};
        pool_.forget(l.sandbox, l.vsock);
        submit([this, lease = l.lease, fn = f.name] {
            release(lease, "destroy");
            leases_.ended(fn);
        });
        return Launch::kDead;
    }
    if (!c.watch) c.watch = server_->watch(c.fd.get());
    auto x = std::make_shared<FastInvoke>();
    x->r = this;
    x->reg = std::move(reg);
    x->f = &f;
    x->version = version;
    x->rid = request_id();
    x->l = std::move(l);
    x->conn = std::move(c);
    x->respond = std::move(respond);
    x->t0 = t0;
    x->t_acq = Clock::now();
    x->deadline = deadline;
    if (!counted) invokes_sync_++;
    io_inflight_[x->l.key]++;
    warm_++;
    held_hits_++;
    await_fast(x);
    return Launch::kStarted;
}

void Router::await_fast(const std::shared_ptr<FastInvoke>& x) {
    static_cast<FdWatch*>(x->conn.watch.get())->when_readable(x->deadline, [this, x](bool readable) {
        if (!readable) return finish_fast(x, {GuestAnswer::kTimeout, "timeout"});
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(x->conn.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return await_fast(x);
            if (n <= 0)
                return finish_fast(x, {GuestAnswer::kBroken, x->parser.received_any() ? "connection closed mid-answer"
                                                                                         : "connection closed by the sandbox"});
            if (x->parser.feed(buf, static_cast<size_t>(n)) != AnswerParser::kMore)
                return finish_fast(x, x->parser.answer());
        }
    });
}

void Router::finish_fast(const std::shared_ptr<FastInvoke>& x, GuestAnswer ans) {
    if (ans.kind == GuestAnswer::kOk || ans.kind == GuestAnswer::kErr)
        pool_.put_back(x->l.sandbox, x->l.vsock, std::move(x->conn));
    x->finished = true;
    const std::string& key = x->l.key;
    io_inflight_[key]--;
    // The next request queued here gets this sandbox at once, unless a worker has
    // waited longer for one of the function's leases.
    auto& queue = io_queue_[key];
    std::shared_ptr<Queued> next;
    if (!queue.empty()) {
        auto older = leases_.oldest_wait(x->f->name);
        if (!older || *older > queue.front()->arrived) next = queue.front();
    }
    bool kept = false;
    HttpResponse r;
    try {
        r = to_response(settle(*x->f, x->version, x->l, std::move(ans), x->t0, x->t_acq, false, true, x->rid,
                               next ? &kept : nullptr),
                        x->version, false);
    } catch (const std::exception& e) {
        log_error("invoke %s: %s", x->f->name.c_str(), e.what());
        service_errors_++;
        r = lambda_error(500, "ServiceException", e.what());
    }
    r.headers.set("x-amzn-RequestId", x->rid);
    x->respond(std::move(r));
    if (kept) {
        queue.pop_front();
        next->done = true;
        Launch launched = launch_fast(next->reg, *next->f, next->version, next->payload, std::move(next->respond),
                                      x->l, next->arrived, true);
        if (launched != Launch::kStarted) {
            // No usable connection: the lease goes back (unless the sandbox is dead),
            // the request to a worker.
            if (launched == Launch::kNoConnection &&
                !leases_.put(key, HeldLease{x->f->name, x->l.sandbox, x->l.vsock, x->l.lease, x->l.instance,
                                            x->l.drains, Clock::now()}))
                submit([this, l = x->l, fn = x->f->name] {
                    release(l.lease, "ok");
                    leases_.ended(fn);
                });
            to_worker(next);
        }
    }
    // Nothing of this key runs here any more: what waits here would wait for nothing.
    if (io_inflight_[key] == 0)
        while (!queue.empty()) {
            auto q = queue.front();
            queue.pop_front();
            q->done = true;
            to_worker(q);
        }
}

void Router::to_worker(const std::shared_ptr<Queued>& q) {
    on_worker("invoke " + q->f->name, std::move(q->respond),
              [this, q] { return to_response(run(*q->f, q->version, q->payload, false), q->version, false); });
}

}  // namespace kindling::routerd
