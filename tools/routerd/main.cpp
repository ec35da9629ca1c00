// routerd: the Lambda Invoke API in front of assignd and the sandboxes (routerd(1)).
#include <signal.h>

#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"
#include "route/router.h"

using namespace kindling;

int main(int argc, char** argv) {
    return run_tool("routerd", [&]() -> int {
        CLI::App app{"routerd: the AWS Lambda Invoke API (SigV4) in front of assignd and the sandboxes.\n"
                     "Prints the bound address on stdout; SIGHUP reloads the functions and credentials files."};
        CommonFlags common;
        route::RouterOptions o;
        add_common_flags(app, common, false);
        app.add_option("--listen", o.listen, "TCP address to serve the Lambda API on (port 0: any)")
            ->capture_default_str();
        app.add_option("--functions", o.functions_path, "Function registry (JSON)")->required();
        app.add_option("--credentials", o.credentials_path, "Access keys: `ACCESS_KEY SECRET TENANT` per line")
            ->required();
        app.add_option("--assignd", o.assignd_socket, "assignd's Unix socket")->required();
        app.add_option("--queue-dir", o.queue_dir, "Durable queue of Event invocations (default: in memory)");
        app.add_option("--workers", o.workers, "Invoke worker threads")->capture_default_str()->check(CLI::Range(1, 1024));
        app.add_option("--acquire-wait-ms", o.acquire_wait_ms, "How long assignd may wait for a free sandbox before a 429")
            ->capture_default_str();
        app.add_option("--lease-hold-ms", o.lease_hold_ms,
                       "Keep a sandbox this long after an invoke for the next one of its function (0: give it back at once)")
            ->capture_default_str()
            ->check(CLI::Range(0u, 600000u));
        unsigned request_timeout_ms = 30000;
        app.add_option("--request-timeout-ms", request_timeout_ms,
                       "Time a client gets to send a whole request (also the keep-alive idle limit)")
            ->capture_default_str()
            ->check(CLI::Range(100u, 3600000u));
        app.add_option("--max-connections", o.max_connections, "Open client connections (beyond: closed at once)")
            ->capture_default_str()
            ->check(CLI::Range(size_t{1}, size_t{65536}));
        app.add_option("--max-connections-per-client", o.max_connections_per_client,
                       "Open connections from one client IP address (0: no limit)")
            ->capture_default_str();
        app.add_option("--max-queued-invokes", o.max_queued_invokes,
                       "Invocations waiting for a worker (beyond: 429 TooManyRequestsException)")
            ->capture_default_str()
            ->check(CLI::Range(size_t{1}, size_t{1} << 20));
        app.add_option("--max-pending-events", o.max_pending_events,
                       "Event invocations accepted and not finished (beyond: 429 TooManyRequestsException)")
            ->capture_default_str()
            ->check(CLI::Range(size_t{1}, size_t{1} << 24));
        app.add_option("--tenant-concurrency", o.tenant_concurrency,
                       "Running invocations per tenant (beyond: 429 TooManyRequestsException; 0: no limit)")
            ->capture_default_str();
        app.add_option("--event-retry-delay-ms", o.event_retry_delay_ms, "Delay before the first Event retry (doubled for the second)")
            ->capture_default_str();
        if (int rc = parse_cli(app, argc, argv); rc >= 0) return rc;
        apply_common_flags(common);

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
        signal(SIGPIPE, SIG_IGN);

        o.request_timeout = std::chrono::milliseconds(request_timeout_ms);
        route::Router router(o);
        router.start();
        std::printf("%s\n", router.address().c_str());
        std::fflush(stdout);
        log_info("listening on %s (assignd %s)", router.address().c_str(), o.assignd_socket.c_str());
        for (;;) {
            int sig = 0;
            if (sigwait(&set, &sig) != 0) continue;
            if (sig == SIGHUP) {
                router.reload();
                continue;
            }
            log_info("%s: stopping", strsignal(sig));
            break;
        }
        router.stop();
        return 0;
    });
}
