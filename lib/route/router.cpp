#include "route/router.h"

#include "base/log.h"
#include "base/metrics.h"
#include "route/lambda_format.h"

namespace kindling::route {

namespace {

HttpServerOptions server_options(const RouterOptions& o, const LambdaApi& api) {
    HttpServerOptions so;
    // Lambda's sync limit; LambdaApi::check_head refuses a declared length past the
    // limit of the invocation type (and unknown credentials) before any body is read.
    so.max_body_bytes = kSyncPayloadLimit;
    so.label = "Lambda API";
    so.request_timeout = o.request_timeout;
    so.max_connections = o.max_connections;
    so.max_connections_per_client = o.max_connections_per_client;
    so.error_formatter = LambdaApi::error_response;
    so.head_check = [&api](const HttpRequest& head, std::optional<uint64_t> length) {
        return api.check_head(head, length);
    };
    return so;
}

HttpResponse too_many(const std::string& message, const char* reason) {
    return lambda_error(429, "TooManyRequestsException", message, reason);
}

}  // namespace

Router::Router(RouterOptions options)
    : opts_(std::move(options)),
      api_(opts_.functions_path, opts_.credentials_path, metrics_),
      tenants_(opts_.tenant_concurrency),
      workers_(opts_.workers, opts_.max_queued_invokes),
      invoker_({opts_.assignd_socket, opts_.acquire_wait_ms, opts_.lease_hold_ms}, metrics_),
      events_(opts_.queue_dir, std::chrono::milliseconds(opts_.event_retry_delay_ms), workers_, metrics_,
              [this](const QueuedEvent& e) { return deliver_event(e); }, opts_.max_pending_events),
      server_(opts_.listen,
              HttpAsyncHandler([this](const HttpRequest& req, HttpResponder respond) {
                  handle(req, std::move(respond));
              }),
              server_options(opts_, api_)),
      io_(server_, invoker_, workers_, metrics_, std::chrono::milliseconds(opts_.acquire_wait_ms),
          [this](InvokeCall call, HttpResponder respond) { invoke_on_worker(std::move(call), std::move(respond)); }) {}

Router::~Router() { stop(); }

void Router::start() { server_.start(); }

void Router::stop() {
    if (stopped_) return;
    stopped_ = true;
    server_.stop();
    workers_.stop();
    events_.stop();
    invoker_.stop();
    // The pooled connections' FdWatches belong to the server's event loop: gone
    // before it is.
    invoker_.pool().clear();
}

void Router::handle(const HttpRequest& req, HttpResponder respond) {
    std::variant<HttpResponse, InvokeCall> routed;
    if (req.path() == "/metrics" && req.method == "GET") {
        HttpResponse r{200, {}, metrics_.text({invoker_.leases().held(), workers_.queued(), events_.pending()})};
        r.headers.set("Content-Type", MetricsText::kContentType);
        routed = std::move(r);
    } else {
        try {
            routed = api_.route(req);
        } catch (const std::exception& e) {
            log_error("%s %s: %s", req.method.c_str(), req.target.c_str(), e.what());
            metrics_.service_errors++;
            routed = lambda_error(500, "ServiceException", e.what());
        }
    }
    if (auto* r = std::get_if<HttpResponse>(&routed)) {
        if (!r->headers.has("x-amzn-RequestId")) r->headers.set("x-amzn-RequestId", request_id());
        return respond(std::move(*r));
    }
    InvokeCall& call = std::get<InvokeCall>(routed);
    if (call.type == InvokeCall::kRequestResponse) {
        auto slot = tenant_slot(*call.function);
        if (!slot) {
            HttpResponse r = too_many("Rate Exceeded.", "ConcurrentInvocationLimitExceeded");
            r.headers.set("x-amzn-RequestId", request_id());
            return respond(std::move(r));
        }
        // The slot is held until the invoke has answered (the last copy of the
        // responder goes).
        respond = [slot, respond = std::move(respond)](HttpResponse r) { respond(std::move(r)); };
    }
    // A Log-Type: Tail invoke reads the console file: not on the I/O thread.
    if (call.type == InvokeCall::kRequestResponse && !call.log_tail)
        return io_.invoke(std::move(call), std::move(respond));
    invoke_on_worker(std::move(call), std::move(respond));
}

std::shared_ptr<TenantLimiter::Slot> Router::tenant_slot(const Function& f) {
    auto slot = tenants_.try_acquire(f.tenant);
    if (!slot) {
        metrics_.rejected_tenant++;
        log_verbose("tenant %s: %zu invocations running, refusing one of %s", f.tenant.c_str(), tenants_.limit(),
                    f.name.c_str());
    }
    return slot;
}

void Router::invoke_on_worker(InvokeCall call, HttpResponder respond) {
    // Copies kept for the refusal: the job owns the originals.
    HttpResponder refuse = respond;
    bool queued = workers_.try_submit([this, call = std::move(call), respond = std::move(respond)] {
        std::string rid = request_id();
        std::optional<LeaseRelease> release;
        HttpResponse r;
        try {
            if (call.type == InvokeCall::kEvent) {
                r = accept_event(call, rid);
            } else {
                if (!call.counted) metrics_.invokes_sync++;
                Invocation inv = invoker_.invoke(*call.function, call.version, call.payload, call.log_tail, rid);
                release = std::move(inv.release);
                r = invoke_response(inv.result, call.version, call.log_tail);
            }
        } catch (const std::exception& e) {
            log_error("invoke %s: %s", call.function->name.c_str(), e.what());
            metrics_.service_errors++;
            r = lambda_error(500, "ServiceException", e.what());
        }
        if (!r.headers.has("x-amzn-RequestId")) r.headers.set("x-amzn-RequestId", rid);
        respond(std::move(r));
        if (release) invoker_.give_back(*release);
    });
    if (!queued) {
        metrics_.rejected_worker_queue++;
        log_verbose("%zu invocations waiting for a worker, refusing one", opts_.max_queued_invokes);
        HttpResponse r = too_many("Rate Exceeded.", "CallerRateLimitExceeded");
        r.headers.set("x-amzn-RequestId", request_id());
        refuse(std::move(r));
    }
}

HttpResponse Router::accept_event(const InvokeCall& call, const std::string& rid) {
    if (!events_.accept(QueuedEvent{rid, call.function->name, call.version, call.payload})) {
        metrics_.rejected_event_queue++;
        log_verbose("%zu Event invocations pending, refusing one", opts_.max_pending_events);
        return too_many("Rate Exceeded.", "CallerRateLimitExceeded");
    }
    metrics_.invokes_event++;
    HttpResponse r{202, {}, {}};
    r.headers.set("x-amzn-RequestId", rid);
    return r;
}

EventRetrier::Delivery Router::deliver_event(const QueuedEvent& e) {
    auto reg = api_.registry();
    const Function* f = reg->find_any(e.function);
    if (!f || !f->versions.count(e.version)) return EventRetrier::Delivery::kFunctionGone;
    auto slot = tenant_slot(*f);
    if (!slot) return EventRetrier::Delivery::kFailed;  // throttled: retried later
    Invocation inv = invoker_.invoke(*f, e.version, e.payload, false, request_id());
    if (inv.release) invoker_.give_back(*inv.release);
    return inv.result.kind == InvokeResult::kOk ? EventRetrier::Delivery::kDone : EventRetrier::Delivery::kFailed;
}

}  // namespace kindling::route
