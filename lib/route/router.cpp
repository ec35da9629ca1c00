#include "route/router.h"

#include "base/log.h"
#include "base/metrics.h"
#include "route/lambda_format.h"

namespace kindling::route {

namespace {

HttpServerOptions server_options(const RouterOptions& o) {
    HttpServerOptions so;
    so.max_body_bytes = 16 * 1024 * 1024;  // 413s past 6 MB come from the router, Lambda-style
    so.label = "Lambda API";
    so.request_timeout = o.request_timeout;
    so.error_formatter = LambdaApi::error_response;
    return so;
}

}  // namespace

Router::Router(RouterOptions options)
    : opts_(std::move(options)),
      api_(opts_.functions_path, opts_.credentials_path, metrics_),
      workers_(opts_.workers),
      invoker_({opts_.assignd_socket, opts_.acquire_wait_ms, opts_.lease_hold_ms}, metrics_),
      events_(opts_.queue_dir, std::chrono::milliseconds(opts_.event_retry_delay_ms), workers_, metrics_,
              [this](const QueuedEvent& e) { return deliver_event(e); }),
      server_(opts_.listen,
              HttpAsyncHandler([this](const HttpRequest& req, HttpResponder respond) {
                  handle(req, std::move(respond));
              }),
              server_options(opts_)),
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
        HttpResponse r{200, {}, metrics_.text(invoker_.leases().held())};
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
    // A Log-Type: Tail invoke reads the console file: not on the I/O thread.
    if (call.type == InvokeCall::kRequestResponse && !call.log_tail)
        return io_.invoke(std::move(call), std::move(respond));
    invoke_on_worker(std::move(call), std::move(respond));
}

void Router::invoke_on_worker(InvokeCall call, HttpResponder respond) {
    workers_.submit([this, call = std::move(call), respond = std::move(respond)] {
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
}

HttpResponse Router::accept_event(const InvokeCall& call, const std::string& rid) {
    metrics_.invokes_event++;
    events_.accept(QueuedEvent{rid, call.function->name, call.version, call.payload});
    HttpResponse r{202, {}, {}};
    r.headers.set("x-amzn-RequestId", rid);
    return r;
}

EventRetrier::Delivery Router::deliver_event(const QueuedEvent& e) {
    auto reg = api_.registry();
    const Function* f = reg->find_any(e.function);
    if (!f || !f->versions.count(e.version)) return EventRetrier::Delivery::kFunctionGone;
    Invocation inv = invoker_.invoke(*f, e.version, e.payload, false, request_id());
    if (inv.release) invoker_.give_back(*inv.release);
    return inv.result.kind == InvokeResult::kOk ? EventRetrier::Delivery::kDone : EventRetrier::Delivery::kFailed;
}

}  // namespace kindling::route
