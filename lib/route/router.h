// routerd (routerd(1)): the AWS Lambda Invoke API in front of assignd and the
// sandboxes.  The router puts the parts together and decides where a request runs:
//   lambda_api         authenticates (SigV4) and routes it against the registry;
//   io_thread_invoker  a sync invoke on a sandbox the router holds, on the HTTP I/O
//                      thread (the warm path);
//   invoker            anything else that invokes, on a worker (worker_pool): held
//                      lease or assignd acquire, vsock invoke, lease kept or released;
//   event_retrier      Event invocations: durable queue, retries;
//   router_metrics     /metrics.
#pragma once

#include <chrono>
#include <string>

#include "http/http_server.h"
#include "route/event_retrier.h"
#include "route/invoker.h"
#include "route/io_thread_invoker.h"
#include "route/lambda_api.h"
#include "route/router_metrics.h"
#include "route/tenant_limiter.h"
#include "route/worker_pool.h"

namespace kindling::route {

struct RouterOptions {
    std::string listen = "127.0.0.1:9001";  // HttpServer's address forms
    std::string functions_path;
    std::string credentials_path;
    std::string assignd_socket;
    std::string queue_dir;  // empty: Event invocations in memory only
    unsigned workers = 32;
    unsigned acquire_wait_ms = 100;
    unsigned lease_hold_ms = 100;          // keep a sandbox this long for the next invoke (0: off)
    unsigned event_retry_delay_ms = 1000;  // doubled for the second retry
    std::chrono::milliseconds request_timeout{30000};  // HttpServerOptions::request_timeout
    size_t max_connections = 256;            // HttpServerOptions::max_connections
    size_t max_connections_per_client = 64;  // per client IP
    size_t max_queued_invokes = 1024;        // waiting for a worker; beyond: 429
    size_t max_pending_events = 10000;       // Event invocations accepted, not finished; beyond: 429
    size_t tenant_concurrency = 1000;        // running invocations per tenant; beyond: 429 (0: no limit)
};

class Router {
public:
    // Loads the functions and credentials files, starts the workers, replays pending
    // Event invocations, and binds the listener (errors surface here: ConfigError,
    // SysError, DataError naming the file).
    explicit Router(RouterOptions options);
    // stop().
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    // Starts serving the API.  Once.
    void start();
    // The bound address: "127.0.0.1:43121".
    std::string address() const { return server_.address(); }
    // Re-reads the functions and credentials files (SIGHUP); keeps the old ones on error.
    void reload() { api_.reload(); }
    // Stops serving, joins every thread, gives held leases back.  Idempotent.
    void stop();

private:
    // On the I/O thread: /metrics and whatever the Lambda API answers at once are
    // answered here; a sync invoke goes to io_, anything else to a worker.
    void handle(const HttpRequest& req, HttpResponder respond);
    // Runs an invoke on a worker, answers `respond`, then gives the lease back to
    // assignd if it is not kept.
    void invoke_on_worker(InvokeCall call, HttpResponder respond);
    // A slot for one more running invocation of the call's tenant, or null after
    // counting the refusal.
    std::shared_ptr<TenantLimiter::Slot> tenant_slot(const Function& f);
    // On a worker: queues an Event invocation (fsync'ed) and answers 202.
    HttpResponse accept_event(const InvokeCall& call, const std::string& request_id);
    // On a worker: runs a queued Event invocation.
    EventRetrier::Delivery deliver_event(const QueuedEvent& e);

    RouterOptions opts_;
    RouterMetrics metrics_;
    LambdaApi api_;
    TenantLimiter tenants_;
    WorkerPool workers_;
    Invoker invoker_;
    EventRetrier events_;
    // After what its I/O thread's handlers use, so that it is destroyed (and the
    // handlers still queued in it) first.
    HttpServer server_;
    IoThreadInvoker io_;
    bool stopped_ = false;
};

}  // namespace kindling::route
